"""The read side of the SQLite store: every query a client's read makes, on the
store's reader connection (aiosqlite, its own thread; WAL lets it read while the writer
commits). node/store/sqlite.py opens the connection, writes, and answers what it can
from memory before asking here."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import aiosqlite

from node._pb.alertmesh.v1.alert_pb2 import Alert
from node.core.alerts import AlertRecord, make_record
from node.store.base import Equivocation, Held, Query, Stored, record_from_row
from node.store.keyfilter import KeyFilter
from node.store.sqlite_writer import KEY_LEVELS, KEY_SEP, alert_id_queries, key_hash

COLUMNS = (
    "id, body, signature, origin, seq, prev, created_at_ms, expires_at_ms, category, severity,"
    " confidence, title, index_keys"
)
STORED_COLUMNS = f"local_seq, received_at_ms, {COLUMNS}"
ALIASED = ", ".join(f"a.{c.strip()}" for c in STORED_COLUMNS.split(","))
NOT_EXPIRED = "(expires_at_ms = 0 OR expires_at_ms > ?)"
LOOKUP_SQL = (
    "WITH asked(key) AS MATERIALIZED (SELECT value FROM json_each(?))"
    f" SELECT k.key, {ALIASED} FROM ("
    + " UNION ALL ".join(
        f"SELECT l.key, l.local_seq FROM asked CROSS JOIN {t} l ON l.key = asked.key"
        for t in KEY_LEVELS
    )
    + ") k JOIN alerts a ON a.local_seq = k.local_seq"
)
LOOKUP_CHUNK = 10_000  # keys per lookup query
# The reader's page cache. CheckIndicators probes the indicator-key index only for keys
# the filter lets through (held ones, and 0.2-5 % of the others).
READER_CACHE_KIB = 8192


def _record(row: Sequence[Any]) -> AlertRecord:
    """The columns are AlertRecord's fields in order (ALERT_COLUMNS); keys are joined."""
    keys = row[12]
    return record_from_row(row, tuple(keys.split(KEY_SEP)) if keys else ())


def _stored(row: Sequence[Any]) -> Stored:
    return Stored(_record(row[2:]), local_seq=row[0], received_at_ms=row[1])


_INT64 = struct.Struct(">q")


def key_hashes(keys: Iterable[str]) -> list[int]:
    """[key_hash(key) for key in keys], without a call per key (1,600 per check)."""
    sha256, unpack = hashlib.sha256, _INT64.unpack_from
    return [unpack(sha256(key.encode()).digest())[0] for key in keys]


def maybe_held_keys(keys: Iterable[str], key_filter: KeyFilter | None) -> dict[int, list[str]]:
    """The keys among `keys` that `key_filter` does not rule out, by key_hash (several
    keys to a hash only on a collision). Hashing and the filter's test in one loop, with
    no list or call per key between them: ~1,600 keys per check of 1,000 values."""
    sha256, unpack = hashlib.sha256, _INT64.unpack_from
    out: dict[int, list[str]] = {}
    if key_filter is None:
        for key in keys:
            out.setdefault(unpack(sha256(key.encode()).digest())[0], []).append(key)
        return out
    probes = key_filter.probes()
    if len(probes) == 1:  # a filter built at open
        [(words, mask)] = probes
        for key in keys:
            h = unpack(sha256(key.encode()).digest())[0]
            bits = (1 << ((h >> 40) & 63)) | (1 << ((h >> 46) & 63)) | (1 << ((h >> 52) & 63))
            if words[h & mask] & bits == bits:  # keyfilter.bits_of(h), inline
                out.setdefault(h, []).append(key)
        return out
    for key in keys:  # a filter grown by tables while the node stored alerts
        h = unpack(sha256(key.encode()).digest())[0]
        bits = (1 << ((h >> 40) & 63)) | (1 << ((h >> 46) & 63)) | (1 << ((h >> 52) & 63))
        for words, mask in probes:
            if words[h & mask] & bits == bits:
                out.setdefault(h, []).append(key)
                break
    return out


