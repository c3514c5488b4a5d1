"""Readers of plain lists and CSV files, and the sniffing of an input's format.

List: one value per line. Blank lines and lines starting with `#` are skipped, and so
is the rest of a line after ` #` (a comment after a value). A line may be `TYPE:VALUE`
(`domain:evil.example`); otherwise the type is inferred as `alertmesh check` infers it.

CSV: the first row is a header. Column names are matched case-insensitively, ignoring
surrounding spaces: `value` (or `indicator`) is required; `type`, `category`,
`severity`, `tlp`, `title`, `description` and `confidence` are optional, and other
columns are ignored. An empty cell means "not given" (the command's flags decide).
Rows with the same metadata become one ImportedAlert, in the order first seen.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from node.core import indicators
from node.interchange.model import ImportedAlert, ImportedIndicator

FORMATS = ("list", "csv", "stix", "misp")
VALUE_COLUMNS = ("value", "indicator")
META_COLUMNS = ("category", "severity", "tlp", "title", "description", "confidence")


class FormatError(ValueError):
    """The input is not in the format given or sniffed; the message says why."""


def sniff(text: str) -> str:
    """The format of `text`: JSON with "type": "bundle" is stix, JSON with "Event" (or a
    list of such) is misp, a first row naming a value/indicator column with commas is
    csv, anything else a list."""
    head = text.lstrip()
    if head[:1] in ("{", "["):
        try:
            data: Any = json.loads(head)
        except (json.JSONDecodeError, RecursionError):  # the reader says what is wrong
            data = None
        if isinstance(data, dict) and data.get("type") == "bundle":
            return "stix"
        if isinstance(data, dict) and "Event" in data:
            return "misp"
        if (
            isinstance(data, list)
            and data
            and all(isinstance(d, dict) and "Event" in d for d in data)
        ):
            return "misp"
    first = next((line for line in head.splitlines() if line.strip()), "")
    if "," in first:
        names = {cell.strip().lower() for cell in next(csv.reader([first]))}
        if names & set(VALUE_COLUMNS):
            return "csv"
    return "list"


def read_list(text: str) -> list[ImportedAlert]:
    """One ImportedAlert holding every value of the list (metadata from the flags)."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        value = line.partition(" #")[0].strip()
        if not value or value.startswith("#"):
            continue
        head, sep, rest = value.partition(":")
        hint = head.lower() if sep and head.lower() in indicators.TYPE_NAMES else None
        found.append(ImportedIndicator(rest if hint else value, hint, f"line {number}"))
    return [ImportedAlert(indicators=found)] if found else []


def read_csv(text: str) -> list[ImportedAlert]:
    """ImportedAlerts grouped by the metadata columns of each row."""
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if header is None:
        return []
    names = [cell.strip().lower() for cell in header]
    value_at = next((names.index(n) for n in VALUE_COLUMNS if n in names), None)
    if value_at is None:
        raise FormatError(
            f"the CSV header has no value or indicator column (it has: {', '.join(names)})"
        )
    type_at = names.index("type") if "type" in names else None
    meta_at = {n: names.index(n) for n in META_COLUMNS if n in names}
    groups: dict[tuple[str, ...], ImportedAlert] = {}
    for row in rows:
        if not any(cell.strip() for cell in row):
            continue
        where = f"line {rows.line_num}"

        def cell(i: int | None, row: list[str] = row) -> str:
            return row[i].strip() if i is not None and i < len(row) else ""

        meta = tuple(cell(meta_at.get(n)) for n in META_COLUMNS)
        alert = groups.get(meta)
        if alert is None:
            alert = groups[meta] = _alert_of(dict(zip(META_COLUMNS, meta, strict=True)))
        alert.indicators.append(
            ImportedIndicator(cell(value_at), cell(type_at).lower() or None, where)
        )
    return list(groups.values())


def _alert_of(meta: dict[str, str]) -> ImportedAlert:
    confidence: int | None = None
    if meta["confidence"]:
        # Not a number: left for the pipeline to refuse, with the rows it concerns.
        confidence = int(meta["confidence"]) if meta["confidence"].isdigit() else -1
    return ImportedAlert(
        title=meta["title"] or None,
        description=meta["description"] or None,
        category=meta["category"] or None,
        severity=meta["severity"] or None,
        confidence=confidence,
        tlp=meta["tlp"] or None,
    )
