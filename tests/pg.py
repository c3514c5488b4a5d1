"""A real PostgreSQL server for the tests, started once per session and stopped at
the end: the binaries come from the `pgserver` wheel (a test extra), so a fresh
machine with Python and PyPI runs the PostgreSQL tests too. As root, pgserver runs
the server as its own unprivileged user; it listens on a Unix socket in its data
directory only (no TCP port). A server that cannot start fails the tests that need
it, with the reason: they are never skipped."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest


class PgServer:
    def __init__(self, socket_dir: Path, user: str) -> None:
        self.socket_dir = socket_dir
        self.user = user
        self._names = itertools.count()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{database}?host={quote(str(self.socket_dir))}"

    async def new_database(self, prefix: str = "t") -> str:
        """An empty database of its own, for one test; its URL."""
        import asyncpg

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        admin = await asyncpg.connect(self.url())
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return self.url(name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    if "XDG_RUNTIME_DIR" not in os.environ:  # where pgserver keeps its lock files
        os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="alertmesh-run-")
    try:
        import pgserver
    except ImportError as exc:  # pragma: no cover - the test extras install it
        pytest.fail(f"PostgreSQL tests need the pgserver package (pip install -e .[test]): {exc}")
    data = Path(tempfile.mkdtemp(prefix="alertmesh-pg-"))
    try:
        server = pgserver.get_server(data, cleanup_mode="delete")
    except Exception as exc:
        shutil.rmtree(data, ignore_errors=True)
        pytest.fail(f"cannot start a PostgreSQL server for the tests (pgserver, {data}): {exc}")
    try:
        yield PgServer(data, "postgres")
    finally:
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)
