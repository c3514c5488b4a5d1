"""What a reader of any feed format hands to the import pipeline.

A reader only parses its format: it does not validate indicator values (the pipeline
does, value by value, as `alertmesh check` infers types) and leaves every field it
does not find at None, so that the operator's flags (--category, --title, ...) fill it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ImportedIndicator:
    value: str  # as found in the source
    type_hint: str | None = None  # an indicator type name ("domain", "address", ...) if known
    where: str = ""  # where in the source, for error reports ("line 12", "indicator--…")
    # Set by a reader that already knows the value cannot be taken (a STIX comparison on
    # an observable alertmesh has no type for): the reason, reported like a refused value.
    refused: str | None = None


@dataclass(slots=True)
class ImportedAlert:
    """One alert to publish, read from a feed. None: not in the source (flags decide)."""

    indicators: list[ImportedIndicator] = field(default_factory=list)
    title: str | None = None
    description: str | None = None
    category: str | None = None  # a category name as the CLI takes it ("phishing", ...)
    severity: str | None = None  # a severity name ("low" ... "critical")
    confidence: int | None = None  # 0..100
    tlp: str | None = None  # "clear", "green", "amber", "amber+strict", "red"
    references: list[str] = field(default_factory=list)
    expires_at_ms: int | None = None
    source_id: str | None = None  # the source's own id (a STIX id, a MISP event uuid)
