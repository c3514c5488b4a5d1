"""Protocol limits. Every node enforces them on every alert, wherever it came from."""

from __future__ import annotations

from dataclasses import dataclass

from node.core.errors import LimitExceeded


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int = 16 * 1024
    max_indicators: int = 256
    max_indicator_chars: int = 2048
    max_title_chars: int = 200
    max_description_chars: int = 8000
    max_references: int = 32
    max_reference_chars: int = 2048
    max_links: int = 16
    max_recipients: int = 64
    # created_at may be at most this far ahead of the receiver's clock.
    max_clock_skew_ms: int = 5 * 60 * 1000
    # Alerts per Ingest request / gossip frame.
    max_batch: int = 1000
    max_check_values: int = 10_000


DEFAULT_LIMITS = Limits()


def check_len(what: str, value: str, limit: int) -> None:
    """LimitExceeded when `value` is longer than `limit` characters."""
    if len(value) > limit:
        raise LimitExceeded(f"{what} is {len(value)} characters; the limit is {limit}")
