"""Counts the HTTP requests one Schemathesis run sent, from its own reports.

Usage: count_requests.py CASSETTE NDJSON. Prints one integer: the interactions of the VCR cassette
(every test case's request) plus the probe requests Schemathesis sends before testing (listed in the
NDJSON event stream, not in the cassette). Missing or partial files count what they hold.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

INTERACTION = re.compile(rb"^- id: ", re.MULTILINE)


def cassette_requests(path: Path) -> int:
    if not path.is_file():
        return 0
    return len(INTERACTION.findall(path.read_bytes()))


def probe_requests(path: Path) -> int:
    if not path.is_file():
        return 0
    count = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if '"probing"' not in line or not line.startswith('{"PhaseFinished"'):
            continue
        try:
            event = json.loads(line)["PhaseFinished"]
        except (ValueError, KeyError):
            continue
        probes = (event.get("payload") or {}).get("probes") or []
        count += sum(1 for probe in probes if probe.get("request"))
    return count


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: count_requests.py CASSETTE NDJSON", file=sys.stderr)
        return 2
    print(cassette_requests(Path(argv[1])) + probe_requests(Path(argv[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
