"""Which store a node opens: the SQLite file at [store] path, or the PostgreSQL
database at [store] url when that is set (docs/operations.md, "Choosing the store")."""

from __future__ import annotations

from pathlib import Path

from node.app.config import Config
from node.store.base import AlertStore
from node.store.postgres import PostgresStore
from node.store.postgres_url import redacted
from node.store.sqlite import SqliteStore


def open_store(config: Config, *, follow: bool = False) -> AlertStore:
    """The node's store, not yet entered. `follow`: a read-only API process."""
    if config.store_url:
        return PostgresStore(config.store_url, follow=follow)
    return SqliteStore(config.store_path)


def store_files(config: Config) -> list[Path]:
    """The files whose size is the store's size (none for a database server)."""
    if config.store_url:
        return []
    path = config.store_path
    return [path, path.with_name(f"{path.name}-wal")]


def store_name(config: Config) -> str:
    """The store as a message may name it: never with a password."""
    return redacted(config.store_url) if config.store_url else str(config.store_path)
