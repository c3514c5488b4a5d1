"""A PostgreSQL URL as a setting: whether a store setting names a database, and the
URL with its secrets hidden, for every message and log line."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

SECRET_PARAMETERS = ("password", "sslpassword")  # libpq's, which asyncpg also reads


def _secrets(url: str) -> list[str]:
    """The secrets `url` carries: the password of user:password@, and the values of
    ?password= and ?sslpassword= (both raw and percent-decoded)."""
    try:
        parts = urlsplit(url)
        found = [parts.password or ""]
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return [url]
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() in SECRET_PARAMETERS:
            found += [value, quote(value, safe="")]
    return [s for s in found if s]


def redacted(url: str) -> str:
    """`url` with its passwords replaced by ***, for every message and log line."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://***"
    query = "&".join(
        f"{k}=***" if k.lower() in SECRET_PARAMETERS else f"{k}={v}"
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def scrub(text: str, url: str) -> str:
    """`text` (an error message) with every secret of `url` replaced by ***."""
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return text


def is_url(text: str) -> bool:
    """Whether a store setting names a PostgreSQL database rather than a file."""
    return re.match(r"postgres(ql)?://", text) is not None
