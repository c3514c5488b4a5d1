from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from node.store import MemoryStore, SqliteStore
from node.store.base import AlertStore


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AlertStore]:
    """Every store test runs against both implementations."""
    impl: AlertStore = (
        MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "a.db")
    )
    async with impl as opened:
        yield opened
