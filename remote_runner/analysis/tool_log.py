"""What a tool container tells the runner through its log (``logs/tool.log``): one contract for every
tool image, parsed here and nowhere else.

A tool's entrypoint may print, on lines of their own (anything before the marker is ignored, so a
timestamped prefix such as ``[schemathesis 2026-12-01T20:00:00Z] `` is fine):

- ``TOOL_REQUESTS sent=<n> answered=<m> [runs=<k>]``: the tool's own count of the HTTP requests it
  sent and of the answers it got, so far. The last such line is the tool's final count.
- ``TOOL_RESTART {"run": <k>, "exit": <code>, "reason": "<text>", "tail": ["<line>", ...]}``: the
  tool's process number ``k`` ended before the run's deadline and was started again. ``reason`` is one
  line (for a Python crash the last line of its traceback, e.g. ``KeyError: 'description'``; else
  ``exit <code>``); ``tail`` holds up to the last 10 lines of that process's output. One line per
  restart; the JSON is on one line.

- ``TOOL_VERSION <text>``: the tool's own version string, asked from the tool at start (e.g.
  ``schemathesis, version 4.32.5``); the first such line counts.

All are optional: a tool that prints none has no request count, no restarts and no version of its own
on record (the runner then takes the version from its image: remote_runner/experiment/provenance.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

REQUESTS_MARKER = "TOOL_REQUESTS"
RESTART_MARKER = "TOOL_RESTART"
VERSION_MARKER = "TOOL_VERSION"
TAIL_LINES = 10

_REQUESTS = re.compile(rf"{REQUESTS_MARKER}\s+sent=(\d+)\s+answered=(\d+)(?:\s+runs=(\d+))?")


@dataclass(frozen=True)
class RequestCount:
    sent: int
    answered: int
    runs: int | None = None


@dataclass(frozen=True)
class Restart:
    run: int | None
    exit: int | None
    reason: str
    tail: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run, "exit": self.exit, "reason": self.reason, "tail": list(self.tail)}


@dataclass(frozen=True)
class ToolReport:
    requests: RequestCount | None = None
    restarts: tuple[Restart, ...] = ()
    #: lines that carried a marker but could not be read (reported, never silently dropped)
    unreadable: tuple[str, ...] = field(default_factory=tuple)


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _restart(payload: str) -> Restart:
    data = json.loads(payload)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    reason = data.get("reason")
    tail = data.get("tail", [])
    if not isinstance(reason, str) or not isinstance(tail, list):
        raise ValueError("reason must be a string and tail a list")
    lines = tuple(str(line) for line in tail)[-TAIL_LINES:]
    run, code = _int_or_none(data.get("run")), _int_or_none(data.get("exit"))
    return Restart(run=run, exit=code, reason=reason, tail=lines)


def parse(lines: Iterable[str]) -> ToolReport:
    """The tool's report from the lines of its log."""
    requests: RequestCount | None = None
    restarts: list[Restart] = []
    unreadable: list[str] = []
    for line in lines:
        if REQUESTS_MARKER in line:
            m = _REQUESTS.search(line)
            if m:
                runs = int(m.group(3)) if m.group(3) is not None else None
                requests = RequestCount(sent=int(m.group(1)), answered=int(m.group(2)), runs=runs)
            else:
                unreadable.append(line.rstrip("\n"))
        elif RESTART_MARKER in line:
            payload = line.split(RESTART_MARKER, 1)[1].strip()
            try:
                restarts.append(_restart(payload))
            except (ValueError, TypeError) as exc:
                unreadable.append(f"{line.rstrip()} ({exc})")
    return ToolReport(requests=requests, restarts=tuple(restarts), unreadable=tuple(unreadable))


def parse_text(text: str) -> ToolReport:
    return parse(text.splitlines())


def version(text: str) -> str | None:
    """The text of the first ``TOOL_VERSION`` line, None when the tool printed none."""
    for line in text.splitlines():
        if VERSION_MARKER in line:
            said = line.split(VERSION_MARKER, 1)[1].strip()
            if said:
                return said
    return None
