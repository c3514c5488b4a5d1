"""Storage: a narrow interface with an aiosqlite implementation and an in-memory one."""

from node.store.base import AlertStore, Equivocation, PutOutcome, Query, Stored
from node.store.memory import MemoryStore
from node.store.sqlite import SqliteStore

__all__ = [
    "AlertStore",
    "Equivocation",
    "MemoryStore",
    "PutOutcome",
    "Query",
    "SqliteStore",
    "Stored",
]
