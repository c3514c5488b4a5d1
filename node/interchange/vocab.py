"""Words other tools use for what alertmesh calls category and severity.

Readers map a label or tag to a category only where the meaning is plain; anything
else is left to the operator's --category flag (docs/interchange.md lists the table).
"""

from __future__ import annotations

from collections.abc import Iterable

from node.core.alerts import CATEGORY_NAMES

# A label (lower case, '_' and ' ' read as '-') -> category name.
CATEGORY_SYNONYMS: dict[str, str] = {
    **{name: name for name in CATEGORY_NAMES},
    "phish": "phishing",
    "phishing-site": "phishing",
    "fraud": "scam",
    "scam-site": "scam",
    "investment-scam": "investment-fraud",
    "ponzi": "investment-fraud",
    "rugpull": "rug-pull",
    "hack": "exploit",
    "hacked": "exploit",
    "theft": "stolen-funds",
    "stolen": "stolen-funds",
    "sanctioned": "sanctions",
    "sanction": "sanctions",
    "ofac": "sanctions",
    "impersonator": "impersonation",
    "fake-support": "impersonation",
}


def category_from_labels(labels: Iterable[str]) -> str | None:
    """The first label that plainly names a category; None when none does.

    A MISP tag such as `rsit:fraud="phishing"` or `alertmesh:category="scam"` is read by
    its value, then by its predicate.
    """
    for label in labels:
        for word in _words(label):
            found = CATEGORY_SYNONYMS.get(word)
            if found:
                return found
    return None


def _words(label: str) -> list[str]:
    text = label.strip().lower()
    _, _, rest = text.partition(":")
    candidates = [text]
    if rest:
        predicate, _, value = rest.partition("=")
        candidates = [value.strip('"'), predicate, rest] if value else [predicate, rest]
    return [c.replace("_", "-").replace(" ", "-") for c in candidates if c]
