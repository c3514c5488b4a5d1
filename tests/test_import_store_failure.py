"""`alertmesh import` against a node whose store fails (a full disk): an item the node
could not store is no refused value. The importer sends it once more (its request id is
its content's hash, so nothing goes in twice); if the store fails again it stops with one
line and exit 2, not 3 (review s22 M2), after its summary of what went in; what its retry
finds stored by its own first attempt counts as new; it pauses before the retry (review
s22 round 2 L2-L4). The node is a real AlertNode and gRPC server in this process, its
SQLite store's write connection made to fail."""

from __future__ import annotations

import argparse
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from node.app.runtime import client_api_server
from node.interchange.import_publish import RETRY_PAUSE_S
from node.interchange.importer import EXIT_ERROR, EXIT_OK, run_import
from node.rpc.client import AlertClient
from node.store import SqliteStore
from tests.factory import Author
from tests.test_ingest_follow_up import node_with
from tests.test_store_own_chain import disk_full, failing, landed_then_io_error, once


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


class Pauses(list[float]):
    """The importer's pause before its retry, recorded (and not waited)."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def feed(tmp_path: Path, values: range = range(5)) -> argparse.Namespace:
    path = tmp_path / f"feed{values.start}-{values.stop}.txt"
    path.write_text("".join(f"store-failure-{i}.example\n" for i in values))
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
        pauses = Pauses()
        assert await run_import(client, feed(tmp_path), pauses) == EXIT_OK
        out = capsys.readouterr()
        assert "imported 5 of 5 values (list): 5 new alerts" in out.out
        assert "refused" not in out.err
        assert await store.count() == 5
        assert pauses == [RETRY_PAUSE_S] and 0 < RETRY_PAUSE_S <= 2  # once, briefly


async def test_an_import_counts_as_new_what_its_first_attempt_stored_in_doubt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The batch's COMMIT lands and then fails: the retry finds the alerts stored, by this
    run, so they are new, not "already published"."""
    async with SqliteStore(tmp_path / "a.db") as store, served(store) as client:
        failing(store, once("COMMIT", landed_then_io_error))
        assert await run_import(client, feed(tmp_path), Pauses()) == EXIT_OK
        out = capsys.readouterr().out
        assert "imported 5 of 5 values (list): 5 new alerts, 0 already published" in out
        assert await store.count() == 5


async def test_an_import_that_stops_with_exit_2_says_what_went_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The last two values were imported before; the store fails on the rest, twice: the
    summary line counts the two that answered in the failing batch, after the others."""
    async with SqliteStore(tmp_path / "a.db") as store, served(store) as client:
        assert await run_import(client, feed(tmp_path, range(3, 5)), Pauses()) == EXIT_OK
        capsys.readouterr()
        failing(store, insert_fails(2))
        assert await run_import(client, feed(tmp_path), Pauses()) == EXIT_ERROR
        out = capsys.readouterr()
        assert out.out.strip().splitlines() == [
            "imported 2 of 5 values (list): 0 new alerts, 2 already published; 0 refused"
        ]
        err = out.err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: the node could not store")


async def test_an_import_stops_with_exit_2_when_the_store_fails_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with SqliteStore(tmp_path / "a.db") as store, served(store) as client:
        failing(store, insert_fails(2))
        pauses = Pauses()
        assert await run_import(client, feed(tmp_path), pauses) == EXIT_ERROR
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: the node could not store")
        assert "run the import again" in err[0] and await store.count() == 0
        # Once the store works again, importing the same feed stores each value once.
        assert await run_import(client, feed(tmp_path), pauses) == EXIT_OK
        assert "5 new alerts" in capsys.readouterr().out and await store.count() == 5
        assert pauses == [RETRY_PAUSE_S]  # before the one retry, not on the second run
