"""A read-only TAXII 2.1 server: one collection, "alertmesh", of the member's exportable
alerts as STIX 2.1 (docs/interchange.md, "TAXII 2.1").

A small HTTP/1.1 server on asyncio streams (GET only, one request per connection), so
the node needs no web framework for four read-only endpoints. Connection handlers run in
the server's own TaskGroup, which the node's TaskGroup runs; cancelling `serve` closes the
listener and every open connection.

  GET /taxii2/                                          discovery
  GET /alertmesh/                                       the API root
  GET /alertmesh/collections/                           the one collection
  GET /alertmesh/collections/{id}/                      the collection
  GET /alertmesh/collections/{id}/objects/?added_after=T&limit=N&next=C&match[type]=…
  GET /alertmesh/collections/{id}/manifest/  (same parameters: ids, versions, date_added)

Objects are what `alertmesh export --format stix` writes for the same alerts, under the
same TLP rules (tlp.exportable, without --include-amber). `date_added` of an alert's
objects is when this node stored the alert; `limit` counts alerts (an alert's objects
always come together); `next` resumes after the last alert of the page.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.core.errors import AlertmeshError, Forbidden, Unauthenticated
from node.interchange.export import select
from node.interchange.stix_map import ALERTMESH_NS
from node.interchange.stix_write import (
    alert_objects,
    observable_objects,
    support_objects,
    timestamp,
)

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/taxii+json;version=2.1"
API_ROOT = "alertmesh"
COLLECTION_ID = str(uuid.uuid5(ALERTMESH_NS, "taxii-collection:alertmesh"))
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_HEADER_BYTES = 16 * 1024
READ_TIMEOUT_S = 30.0
WRITE_TIMEOUT_S = 60.0  # a client that does not read its answer is dropped after this
MAX_CONNECTIONS = 64  # more at once are closed on accept
SCAN_PAGE_ROWS = 100  # stored alerts read per store query, even for a small page
MAX_SCAN_ROWS = 5000  # stored alerts one request may look at; `next` continues after them
MAX_CURSOR = 2**63 - 1  # the store's positions are SQLite integers

# (cursor after which to read, how many) -> stored alerts oldest first, each with its
# cursor; the runtime reads them from the store.
AlertPage = Callable[[int, int], Awaitable[list[api.StoredAlert]]]
# The Authorization header -> None, or raises Unauthenticated / Forbidden.
Authorize = Callable[[str | None], None]


class HttpError(Exception):
    def __init__(self, status: int, title: str, description: str = "") -> None:
        super().__init__(title)
        self.status, self.title, self.description = status, title, description


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    500: "Internal Server Error",
}


class TaxiiServer:
    def __init__(
        self,
        page: AlertPage,
        *,
        authorize: Authorize | None = None,
        tls: ssl.SSLContext | None = None,
        title: str = "alertmesh",
    ) -> None:
        self.page = page
        self.authorize = authorize
        self.tls = tls
        self.title = title
        self._server: asyncio.Server | None = None
        self._connections: asyncio.TaskGroup | None = None
        self._early: list[asyncio.StreamWriter] = []
        self._open = 0

    async def start(self, host: str, port: int) -> str:
        """Bind; returns HOST:PORT with the real port. Connections are served by `serve`."""
        self._server = await asyncio.start_server(self._accept, host, port, ssl=self.tls)
        bound = self._server.sockets[0].getsockname()[1]
        return f"{host}:{bound}"

    async def serve(self) -> None:
        """Serve until cancelled, then close the listener and every connection."""
        assert self._server is not None, "start() first"
        try:
            async with asyncio.TaskGroup() as tg:
                self._connections = tg
                await asyncio.Event().wait()
        finally:
            self._connections = None
            self._server.close()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._connections is None or self._open >= MAX_CONNECTIONS:
            writer.close()  # not serving (yet or any more), or too many at once
            return
        self._open += 1
        self._connections.create_task(self._connection(reader, writer), name="taxii-connection")

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer one request. Never raises: a connection's failure, whatever it is (a
        forged TLS record, a bug), must not reach the node's TaskGroup."""
        try:
            await self._answer(reader, writer)
        except Exception:
            log.warning("TAXII connection failed", exc_info=True)
        finally:
            self._open -= 1
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            status, headers, body = await self._respond(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            status, headers, body = 400, {}, _error(400, "Malformed or incomplete request")
        except (ConnectionError, ssl.SSLError):
            return
        try:
            payload = json.dumps(body).encode()
            lines = [
                f"HTTP/1.1 {status} {_REASONS.get(status, '')}",
                f"Content-Type: {MEDIA_TYPE}",
                f"Content-Length: {len(payload)}",
                "Connection: close",
                *(f"{k}: {v}" for k, v in headers.items()),
            ]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await writer.drain()
        except (ConnectionError, ssl.SSLError, TimeoutError):
            pass

    async def _respond(self, head: bytes) -> tuple[int, dict[str, str], Any]:
        if len(head) > MAX_HEADER_BYTES:
            return 400, {}, _error(400, "Request headers too large")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3:
            return 400, {}, _error(400, "Malformed request line")
        method, target, _ = parts
        headers = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        try:
            if method != "GET":
                raise HttpError(405, "Read-only TAXII server", "only GET is served")
            if self.authorize is not None:
                try:
                    self.authorize(headers.get("authorization"))
                except Unauthenticated as exc:
                    raise HttpError(401, "Unauthenticated", str(exc)) from exc
                except Forbidden as exc:
                    raise HttpError(403, "Forbidden", str(exc)) from exc
            accept = headers.get("accept", "*/*")
            if not any(m in accept for m in ("application/taxii+json", "*/*", "application/*")):
                raise HttpError(406, "Not acceptable", f"this server answers {MEDIA_TYPE}")
            return await self._route(target, headers)
        except HttpError as exc:
            return exc.status, {}, _error(exc.status, exc.title, exc.description)
        except AlertmeshError as exc:
            log.warning("TAXII request %s failed: %s", target, exc)
            return 500, {}, _error(500, "Internal error", str(exc))

    async def _route(self, target: str, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        split = urlsplit(target)
        path = "/" + "/".join(p for p in unquote(split.path).split("/") if p) + "/"
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        base = f"/{API_ROOT}/"
        collections = f"{base}collections/"
        own = f"{collections}{COLLECTION_ID}/"
        if path == "/taxii2/":
            return (
                200,
                {},
                {
                    "title": self.title,
                    "description": "alertmesh node (read-only)",
                    "default": base,
                    "api_roots": [base],
                },
            )
        if path == base:
            return 200, {}, {"title": self.title, "versions": [MEDIA_TYPE], "max_content_length": 0}
        if path == collections:
            return 200, {}, {"collections": [self._collection()]}
        if path == own:
            return 200, {}, self._collection()
        if path == f"{own}objects/":
            return await self._objects(query)
        if path == f"{own}manifest/":
            return await self._objects(query, manifest=True)
        raise HttpError(404, "Not found", f"no TAXII resource at {split.path}")

    def _collection(self) -> dict[str, Any]:
        return {
            "id": COLLECTION_ID,
            "title": "alertmesh",
            "description": "This member's exportable alerts (TLP:CLEAR and TLP:GREEN) as STIX 2.1",
            "can_read": True,
            "can_write": False,
            "media_types": ["application/stix+json;version=2.1"],
        }

    async def _select(self, query: dict[str, str]) -> tuple[list[api.StoredAlert], bool, int]:
        """The page of alerts the query asks for, whether more follow, and the cursor after."""
        try:
            limit = min(int(query.get("limit", DEFAULT_LIMIT)), MAX_LIMIT)
            cursor = int(query.get("next", "0"))
            after_ms = _parse_time(query["added_after"]) if "added_after" in query else -1
        except ValueError as exc:
            raise HttpError(400, "Bad query parameter", str(exc)) from exc
        if limit < 1 or not 0 <= cursor <= MAX_CURSOR:
            raise HttpError(400, "Bad query parameter", "limit must be >= 1, 0 <= next < 2**63")
        chosen: list[api.StoredAlert] = []
        more = False
        scanned = 0
        while len(chosen) < limit and not more:
            if scanned >= MAX_SCAN_ROWS:  # mostly withheld alerts: the client asks again
                return chosen, True, cursor
            rows = await self.page(cursor, max(limit, SCAN_PAGE_ROWS))
            scanned += len(rows)
            if not rows:
                break
            fresh = [s for s in rows if s.received_at_ms > after_ms]
            for stored in select(fresh, include_amber=False).alerts:
                if len(chosen) == limit:
                    more = True
                    break
                chosen.append(stored)
            cursor = int(rows[-1].cursor)
        if chosen:
            cursor = int(chosen[-1].cursor)
            more = more or bool(await self.page(cursor, 1))
        return chosen, more, cursor

    async def _objects(
        self, query: dict[str, str], *, manifest: bool = False
    ) -> tuple[int, dict[str, str], Any]:
        chosen, more, cursor = await self._select(query)
        types = set(query["match[type]"].split(",")) if "match[type]" in query else None
        objects = _envelope_objects(chosen, manifest=manifest)
        if types is not None:
            objects = [o for o in objects if o.get("type", o["id"].partition("--")[0]) in types]
        envelope: dict[str, Any] = {"more": more}
        if more:
            envelope["next"] = str(cursor)
        if objects:
            envelope["objects"] = objects
        headers = {}
        if chosen:
            headers["X-TAXII-Date-Added-First"] = timestamp(chosen[0].received_at_ms)
            headers["X-TAXII-Date-Added-Last"] = timestamp(chosen[-1].received_at_ms)
        return 200, headers, envelope


def _envelope_objects(
    alerts: Sequence[api.StoredAlert], *, manifest: bool = False
) -> list[dict[str, Any]]:
    """The alerts' STIX objects, or (manifest) each object's id, version and date_added:
    when this node stored the first alert that needed the object."""
    if not alerts:
        return []
    objects = [*support_objects(alerts), *observable_objects(alerts)]
    first_added: dict[str, int] = {}
    for stored in alerts:
        own = alert_objects(stored)
        objects += own
        for obj in own:
            first_added.setdefault(obj["id"], stored.received_at_ms)
    if not manifest:
        return objects
    earliest = alerts[0].received_at_ms
    return [
        {
            "id": obj["id"],
            "date_added": timestamp(first_added.get(obj["id"], earliest)),
            "version": obj.get("modified", obj.get("created", timestamp(earliest))),
            "media_type": "application/stix+json;version=2.1",
        }
        for obj in objects
    ]


def _parse_time(text: str) -> int:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _error(status: int, title: str, description: str = "") -> dict[str, Any]:
    return {"title": title, "description": description, "http_status": str(status)}
