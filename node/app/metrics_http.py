"""`GET /metrics` over plain HTTP/1.0-style exchanges, served on the node's event loop.

Why not prometheus_client's start_http_server: it answers from a thread of its own,
and the collector reads state that only the event loop may touch (dicts of open
sessions and counters changing under it). A scrape is one short request, so a small
asyncio handler that answers and closes is enough: `serve` runs as a task of the
node's TaskGroup and closes the listener when the node stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 10.0
MAX_REQUEST_BYTES = 16 * 1024
MAX_CONNECTIONS = 32


class MetricsServer:
    """Serve `registry` at /metrics on host:port (port 0 picks one; see `address`)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._open = 0

    async def start(self) -> str:
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, limit=MAX_REQUEST_BYTES
        )
        port = self._server.sockets[0].getsockname()[1]
        return f"{self.host}:{port}"

    async def serve(self) -> None:
        """Serve until cancelled (a task of the node's TaskGroup), then close."""
        assert self._server is not None, "start() first"
        await self._server.serve_forever()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= MAX_CONNECTIONS:  # scrapers are few: more at once are a flood
            writer.close()
            return
        self._open += 1
        try:
            # The whole exchange, answer included, within the timeout: a client that does
            # not read holds nothing for long.
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
                status, body, ctype = self._answer(head)
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a client that went away or sent junk: nothing to answer
        except Exception:  # a bug answering: logged, and never the node's TaskGroup's
            log.warning("metrics request failed", exc_info=True)
        finally:
            self._open -= 1
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _answer(self, head: bytes) -> tuple[str, bytes, str]:
        method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
        path = rest.split(" ", 1)[0].split("?", 1)[0]
        if path != "/metrics":
            return "404 Not Found", b"metrics are at /metrics\n", "text/plain"
        if method != "GET":
            return "405 Method Not Allowed", b"", "text/plain"
        return "200 OK", generate_latest(self.registry), CONTENT_TYPE_LATEST
