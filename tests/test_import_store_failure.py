"""`alertmesh import` against a node whose store fails (a full disk): an item the node
could not store is no refused value. The importer sends it once more (its request id is
its content's hash, so nothing goes in twice); if the store fails again it stops with one
line and exit 2, not 3 (review s22 M2). The node is a real AlertNode and gRPC server in
this process, its SQLite store's write connection made to fail."""

from __future__ import annotations

import argparse
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from node.app.runtime import client_api_server
from node.interchange.importer import EXIT_ERROR, EXIT_OK, run_import
from node.rpc.client import AlertClient
from node.store import SqliteStore
from tests.factory import Author
from tests.test_ingest_follow_up import node_with
from tests.test_store_own_chain import disk_full, failing


def insert_fails(times: int) -> Callable[[sqlite3.Connection], Callable[[str], None]]:
    """A `fail` for FailingDb: the first `times` transactions fail at their INSERT (a full
    disk; nothing written)."""
    left = times

    def fail_with(db: sqlite3.Connection) -> Callable[[str], None]:
        def fail(sql: str) -> None:
            nonlocal left
            if left and sql.startswith("INSERT"):
                left -= 1
                raise disk_full(db)

        return fail

    return fail_with


@asynccontextmanager
async def served(store: SqliteStore) -> AsyncIterator[AlertClient]:
    async with node_with(store, Author()) as node:  # type: ignore[arg-type]
        server, _ = client_api_server(node, [])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        client = AlertClient(f"127.0.0.1:{port}")
        try:
            yield client
        finally:
            await client.close()
            await server.stop(None)
            await node.drain()


def feed(tmp_path: Path) -> argparse.Namespace:
    path = tmp_path / "feed.txt"
    path.write_text("".join(f"store-failure-{i}.example\n" for i in range(5)))
    return argparse.Namespace(
        file=str(path),
        format=None,
        category=None,
        severity=None,
        tlp=None,
        title=None,
        confidence=None,
        per_alert=1,
    )


async def test_an_import_sends_again_what_the_store_failed_once_and_stores_each_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with SqliteStore(tmp_path / "a.db") as store, served(store) as client:
        failing(store, insert_fails(1))
        assert await run_import(client, feed(tmp_path)) == EXIT_OK
        out = capsys.readouterr()
        assert "imported 5 of 5 values (list): 5 new alerts" in out.out
        assert "refused" not in out.err
        assert await store.count() == 5


async def test_an_import_stops_with_exit_2_when_the_store_fails_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with SqliteStore(tmp_path / "a.db") as store, served(store) as client:
        failing(store, insert_fails(2))
        assert await run_import(client, feed(tmp_path)) == EXIT_ERROR
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: the node could not store")
        assert "run the import again" in err[0] and await store.count() == 0
        # Once the store works again, importing the same feed stores each value once.
        assert await run_import(client, feed(tmp_path)) == EXIT_OK
        assert "5 new alerts" in capsys.readouterr().out and await store.count() == 5
