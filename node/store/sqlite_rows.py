"""How a group commit's records become the SQLite store's rows (the row encoder).

The writer (node/store/sqlite_writer.py) decides each record's outcome; this module
turns the accepted ones into the values its multi-row INSERTs bind, flat, row after
row: no tuple per row, since every row is built once per ingested alert in the
node's busiest thread. An alert row is its record's fields as they lie (AlertRecord's
fields up to the title, in order; ALERT_INSERT names the columns in that order), then
its joined keys and the time it came. An indicator key is indexed by `key_hash`, an
alert id by `id64` (sqlite_writer's docstring says why).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from node.core.alerts import AlertRecord
from node.store.base import PutOutcome

KEY_SEP = "\x1f"
_INT64 = struct.Struct(">q")
TITLE_END = AlertRecord._fields.index("title") + 1
ALERT_INSERT = (
    "INSERT INTO alerts (local_seq, "
    + ", ".join(AlertRecord._fields[:TITLE_END])
    + ", index_keys, received_at_ms) VALUES"
)
ALERT_WIDTH = TITLE_END + 3
ACCEPTED = PutOutcome.ACCEPTED
EQUIVOCATION = PutOutcome.EQUIVOCATION


def key_hash(key: str) -> int:
    """How an indicator key is indexed: a signed 64-bit integer."""
    value: int = _INT64.unpack_from(hashlib.sha256(key.encode()).digest())[0]
    return value


def id64(alert_id: bytes) -> int:
    """How an alert id is indexed: its first 8 bytes (it is a SHA-256 already)."""
    value: int = _INT64.unpack_from(alert_id)[0]
    return value


@dataclass(slots=True)
class Write:
    """One `put`: its records, and the outcome of each once committed."""

    records: Sequence[AlertRecord]
    now_ms: int
    request_id: str


@dataclass(slots=True)
class Rows:
    """A group commit's rows, each kind's values flat as its INSERT binds them."""

    alerts: list[Any] = field(default_factory=list)  # ALERT_WIDTH values per row
    keys: list[int] = field(default_factory=list)  # key_hash(key), local_seq, ...
    ids: list[int] = field(default_factory=list)  # id64(id), local_seq, ...
    # (origin, seq, id, body, signature, joined keys, detected_at_ms) of each second copy
    equivocations: list[tuple[Any, ...]] = field(default_factory=list)
    accepted: list[tuple[bytes, int]] = field(default_factory=list)  # (origin, seq)
    last_local_seq: int = 0


def encode(batch: Sequence[Write], outcomes: Sequence[PutOutcome], last_local_seq: int) -> Rows:
    """The rows of `batch`, whose records have `outcomes` in order: each accepted one
    numbered from `last_local_seq` + 1 on, each equivocation as its proof's row."""
    rows = Rows(last_local_seq=last_local_seq)
    alert_values, key_values, id_values = rows.alerts, rows.keys, rows.ids
    accepted = rows.accepted
    sha256, unpack = hashlib.sha256, _INT64.unpack_from  # key_hash and id64, inline
    local_seq = last_local_seq
    outcome_of = iter(outcomes)
    for w in batch:
        now_ms = w.now_ms
        for r in w.records:
            outcome = next(outcome_of)
            if outcome is ACCEPTED:
                local_seq += 1
                keys = r.index_keys
                alert_values.append(local_seq)
                alert_values += r[:TITLE_END]
                alert_values.append(KEY_SEP.join(keys))
                alert_values.append(now_ms)
                for k in keys:
                    key_values.append(unpack(sha256(k.encode()).digest())[0])
                    key_values.append(local_seq)
                id_values.append(unpack(r.id)[0])
                id_values.append(local_seq)
                accepted.append((r.origin, r.seq))
            elif outcome is EQUIVOCATION:
                rows.equivocations.append(
                    (r.origin, r.seq, r.id, r.body, r.signature,
                     KEY_SEP.join(r.index_keys), now_ms)
                )  # fmt: skip
    rows.last_local_seq = local_seq
    return rows
