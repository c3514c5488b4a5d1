"""The read side of the PostgreSQL store: every query a client's read makes, over the
store's pool of connections (node/store/postgres.py opens it and writes)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import asyncpg

from node._pb.alertmesh.v1.alert_pb2 import Alert
from node.core.alerts import AlertRecord, make_record
from node.store.base import Equivocation, Held, Query, Stored, record_from_row
from node.store.sqlite_writer import key_hash

RECORD = (
    "id, body, signature, origin, seq, prev, created_at_ms, expires_at_ms, category, severity,"
    " confidence, title, index_keys"
)
STORED = f"local_seq, received_at_ms, {RECORD}"
ALIASED = ", ".join(f"a.{c.strip()}" for c in STORED.split(","))
LOOKUP_CHUNK = 10_000


Row = Sequence[Any] | asyncpg.Record


def _record(row: Row) -> AlertRecord:
    """The columns are AlertRecord's fields in order (RECORD); keys are an array."""
    return record_from_row(row, tuple(row[12]))


def _stored(row: Row) -> Stored:
    return Stored(_record(row[2:]), local_seq=row[0], received_at_ms=row[1])


class PostgresReads:
    """The read queries of PostgresStore, over its pool (`_pool`, open while the store is)."""

    _pool: asyncpg.Pool | None

    @property
    def _readers(self) -> asyncpg.Pool:
        assert self._pool is not None, "store is not open"
        return self._pool

    async def _fetch(self, sql: str, *params: Any) -> list[asyncpg.Record]:
        async with self._readers.acquire() as db:
            rows: list[asyncpg.Record] = await db.fetch(sql, *params)
            return rows

    async def get(self, alert_id: bytes) -> Stored | None:
        rows = await self._fetch(f"SELECT {STORED} FROM alerts WHERE id = $1", alert_id)
        return _stored(rows[0]) if rows else None

    async def missing(self, ids: Collection[bytes]) -> set[bytes]:
        wanted = list(set(ids))
        if not wanted:
            return set()
        rows = await self._fetch("SELECT id FROM alerts WHERE id = ANY($1)", wanted)
        return set(wanted) - {row[0] for row in rows}

    async def held(self, ids: Collection[bytes]) -> dict[bytes, Held]:
        wanted = list(set(ids))
        if not wanted:
            return {}
        rows = await self._fetch(
            "SELECT id, signature, origin, seq FROM alerts WHERE id = ANY($1)", wanted
        )
        return {row[0]: Held(row[1], row[2], row[3]) for row in rows}

    @staticmethod
    def _where(query: Query, params: list[Any]) -> list[str]:
        def arg(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        clauses: list[str] = []
        if query.categories:
            clauses.append(f"category = ANY({arg(sorted(query.categories))}::integer[])")
        if query.origins:
            clauses.append(f"origin = ANY({arg(sorted(query.origins))}::bytea[])")
        if query.min_severity:
            clauses.append(f"severity >= {arg(query.min_severity)}")
        if query.since_ms:
            clauses.append(f"created_at_ms >= {arg(query.since_ms)}")
        if query.until_ms:
            clauses.append(f"created_at_ms < {arg(query.until_ms)}")
        if query.keys or query.any_key:
            hashes = sorted({key_hash(k) for k in query.keys})
            clauses.append(
                f"local_seq IN (SELECT local_seq FROM alert_keys"
                f" WHERE key = ANY({arg(hashes)}::bigint[]))"
            )
        if not query.include_expired:
            clauses.append(f"(expires_at_ms = 0 OR expires_at_ms > {arg(query.now_ms)})")
        return clauses

    async def search(self, query: Query, *, limit: int, before: int | None = None) -> list[Stored]:
        params: list[Any] = []
        clauses = self._where(query, params)
        if before is not None:
            params.append(before)
            clauses.append(f"local_seq < ${len(params)}")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(limit)
        rows = await self._fetch(
            f"SELECT {STORED} FROM alerts {where} ORDER BY local_seq DESC LIMIT ${len(params)}",
            *params,
        )
        return [_stored(row) for row in rows]

    async def after(self, query: Query, *, cursor: int, limit: int) -> list[Stored]:
        params: list[Any] = []
        clauses = self._where(query, params)
        params.append(cursor)
        clauses.append(f"local_seq > ${len(params)}")
        params.append(limit)
        rows = await self._fetch(
            f"SELECT {STORED} FROM alerts WHERE {' AND '.join(clauses)}"
            f" ORDER BY local_seq ASC LIMIT ${len(params)}",
            *params,
        )
        return [_stored(row) for row in rows]

    async def lookup(
        self, keys: Collection[str], *, now_ms: int, include_expired: bool = False
    ) -> dict[str, list[Stored]]:
        if not keys:
            return {}
        asked: dict[int, list[str]] = {}  # several keys per hash only on a collision
        for key in keys:
            asked.setdefault(key_hash(key), []).append(key)
        hashes = sorted(asked)
        sql = (
            f"SELECT k.key, {ALIASED} FROM alert_keys k JOIN alerts a"
            " ON a.local_seq = k.local_seq WHERE k.key = ANY($1::bigint[])"
        )
        if not include_expired:
            sql += " AND (a.expires_at_ms = 0 OR a.expires_at_ms > $2)"
        found: dict[str, list[Stored]] = {}
        for i in range(0, len(hashes), LOOKUP_CHUNK):
            params: list[Any] = [hashes[i : i + LOOKUP_CHUNK]]
            if not include_expired:
                params.append(now_ms)
            for row in await self._fetch(sql, *params):
                stored = _stored(row[1:])
                for key in asked[row[0]]:
                    if key in stored.record.index_keys:  # not a hash collision
                        found.setdefault(key, []).append(stored)
        for hits in found.values():
            hits.sort(key=lambda stored: stored.local_seq)
        return found

    async def range(
        self, origin: bytes, from_seq: int, to_seq: int, *, limit: int
    ) -> list[AlertRecord]:
        rows = await self._fetch(
            f"SELECT {RECORD} FROM alerts WHERE origin = $1 AND seq BETWEEN $2 AND $3"
            " ORDER BY seq LIMIT $4",
            origin,
            from_seq,
            to_seq,
            limit,
        )
        return [_record(row) for row in rows]

    async def request(self, request_id: str) -> bytes | None:
        rows = await self._fetch(
            "SELECT alert_id FROM publish_requests WHERE request_id = $1", request_id
        )
        return bytes(rows[0][0]) if rows else None

    async def equivocations(self) -> list[Equivocation]:
        rows = await self._fetch(
            "SELECT e.detected_at_ms, e.body, e.signature, e.index_keys,"
            f" {', '.join('a.' + c.strip() for c in RECORD.split(','))}"
            " FROM equivocations e JOIN alerts a ON a.origin = e.origin AND a.seq = e.seq"
            " ORDER BY e.n"
        )
        out = []
        for row in rows:
            first = _record(row[4:])
            second = make_record(row[1], row[2], Alert.FromString(row[1]), tuple(row[3]))
            out.append(Equivocation(first, second, row[0]))
        return out
