"""Joining a network: this node's member card, and another member's card into the roster.

`alertmesh member-card` and `alertmesh roster add` (node/member_cli.py) are thin over this;
the card format and the roster rules are in node/core/card.py.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import tomllib
from pathlib import Path

from node.app.config import CONFIG_FILE, ROSTER_HEADER, Config
from node.core.card import Admission, MemberCard, admit, check_address
from node.core.errors import ConfigError, InvalidCard
from node.core.roster import Roster
from node.crypto.card import make_card, open_card

log = logging.getLogger(__name__)


def own_card(config: Config, addresses: list[str], now_ms: int) -> tuple[MemberCard, str]:
    """This node's card. Addresses: `addresses` if given, else its own roster entry's,
    else peers.listen."""
    identity = config.identity()
    tls, _ = config.tls_identity()
    if not addresses:
        me = config.roster().get(identity.public_key)
        addresses = list(me.addresses) if me and me.addresses else [config.peer_listen]
    for address in addresses:
        try:
            check_address(address)
        except InvalidCard as exc:
            raise InvalidCard(
                f"{exc}; give the address other members should dial: --address HOST:PORT"
            ) from exc
    return make_card(identity, config.name, tuple(addresses), tls.cert_pem, now_ms)


def read_card(source: str) -> MemberCard:
    """The card in file `source`, or on standard input for '-'."""
    if source == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(source).read_text(errors="replace")
        except OSError as exc:
            raise ConfigError(f"cannot read the card {source}: {exc.strerror}") from exc
    return open_card(text)


def add_card(config: Config, card: MemberCard, *, replace: bool, dry_run: bool) -> Admission:
    """Add `card`'s member to the node's roster file (unless `dry_run`)."""
    current = config.roster()
    admission = admit(current, card, config.identity().public_key, replace=replace)
    if not dry_run:
        write_roster(config.roster_path, admission.roster, current.unknown_fields)
    return admission


def write_roster(path: Path, roster: Roster, dropped: tuple[str, ...] = ()) -> None:
    """Replace the roster file at once: a node reloading it sees the old or the new one.
    `dropped`: the fields of the file it replaces that this version does not know (its
    `unknown_fields`); the new file is written without them, and a warning names them."""
    text = ROSTER_HEADER + roster.to_toml()
    if Roster.from_toml(text, str(path)).members != roster.members:
        raise ConfigError(f"the roster would not read back as written; {path} left unchanged")
    _replace_file(path, text)
    warn_dropped(path, dropped)


def warn_dropped(path: Path, dropped: tuple[str, ...], kept: str = "") -> None:
    """A rewritten roster keeps only the fields this version knows: name the others."""
    if dropped:
        log.warning(
            "roster %s rewritten without fields this version does not know: %s%s",
            path,
            "; ".join(dropped),
            f" (the file before is kept as {kept})" if kept else "",
        )


def add_connect(config: Config, name: str) -> bool:
    """Add `name` to the config's peers.connect; False if it is there already. Only a
    one-line `connect = [...]` in [peers] is edited; anything else is left to the operator."""
    path = config.home / CONFIG_FILE
    text = path.read_text()
    if name in config.connect:
        return False
    peers = re.search(r"(?ms)^\[peers\]\s*$(.*?)(?=^\[|\Z)", text)
    line = re.search(r"(?m)^connect\s*=\s*\[[^\]\n]*\]\s*$", peers[1]) if peers else None
    if peers is None or line is None:
        raise ConfigError(
            f"cannot find a one-line 'connect = [...]' in [peers] of {path}; add {name!r} "
            "to peers.connect by hand"
        )
    start = peers.start(1) + line.start()
    new_line = f"connect = [{', '.join(_toml_str(n) for n in [*config.connect, name])}]"
    new_text = text[:start] + new_line + text[start + len(line[0].rstrip()) :]
    # The edit must change peers.connect and nothing else.
    before, after = tomllib.loads(text), tomllib.loads(new_text)
    before.setdefault("peers", {})["connect"] = [*config.connect, name]
    if before != after:
        raise ConfigError(f"editing {path} went wrong; add {name!r} to peers.connect by hand")
    _replace_file(path, new_text)
    return True


def _toml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _replace_file(path: Path, text: str) -> None:
    """Write a temporary file next to `path` and rename it over `path`, keeping its mode."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
