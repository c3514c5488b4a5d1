"""`alertmesh import`: read a feed, check each value, publish the good ones in batches.

The pipeline:
1. read: the input's format (given, or sniffed by node/interchange/lists.py) turns the
   text into ImportedAlerts (lists.py for lists and CSV; node.interchange.stix and .misp
   for STIX 2.1 bundles and MISP events).
2. plan (no I/O): each value is typed as `alertmesh check` types it (a type hint from
   the source is tried first, and a value that does not fit its hint but is plainly of
   another type, e.g. an IP address in a domain list, takes that type); a value that is
   no indicator at all is refused with the reason. Values that would only be `other`
   are refused unless written `other:VALUE`. Good values are grouped into alerts of
   --per-alert indicators that share their metadata (source first, flags second). Each
   alert's client_request_id is the SHA-256 of its content (values and metadata; a
   default title, which names the file, is left out), so importing the same values
   again, from the same file or another, adds nothing.
3. publish (node/interchange/import_publish.py): PublishBatch calls of BATCH_ALERTS
   alerts; a progress bar on a terminal, plain progress lines otherwise.

Exit status: 0 everything went in (or was there already), 3 some values were refused
(each reported on stderr with where it was and why), 2 error (unreadable input, a
format this build lacks, an unreachable node, a node whose store cannot store alerts:
an item answered UNAVAILABLE is sent once more (import_publish.py), and if it fails again
the import stops, after its summary line of what went in so far).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node._pb.alertmesh.v1 import alert_pb2
from node._pb.alertmesh.v1 import alerts_service_pb2 as api
from node.core import indicators
from node.core.alerts import CATEGORY_NAMES, SEVERITY_NAMES, TLP_NAMES
from node.core.errors import InvalidIndicator
from node.core.limits import DEFAULT_LIMITS
from node.interchange import lists
from node.interchange.import_publish import (
    ImportFailed,
    Pause,
    Plan,
    Progress,
    Published,
    Refusal,
    publish,
)
from node.interchange.model import ImportedAlert, ImportedIndicator
from node.rpc.client import AlertClient

EXIT_OK = 0
EXIT_ERROR = 2
EXIT_REFUSED = 3
PER_ALERT = 25
# Room an alert's indicators may take: the body limit less what the rest may need.
INDICATOR_BYTES = DEFAULT_LIMITS.max_body_bytes - 1024


@dataclass(frozen=True, slots=True)
class Defaults:
    """The command's flags: metadata for what the source leaves open."""

    category: int = CATEGORY_NAMES["other"]
    severity: int = SEVERITY_NAMES["medium"]
    tlp: int = TLP_NAMES["green"]
    confidence: int = 50
    title: str | None = None
    per_alert: int = PER_ALERT
    source: str = "stdin"  # for the default title


# --- reading ----------------------------------------------------------------------------


