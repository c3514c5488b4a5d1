"""Rotating a node's signing key, and what a node does about its own key.

`alertmesh rotate-key --home DIR` works on a stopped node's home:
1. it reads the old key's chain head (last seq and id) from the store;
2. creates a new key (identity.key, 0600) and keeps the old one as
   identity.key.retired-<UTC time> (0600: it may still be needed to read alerts
   encrypted to it; delete it once that does not matter);
3. has the old key sign a KeySuccession for the new key (node.crypto.succession),
   saved as HOME/succession.pb (public, nothing secret);
4. rewrites the node's own roster entry: the old key gets valid_until = now and
   last_seq = its head, the new key valid_from = now;
5. prints that entry, for the other members' rosters.
On its next start the node publishes the succession as the new key's first alert
(seq 1, category other, severity info) and removes succession.pb.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from node._pb.alertmesh.v1 import alert_pb2
from node.app.config import Config
from node.app.onboarding import warn_dropped
from node.app.service import AlertNode
from node.app.stores import open_store
from node.core.errors import AlertmeshError, ConfigError
from node.core.roster import Member, MemberKey, Roster, member_toml
from node.crypto import Identity, create_identity
from node.crypto.succession import sign_succession, verify_succession

log = logging.getLogger(__name__)

SUCCESSION_FILE = "succession.pb"


def own_member(roster: Roster, key: bytes, now_ms: int, roster_path: Path) -> Member:
    """This node's member entry; ConfigError unless its key is on the roster and valid now."""
    try:
        return roster.require_session_key(key, now_ms, "this node's key")
    except AlertmeshError as exc:
        raise ConfigError(f"{roster_path}: {exc}") from None


@dataclass(frozen=True)
class Rotation:
    member: Member  # the node's updated roster entry
    old_key: bytes
    new_key: bytes
    last_seq: int  # the old key's chain head
    retired_key_file: Path


async def rotate_key(config: Config, now_ms: int) -> Rotation:
    """Give the (stopped) node at config.home a new signing key; see the module doc."""
    _refuse_if_running(config)
    old = config.identity()
    roster = config.roster()
    if (config.home / SUCCESSION_FILE).exists():  # before the roster check: see the text
        raise ConfigError(
            f"{config.home / SUCCESSION_FILE} exists: the last rotation is not published yet; "
            "start the node once first (if the node will not start because a rotation was "
            "cut short, restore roster.toml from roster.toml.pre-rotate-*, delete "
            f"{SUCCESSION_FILE} and identity.key.new, and run rotate-key again)"
        )
    member = own_member(roster, old.public_key, now_ms, config.roster_path)
    async with open_store(config) as store:
        last_seq = store.chains.get(old.public_key).max_seq
        head = await store.range(old.public_key, last_seq, last_seq, limit=1) if last_seq else []
    if last_seq and not head:
        raise ConfigError(f"the store lacks this node's own alert #{last_seq}")
    head_id = head[0].id if head else b""

    stamp = datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%Y%m%dT%H%M%S%fZ")
    retired = config.key_path.with_name(f"{config.key_path.name}.retired-{stamp}")
    staged = config.key_path.with_name(f"{config.key_path.name}.new")
    with contextlib.suppress(FileNotFoundError):
        staged.unlink()  # left by a rotation that failed before it was done
    new = create_identity(staged)
    succession = sign_succession(old, new.public_key, last_seq, head_id)
    retiring = member.key_entry(old.public_key)
    assert retiring is not None  # own_member found the member by this key
    keys = (
        *(k for k in member.keys if k is not retiring),
        MemberKey(old.public_key, retiring.valid_from_ms, now_ms, last_seq=last_seq),
        MemberKey(new.public_key, valid_from_ms=now_ms),
    )
    updated = Member(
        member.name, new.public_key, member.addresses, member.tls_cert, keys, member.tree_priority
    )
    others = [m for m in roster if m.name != member.name]
    text = Roster.of([*others, updated]).to_toml()

    # The new key is in place only once everything else is. A failure before the roster
    # is written leaves the node as it was (plus identity.key.new, removed on a retry);
    # one between the roster and the key leaves a roster naming a key the node does not
    # hold yet: the roster as it was is kept beside it to restore (the error above says
    # how).
    before = config.roster_path.with_name(f"{config.roster_path.name}.pre-rotate-{stamp}")
    _write(before, config.roster_path.read_bytes())
    _write(config.home / SUCCESSION_FILE, succession.SerializeToString())
    _write(config.roster_path, (ROSTER_HEADER + text).encode())
    warn_dropped(config.roster_path, roster.unknown_fields, before.name)
    os.link(config.key_path, retired)
    os.replace(staged, config.key_path)
    _write(config.home / "identity.pub", (new.public_key.hex() + "\n").encode())
    return Rotation(updated, old.public_key, new.public_key, last_seq, retired)