class SqliteReads:
    """The read queries of SqliteStore, on its reader connection (`_rdb`, open while the
    store is) and its filter of held keys (`_filter`)."""

    _rdb: aiosqlite.Connection | None
    _filter: KeyFilter | None

    @property
    def _reader(self) -> aiosqlite.Connection:
        assert self._rdb is not None, "store is not open"
        return self._rdb

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> Iterable[Sequence[Any]]:
        """Run one read on the reader connection, start to finish in one step.

        Every read executes and fetches in a single call (never a cursor left open
        across an await): a statement left open would pin the connection's WAL
        snapshot, and every later read would miss newer commits.
        """
        return await self._reader.execute_fetchall(sql, params)

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Stored]:
        return [_stored(row) for row in await self._rows(sql, params)]

    async def _by_id(self, columns: str, ids: Collection[bytes]) -> list[Sequence[Any]]:
        """`columns` of the alerts held among `ids`."""
        out: list[Sequence[Any]] = []
        for sql, params in alert_id_queries(columns, list(ids)):
            out += await self._rows(sql, params)
        return out

    async def get(self, alert_id: bytes) -> Stored | None:
        rows = await self._by_id(STORED_COLUMNS, [alert_id])
        return _stored(rows[0]) if rows else None

    async def missing(self, ids: Collection[bytes]) -> set[bytes]:
        return set(ids) - {row[0] for row in await self._by_id("id", ids)}

    async def held(self, ids: Collection[bytes]) -> dict[bytes, Held]:
        rows = await self._by_id("id, signature, origin, seq", ids)
        return {row[0]: Held(*row[1:]) for row in rows}

    @staticmethod
    def _where(query: Query) -> tuple[list[str], list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if query.categories:
            clauses.append(f"category IN ({','.join('?' * len(query.categories))})")
            params.extend(sorted(query.categories))
        if query.origins:
            clauses.append(f"origin IN ({','.join('?' * len(query.origins))})")
            params.extend(sorted(query.origins))
        if query.min_severity:
            clauses.append("severity >= ?")
            params.append(query.min_severity)
        if query.since_ms:
            clauses.append("created_at_ms >= ?")
            params.append(query.since_ms)
        if query.until_ms:
            clauses.append("created_at_ms < ?")
            params.append(query.until_ms)
        if query.keys or query.any_key:
            hashes = json.dumps(sorted(key_hash(k) for k in query.keys))
            clauses.append(
                "local_seq IN ("
                + " UNION ALL ".join(
                    f"SELECT local_seq FROM {table} WHERE key IN (SELECT value FROM json_each(?))"
                    for table in KEY_LEVELS
                )
                + ")"
            )
            params += [hashes] * len(KEY_LEVELS)
        if not query.include_expired:
            clauses.append(NOT_EXPIRED)
            params.append(query.now_ms)
        return clauses, params

    async def search(self, query: Query, *, limit: int, before: int | None = None) -> list[Stored]:
        clauses, params = self._where(query)
        if before is not None:
            clauses.append("local_seq < ?")
            params.append(before)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return await self._fetch(
            f"SELECT {STORED_COLUMNS} FROM alerts {where} ORDER BY local_seq DESC LIMIT ?",
            [*params, limit],
        )

    async def after(self, query: Query, *, cursor: int, limit: int) -> list[Stored]:
        """By query (SqliteStore answers from its tail in memory when it can)."""
        clauses, params = self._where(query)
        clauses.append("local_seq > ?")
        params.append(cursor)
        return await self._fetch(
            f"SELECT {STORED_COLUMNS} FROM alerts WHERE {' AND '.join(clauses)}"
            " ORDER BY local_seq ASC LIMIT ?",
            [*params, limit],
        )

    async def lookup(
        self, keys: Collection[str], *, now_ms: int, include_expired: bool = False
    ) -> dict[str, list[Stored]]:
        if not keys:
            return {}
        # Most asked keys are held nowhere: the filter rules them out without a query.
        asked = maybe_held_keys(keys, self._filter)
        hashes = list(asked)
        found: dict[str, list[Stored]] = {}
        for i in range(0, len(hashes), LOOKUP_CHUNK):
            part = sorted(hashes[i : i + LOOKUP_CHUNK])
            # The asked hashes as one JSON parameter, so the statement is the same for
            # every call and stays prepared (a list of 1,600 placeholders took ~2 ms to
            # prepare, on every call with a new number of keys); materialised once, in
            # key order, then each level probed by its primary key.
            params: list[Any] = [json.dumps(part)]
            sql = LOOKUP_SQL
            if not include_expired:
                sql += f" WHERE {NOT_EXPIRED.replace('expires_at_ms', 'a.expires_at_ms')}"
                params.append(now_ms)
            seen: set[tuple[int, int]] = set()  # defensive: a row in two levels counts once
            for row in await self._rows(sql, params):
                if (row[0], row[1]) in seen:
                    continue
                seen.add((row[0], row[1]))
                stored = _stored(row[1:])
                for key in asked[row[0]]:
                    if key in stored.record.index_keys:  # not a hash collision
                        found.setdefault(key, []).append(stored)
        for hits in found.values():  # in store order, whichever levels they came from
            hits.sort(key=lambda stored: stored.local_seq)
        return found

    async def range(
        self, origin: bytes, from_seq: int, to_seq: int, *, limit: int
    ) -> list[AlertRecord]:
        rows = await self._rows(
            f"SELECT {COLUMNS} FROM alerts WHERE origin = ? AND seq BETWEEN ? AND ?"
            " ORDER BY seq LIMIT ?",
            (origin, from_seq, to_seq, limit),
        )
        return [_record(row) for row in rows]

    async def request(self, request_id: str) -> bytes | None:
        rows = list(
            await self._rows(
                "SELECT alert_id FROM publish_requests WHERE request_id = ?", (request_id,)
            )
        )
        return bytes(rows[0][0]) if rows else None

    async def equivocations(self) -> list[Equivocation]:
        sql = (
            f"SELECT e.detected_at_ms, e.body, e.signature, e.index_keys,"
            f" {', '.join('a.' + c.strip() for c in COLUMNS.split(','))}"
            " FROM equivocations e JOIN alerts a ON a.origin = e.origin AND a.seq = e.seq"
            " ORDER BY e.rowid"
        )
        out = []
        for row in await self._rows(sql):
            first = _record(row[4:])
            keys = tuple(row[3].split(KEY_SEP)) if row[3] else ()
            second = make_record(row[1], row[2], Alert.FromString(row[1]), keys)
            out.append(Equivocation(first, second, row[0]))
        return out