def read_input(path: str) -> str:
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise ImportFailed(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFailed(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_alerts(text: str, fmt: str | None) -> tuple[str, list[ImportedAlert]]:
    """(format, what its reader found); `fmt` None: sniffed."""
    try:
        fmt = fmt or lists.sniff(text)
        if fmt == "list":
            return fmt, lists.read_list(text)
        if fmt == "csv":
            return fmt, lists.read_csv(text)
        return fmt, _reader(fmt)(text)
    except ImportFailed:
        raise
    except RecursionError:  # JSON nested deeper than anyone's feed
        raise ImportFailed(f"not a valid {fmt} input: nested too deeply") from None
    # A reader's word on a bad input, or a hostile one that is not shaped as the format
    # says (an object where a list belongs, ...): one line, never a traceback.
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, csv.Error) as exc:
        raise ImportFailed(f"not a valid {fmt or 'list'} input: {exc}") from None


def _reader(fmt: str) -> Callable[[str], list[ImportedAlert]]:
    """node.interchange.FMT.read_FMT, loaded only when that format is asked for."""
    if fmt not in lists.FORMATS:
        raise ImportFailed(f"unknown format {fmt!r}; use one of {', '.join(lists.FORMATS)}")
    try:
        module: Any = importlib.import_module(f"node.interchange.{fmt}")
        read: Callable[[str], list[ImportedAlert]] = getattr(module, f"read_{fmt}")
    except (ImportError, AttributeError):
        raise ImportFailed(f"format {fmt} is not available in this build") from None
    return read


# --- planning (no I/O) ------------------------------------------------------------------


def indicator_of(found: ImportedIndicator) -> indicators.Indicator:
    """The indicator a value is, typed as `check` types it; InvalidIndicator says why not."""
    text = found.value.strip()
    if found.type_hint:
        hinted = indicators.TYPE_NAMES.get(found.type_hint.lower())
        if hinted is None:
            raise InvalidIndicator(
                f"unknown type {found.type_hint!r}; use one of {', '.join(indicators.TYPE_NAMES)}"
            )
        try:
            return indicators.normalize(hinted, text, strict=True)
        except InvalidIndicator:
            inferred = _inferred(text)
            if inferred is None or inferred.type == hinted:
                raise
            return inferred  # e.g. an IP address in a domain list
    inferred = _inferred(text)
    if inferred is not None:
        return inferred
    indicators.parse(text, strict=True)  # raises with the reason of the inferred type
    # Only `other` would take it: say why it is not the likeliest thing, a host name.
    try:
        indicators.normalize(indicators.DOMAIN, text, strict=True)
    except InvalidIndicator as exc:
        why = str(exc).partition(": ")[2] or str(exc)
        raise InvalidIndicator(f"not an indicator alertmesh recognises ({why})") from None
    raise InvalidIndicator("not an indicator alertmesh recognises")  # pragma: no cover


def _inferred(text: str) -> indicators.Indicator | None:
    """The value as its inferred type, unless that is `other` or it does not parse."""
    try:
        ind = indicators.parse(text, strict=True)
    except InvalidIndicator:
        return None
    head = text.partition(":")[0].lower()
    if ind.type == indicators.OTHER and head != "other":
        return None
    return ind


def _named(names: dict[str, int], text: str | None, what: str, default: int) -> int:
    if text is None:
        return default
    key = text.strip().lower().replace("_", "-")
    if what == "tlp":
        key = key.removeprefix("tlp:").replace("-strict", "+strict")
    if key not in names:
        raise InvalidIndicator(f"unknown {what} {text!r}; use one of {', '.join(names)}")
    return names[key]


def plan(alerts: Sequence[ImportedAlert], defaults: Defaults) -> Plan:
    """The PublishRequests for `alerts`, and the values refused."""
    out = Plan()
    drafts: list[tuple[ImportedAlert, _Meta, list[tuple[indicators.Indicator, str]]]] = []
    for alert in alerts:
        good: dict[indicators.Indicator, str] = {}  # first place each value was seen
        out.values += len(alert.indicators)
        try:
            meta = _metadata(alert, defaults)
        except InvalidIndicator as exc:
            out.refused += [Refusal(i.where, i.value, str(exc)) for i in alert.indicators]
            continue
        for found in alert.indicators:
            if found.refused:  # the reader's own word: no type for it here
                out.refused.append(Refusal(found.where, found.value, found.refused))
                continue
            try:
                good.setdefault(indicator_of(found), found.where)
            except InvalidIndicator as exc:
                out.refused.append(Refusal(found.where, found.value, str(exc)))
        if good:
            drafts.append((alert, meta, list(good.items())))
    total = sum(len(_chunks(a, values, defaults.per_alert)) for a, _, values in drafts)
    number = 0
    for alert, meta, values in drafts:
        chunks = _chunks(alert, values, defaults.per_alert)
        for i, chunk in enumerate(chunks, start=1):
            number += 1
            title = alert.title or defaults.title or f"Imported from {defaults.source}"
            if len(chunks) > 1:
                title = f"{title} ({i}/{len(chunks)})"
            elif not (alert.title or defaults.title) and total > 1:
                title = f"{title} ({number}/{total})"
            named = bool(alert.title or defaults.title)
            out.requests.append(_request(alert, meta, title, [i for i, _ in chunk], named))
            out.wheres.append(_span([where for _, where in chunk]))
    return out


@dataclass(frozen=True, slots=True)
class _Meta:
    category: int
    severity: int
    tlp: int
    confidence: int


def _metadata(alert: ImportedAlert, defaults: Defaults) -> _Meta:
    """The source's metadata where it has some, else the flags'."""
    confidence = defaults.confidence if alert.confidence is None else alert.confidence
    if not 0 <= confidence <= 100:
        raise InvalidIndicator("confidence is a whole number from 0 to 100")
    return _Meta(
        _named(CATEGORY_NAMES, alert.category, "category", defaults.category),
        _named(SEVERITY_NAMES, alert.severity, "severity", defaults.severity),
        _named(TLP_NAMES, alert.tlp, "tlp", defaults.tlp),
        confidence,
    )


def _chunks(
    alert: ImportedAlert, values: list[tuple[indicators.Indicator, str]], per_alert: int
) -> list[list[tuple[indicators.Indicator, str]]]:
    """`values` cut into alerts of at most per_alert indicators that fit the body limit."""
    room = INDICATOR_BYTES - len((alert.description or "").encode())
    room -= sum(len(r.encode()) + 3 for r in alert.references)
    chunks: list[list[tuple[indicators.Indicator, str]]] = [[]]
    used = 0
    for item in values:
        size = len(item[0].value.encode()) + 8  # the value and its tags and lengths
        if chunks[-1] and (len(chunks[-1]) >= per_alert or used + size > room):
            chunks.append([])
            used = 0
        chunks[-1].append(item)
        used += size
    return chunks


def _request(
    alert: ImportedAlert,
    meta: _Meta,
    title: str,
    found: list[indicators.Indicator],
    named: bool,  # False: a default title, which names the file and is left out of the id
) -> api.PublishRequest:
    request = api.PublishRequest(
        category=alert_pb2.Category.ValueType(meta.category),
        severity=alert_pb2.Severity.ValueType(meta.severity),
        tlp=alert_pb2.Tlp.ValueType(meta.tlp),
        confidence=meta.confidence,
        title=title[: DEFAULT_LIMITS.max_title_chars] if named else "",
        description=alert.description or "",
        references=alert.references,
        expires_at_ms=alert.expires_at_ms or 0,
    )
    add = request.indicators.add
    for ind in found:
        add(type=alert_pb2.IndicatorType.ValueType(ind.type), value=ind.value)
    # The same content gets the same id: importing it again finds the first alert.
    content = hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()
    request.client_request_id = f"import:{content}"
    request.title = title[: DEFAULT_LIMITS.max_title_chars]
    return request


def _span(wheres: list[str]) -> str:
    wheres = [w for w in wheres if w]
    if not wheres:
        return ""
    return wheres[0] if len(wheres) == 1 else f"{wheres[0]} to {wheres[-1]}"


async def run_import(
    client: AlertClient, args: argparse.Namespace, pause: Pause = asyncio.sleep
) -> int:
    """The `alertmesh import` command; see the module docstring. `pause`: how it waits
    before sending again what the node's store failed (RETRY_PAUSE_S)."""
    err = sys.stderr
    try:
        if not 1 <= args.per_alert <= DEFAULT_LIMITS.max_indicators:
            raise ImportFailed(f"--per-alert is 1 to {DEFAULT_LIMITS.max_indicators}")
        text = read_input(args.file)
        fmt, found = read_alerts(text, args.format)
    except ImportFailed as exc:
        print(f"error: {exc}", file=err)
        return EXIT_ERROR
    flags = ("category", "severity", "tlp", "confidence")
    given: dict[str, Any] = {k: getattr(args, k) for k in flags if getattr(args, k) is not None}
    defaults = Defaults(
        title=args.title,
        per_alert=args.per_alert,
        source="stdin" if args.file == "-" else Path(args.file).name,
        **given,
    )
    work = plan(found, defaults)
    for refusal in work.refused:
        print(f"refused {refusal}", file=err)
    progress = Progress(work.indicators, err)
    done, failed = Published(), None
    try:
        await publish(client, work, progress, done, pause)
    except ImportFailed as exc:  # the node's store failed twice: a retry later may work
        failed = exc
    finally:
        progress.close()
    for refusal in done.refused:
        print(f"refused {refusal}", file=err)
    refused = len(work.refused) + done.refused_values
    print(  # also when the store failed: what went in before
        f"imported {done.indicators:,} of {work.values:,} values ({fmt}):"
        f" {done.new:,} new alerts, {done.duplicate:,} already published; {refused:,} refused"
    )
    if failed is not None:
        print(f"error: {failed}", file=err)
        return EXIT_ERROR
    return EXIT_REFUSED if refused else EXIT_OK
