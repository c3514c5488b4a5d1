#!/usr/bin/env python3
"""Rewrite node/data/warninglist-domains.txt from a MISP warninglist (list.json).

Usage: python scripts/refresh_warninglist.py [LIST_JSON]

LIST_JSON is a file or an https URL; the default is the MISP warninglists project's
"moz-top500" list (CC0 1.0), the 500 most linked-to domains on the web:
https://raw.githubusercontent.com/MISP/misp-warninglists/main/lists/moz-top500/list.json
Any list of the same shape works (e.g. lists/cloudflare-top1k or lists/tranco10k).
Entries that are not plain domains (paths, IPs, wildcards) are skipped.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

DEFAULT = "https://raw.githubusercontent.com/MISP/misp-warninglists/main/lists/moz-top500/list.json"
OUT = Path(__file__).resolve().parent.parent / "node" / "data" / "warninglist-domains.txt"


def main(argv: list[str]) -> int:
    source = argv[0] if argv else DEFAULT
    if source.startswith("https://"):
        with urllib.request.urlopen(source, timeout=30) as response:
            doc = json.load(response)
    else:
        doc = json.loads(Path(source).read_text())
    domains = sorted(
        {
            d.strip().lower().rstrip(".")
            for d in doc["list"]
            if "/" not in d and "*" not in d and not d.replace(".", "").isdigit() and "." in d
        }
    )
    header = [
        f"# {doc.get('name', 'warninglist')} "
        f"(MISP warninglists, version {doc.get('version', '?')})",
        "# Source: https://github.com/MISP/misp-warninglists (CC0 1.0 Universal)",
        f"# {source}",
        "# Regenerate: python scripts/refresh_warninglist.py [LIST_JSON]  (docs/lifecycle.md)",
    ]
    OUT.write_text("\n".join(header + domains) + "\n")
    print(f"wrote {len(domains)} domains to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
