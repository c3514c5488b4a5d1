"""Bearer tokens for the client API: the token file and the per-call decision.

HOME/tokens.json holds one record per token: id, name, scope, creation (and revocation)
time and the SHA-256 of the token. The token itself is shown once, by
`alertmesh token create`, and stored nowhere. A token is `amt_<id>_<secret>` with 256
random bits of secret, so a plain hash is enough (no salt or slow hash needed), and the
id lets the node find the record without comparing against every hash.

The node re-reads the file whenever its inode, size or mtime changes (one stat per
call), so `token create` and `token revoke` take effect on the next call, no restart.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path

from node.core.api_access import Scope, allows, required_scope
from node.core.errors import ConfigError, Forbidden, NotFound, Unauthenticated

TOKENS_FILE = "tokens.json"
TOKEN_PREFIX = "amt"
_TOKEN = re.compile(rf"^{TOKEN_PREFIX}_([0-9a-f]{{8}})_[A-Za-z0-9_-]{{43}}$")
CREATE_HINT = "alertmesh token create --home DIR --scope {scope}"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenRecord:
    """What the node keeps of a token: never the token itself."""

    id: str
    name: str
    scope: Scope
    created: str  # ISO 8601, UTC
    sha256: str = field(repr=False)
    revoked: str = ""  # ISO 8601 when revoked

    def to_json(self) -> dict[str, str]:
        return {**asdict(self), "scope": self.scope.label}

    @classmethod
    def from_json(cls, d: object, source: str) -> TokenRecord:
        try:
            assert isinstance(d, dict)
            record = cls(
                id=str(d["id"]),
                name=str(d.get("name", "")),
                scope=Scope.parse(str(d["scope"])),
                created=str(d.get("created", "")),
                sha256=str(d["sha256"]),
                revoked=str(d.get("revoked", "")),
            )
        except (AssertionError, KeyError, ValueError) as exc:
            raise ConfigError(f"{source}: a token record is malformed ({exc})") from exc
        return record


class TokenFile:
    """The token records of one home, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._records: dict[str, TokenRecord] = {}

    def records(self) -> dict[str, TokenRecord]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._stamp, self._records = None, {}
            return self._records
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path}: {exc.strerror}") from exc
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._records = self._read()
            self._stamp = stamp
        return self._records

    def _read(self) -> dict[str, TokenRecord]:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {self.path}: {exc}") from exc
        rows = doc.get("tokens", []) if isinstance(doc, dict) else None
        if not isinstance(rows, list):
            raise ConfigError(f'{self.path}: expected {{"tokens": [...]}}')
        records = (TokenRecord.from_json(r, str(self.path)) for r in rows)
        return {r.id: r for r in records}

    def _write(self, records: dict[str, TokenRecord]) -> None:
        doc = {"tokens": [r.to_json() for r in records.values()]}
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)  # a new inode: a running node sees the change

    @contextmanager
    def _locked(self) -> Iterator[dict[str, TokenRecord]]:
        """The records, for a read-modify-write that no other `token` command interleaves."""
        lock_path = self.path.with_name(f".{self.path.name}.lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield dict(self._read())

    def create(self, scope: Scope, name: str, now: datetime) -> tuple[str, TokenRecord]:
        """A new token (returned once, for the caller to show) and its stored record."""
        with self._locked() as records:
            token_id = secrets.token_hex(4)
            while token_id in records:
                token_id = secrets.token_hex(4)
            token = f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
            record = TokenRecord(
                id=token_id,
                name=name,
                scope=scope,
                created=now.isoformat(timespec="seconds"),
                sha256=token_digest(token),
            )
            records[token_id] = record
            self._write(records)
        return token, record

    def revoke(self, token_id: str, now: datetime) -> TokenRecord:
        with self._locked() as records:
            record = records.get(token_id)
            if record is None:
                raise NotFound(f"no token with id {token_id!r} in {self.path}")
            if not record.revoked:
                record = replace(record, revoked=now.isoformat(timespec="seconds"))
                records[token_id] = record
                self._write(records)
        return record


class TokenGate:
    """Decides, per call, whether the bearer of `authorization` may call `method`."""

    def __init__(self, tokens: TokenFile) -> None:
        self.tokens = tokens

    def authorize(self, method: str, authorization: str | None) -> TokenRecord:
        """The token's record, or Unauthenticated / Forbidden with a message to act on.

        Messages never contain the token, only its public id.
        """
        needed = required_scope(method)
        hint = CREATE_HINT.format(scope=needed.label)
        if not authorization:
            raise Unauthenticated(
                f"this node's client API needs a token (--token or ALERTMESH_TOKEN); "
                f"{method} needs scope {needed.label}; create one with: {hint}"
            )
        kind, _, token = authorization.partition(" ")
        if kind.lower() != "bearer" or not token:
            raise Unauthenticated("the authorization metadata must be 'Bearer <token>'")
        match = _TOKEN.match(token.strip())
        record = self.tokens.records().get(match.group(1)) if match else None
        if (
            match is None
            or record is None
            or not hmac.compare_digest(token_digest(match.group(0)), record.sha256)
        ):
            raise Unauthenticated(f"this node does not know that token; create one with: {hint}")
        if record.revoked:
            raise Unauthenticated(
                f"token {record.id} was revoked at {record.revoked}; create one with: {hint}"
            )
        if not allows(record.scope, needed):
            raise Forbidden(
                f"{method} needs a token with scope {needed.label}, token {record.id} has "
                f"scope {record.scope.label}; create one with: {hint}"
            )
        return record
