from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from node.store import MemoryStore, SqliteStore
from node.store.base import AlertStore
from node.store.postgres import PostgresStore
from tests.pg import PgServer, pg_server

__all__ = ["pg_server"]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AlertStore]:
    """Every store test runs against all three implementations."""
    impl: AlertStore
    if request.param == "memory":
        impl = MemoryStore()
    elif request.param == "sqlite":
        impl = SqliteStore(tmp_path / "a.db")
    else:
        server: PgServer = request.getfixturevalue("pg_server")
        impl = PostgresStore(await server.new_database())
    async with impl as opened:
        yield opened
