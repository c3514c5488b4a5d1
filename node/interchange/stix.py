"""Read STIX 2.1 (a bundle, a TAXII envelope or a list of objects) into ImportedAlerts.

What becomes an alert (docs/interchange.md, "STIX 2.1"):
- each `indicator` with a STIX pattern: its comparisons `[TYPE:value = '…']` (or `IN`)
  on domain-name, url, ipv4-addr, ipv6-addr, email-addr, email-message:from_ref.value
  and alertmesh's x-alertmesh-wallet / x-alertmesh-transaction give the values; any
  other comparison is handed on as refused, with the reason;
- the observables of those types that no indicator of the bundle names: one more alert.
Patterns are parsed with stix2-patterns (the OASIS grammar), never by regular expression.
"""

from __future__ import annotations

import json
from typing import Any

from stix2patterns.exceptions import ParseException
from stix2patterns.pattern import Pattern

from node.core.errors import AlertmeshError
from node.interchange.model import ImportedAlert, ImportedIndicator
from node.interchange.stix_map import EXTENSION_ID, TYPE_OF_OBSERVABLE
from node.interchange.tlp import NAME_BY_MARKING, TLP2_EXTENSION, strictest, tlp_name
from node.interchange.vocab import category_from_labels

Obj = dict[str, Any]
SEVERITIES = ("info", "low", "medium", "high", "critical")
# Paths other than `value` that plainly hold a value of a type alertmesh knows.
_OTHER_PATHS = {("email-message", "from_ref.value"): "email"}


class InvalidFeed(AlertmeshError, ValueError):
    """The input is not a document of the format it was read as (a ValueError, as the
    import pipeline's FormatError, and an AlertmeshError for the CLI's one-line report)."""


def objects_of(text: str) -> list[Obj]:
    """The objects of a bundle, a TAXII envelope, a list, or one object."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InvalidFeed(f"not JSON: {exc}") from exc
    if isinstance(doc, dict) and isinstance(doc.get("objects"), list):
        objects = doc["objects"]
    elif isinstance(doc, list):
        objects = doc
    elif isinstance(doc, dict) and "type" in doc:
        objects = [doc]
    else:
        raise InvalidFeed("not a STIX bundle, TAXII envelope or STIX object")
    return [o for o in objects if isinstance(o, dict)]


def read_stix(text: str) -> list[ImportedAlert]:
    """Alerts to publish from a STIX 2.1 document (values unchecked: the pipeline checks)."""
    objects = objects_of(text)
    markings = _markings(objects)
    alerts: list[ImportedAlert] = []
    named: set[tuple[str, str]] = set()
    for obj in objects:
        if obj.get("type") == "indicator":
            alert = _indicator(obj, markings)
            named.update((i.type_hint or "", i.value) for i in alert.indicators)
            alerts.append(alert)
    loose = []
    for obj in objects:
        hint = TYPE_OF_OBSERVABLE.get(str(obj.get("type")))
        value = obj.get("value")
        if hint and isinstance(value, str) and (hint, value) not in named:
            named.add((hint, value))
            loose.append(ImportedIndicator(value, hint, str(obj.get("id", ""))))
    if loose:
        tlps = [markings[m] for o in objects for m in _refs(o) if m in markings]
        alerts.append(ImportedAlert(indicators=loose, tlp=strictest(tlps)))
    return alerts


def _markings(objects: list[Obj]) -> dict[str, str]:
    """marking-definition id -> TLP name, for the official ids and any the bundle defines."""
    found = dict(NAME_BY_MARKING)
    for obj in objects:
        if obj.get("type") != "marking-definition" or not isinstance(obj.get("id"), str):
            continue
        ext = obj.get("extensions", {}).get(TLP2_EXTENSION, {})
        definition = obj.get("definition", {})
        for candidate in (
            ext.get("tlp_2_0") if isinstance(ext, dict) else None,
            definition.get("tlp") if isinstance(definition, dict) else None,
            obj.get("name"),
        ):
            name = tlp_name(candidate) if isinstance(candidate, str) else None
            if name:
                found[obj["id"]] = name
                break
    return found


def _refs(obj: Obj) -> list[str]:
    refs = obj.get("object_marking_refs", [])
    return [r for r in refs if isinstance(r, str)] if isinstance(refs, list) else []


def _indicator(obj: Obj, markings: dict[str, str]) -> ImportedAlert:
    where = str(obj.get("id", "indicator"))
    labels = [str(x) for x in obj.get("labels", []) if isinstance(x, str)]
    ext = obj.get("extensions", {}).get(EXTENSION_ID, {})
    severity = ext.get("severity") if isinstance(ext, dict) else None
    confidence = obj.get("confidence")
    alert = ImportedAlert(
        indicators=_pattern_values(obj, where),
        title=obj.get("name") if isinstance(obj.get("name"), str) else None,
        description=obj.get("description") if isinstance(obj.get("description"), str) else None,
        category=category_from_labels(labels),
        severity=severity if severity in SEVERITIES else None,
        confidence=confidence if isinstance(confidence, int) and 0 <= confidence <= 100 else None,
        tlp=strictest([markings[m] for m in _refs(obj) if m in markings]),
        source_id=where,
    )
    for ref in obj.get("external_references", []):
        if not isinstance(ref, dict):
            continue
        if ref.get("source_name") == "alertmesh" and isinstance(ref.get("external_id"), str):
            alert.source_id = ref["external_id"]
        elif isinstance(ref.get("url"), str):
            alert.references.append(ref["url"])
    return alert


def _pattern_values(obj: Obj, where: str) -> list[ImportedIndicator]:
    pattern = obj.get("pattern")
    if obj.get("pattern_type", "stix") != "stix" or not isinstance(pattern, str):
        kind = obj.get("pattern_type")
        return [ImportedIndicator(str(pattern), None, where, f"pattern type {kind!r} is not STIX")]
    try:
        comparisons = Pattern(pattern).inspect().comparisons
    except ParseException as exc:
        return [ImportedIndicator(pattern, None, where, f"not a valid STIX pattern: {exc}")]
    out = []
    for kind, found in comparisons.items():
        for path, op, literal in found:
            dotted = ".".join(str(p) for p in path)
            hint = TYPE_OF_OBSERVABLE.get(kind) if dotted == "value" else None
            hint = hint or _OTHER_PATHS.get((kind, dotted))
            text = f"{kind}:{dotted} {op} {literal}"
            if hint is None:
                reason = f"{kind}:{dotted} is not an observable alertmesh flags"
                out.append(ImportedIndicator(text, None, where, reason))
            elif op == "=":
                out.append(ImportedIndicator(_unquote(literal), hint, where))
            elif op == "IN":
                out += [ImportedIndicator(v, hint, where) for v in _literals(literal)]
            else:
                reason = f"comparison {op} is not a value match; only = and IN are read"
                out.append(ImportedIndicator(text, None, where, reason))
    return out


def _literals(text: str) -> list[str]:
    """The string literals of a STIX set literal: ('a', 'b\\'c') -> ['a', "b'c"]."""
    values, i = [], 0
    while (start := text.find("'", i)) >= 0:
        j = start + 1
        while j < len(text) and text[j] != "'":
            j += 2 if text[j] == "\\" else 1
        values.append(_unquote(text[start : j + 1]))
        i = j + 1
    return values


def _unquote(literal: str) -> str:
    body = literal[1:-1] if literal[:1] == "'" and literal[-1:] == "'" else literal
    out, i = [], 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            i += 1
        out.append(body[i])
        i += 1
    return "".join(out)