ROSTER_HEADER = "# Members of the network. Add one [[member]] block per member node.\n\n"


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _refuse_if_running(config: Config) -> None:
    """A running node keeps signing with the key it loaded: rotate only a stopped one."""
    pid_file = config.home / "node.pid"  # written by `alertmesh cluster up`
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(pid_file.read_text()), 0)
        raise ConfigError(f"the node of {config.home} is running ({pid_file}); stop it first")
    host, _, port = config.api_listen.rpartition(":")
    if port.isdigit() and int(port):
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), 0.5):
            raise ConfigError(
                f"something answers on this node's API address {config.api_listen}: "
                "stop the node before rotating its key"
            )


def rotation_report(r: Rotation) -> str:
    """What the operator reads after a rotation: the entry for the other members."""
    return (
        f"member      {r.member.name}\n"
        f"old key     {r.old_key.hex()} (retired, its chain ends at #{r.last_seq})\n"
        f"new key     {r.new_key.hex()}\n"
        f"old private key kept as {r.retired_key_file} (0600)\n"
        "The node's own roster is updated. Start the node: its first alert with the new\n"
        "key links the old chain (a key succession signed by the old key). Every other\n"
        "member replaces this member's entry in its roster with the block below and\n"
        "reloads it (alertmesh roster-reload); until then they refuse the new key.\n\n"
        + member_toml(r.member)
    )


def pending_succession(home: Path, identity: Identity) -> alert_pb2.Alert | None:
    """The draft of the succession alert still to publish after a rotation, if any."""
    path = home / SUCCESSION_FILE
    try:
        succession = alert_pb2.KeySuccession.FromString(path.read_bytes())
    except FileNotFoundError:
        return None
    except Exception as exc:
        raise ConfigError(f"{path} is not a key succession record: {exc}") from exc
    draft = alert_pb2.Alert(
        origin=identity.public_key,
        category=alert_pb2.CATEGORY_OTHER,
        severity=alert_pb2.SEVERITY_INFO,
        confidence=100,
        tlp=alert_pb2.TLP_CLEAR,
        title="key rotation: this member now signs with a new key",
        description=(
            f"Succeeds key {succession.previous_key.hex()}, whose chain ends at "
            f"#{succession.previous_seq}"
            + (f" (alert {succession.previous_head.hex()})." if succession.previous_seq else ".")
        ),
        succession=succession,
    )
    try:
        verify_succession(draft)
    except AlertmeshError as exc:
        raise ConfigError(f"{path} does not vouch for this node's key: {exc}") from exc
    return draft


async def publish_pending_succession(node: AlertNode, home: Path) -> None:
    """After a rotation, publish the new key's first alert: the key succession."""
    draft = pending_succession(home, node.identity)
    if draft is None:
        return
    if not node.store.chains.get(node.identity.public_key).max_seq:
        stored, _ = await node.publish(draft)
        log.info("published the key succession %s", stored.record.id.hex())
    (home / SUCCESSION_FILE).unlink()
