"""The fault counts of the other papers, beside ours and RESTgym's (:mod:`remote_runner.analysis.faults`), so
a batch's figures can sit next to the numbers each paper published, counted the way that paper counts.

- :func:`operations_with_500`: ARAT-RL's recommended count (its README: count the operations that
  return 500; its stack-trace count is called buggy there): distinct spec operations that answered
  status 500 at least once (exactly 500, not any 5xx: our ``operations.with_5xx`` is the 5xx form).
- :func:`llamaresttest_faults`: LlamaRestTest's count (``collect.py`` of codingsoo/LlamaRestTest):
  responses with status 500 or 502; the message is the first line of the body, normalised by
  collect.py's keyword rules (:func:`llamaresttest_message`); messages are unique per path prefix,
  a prefix being a spec path up to its first ``{`` (a trailing ``/`` dropped); a response counts for
  every prefix its path (query stripped) contains, and the count is the sum over prefixes of their
  distinct messages. The rules are collect.py's, quirks included (a cut at a marker that is absent
  drops the last character, as ``msg[:msg.find(...)]`` does there), so the figure compares with the
  paper's; it is not a better fault count, only theirs.

Pure: the inputs are the run's recorded requests, each one's matched operation and the spec.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from remote_runner.analysis.metrics import Operation, Request

#: collect.py collapses a message containing one of these to the phrase itself, first match wins
_PHRASES = (
    "expected a valid value (",
    "was expecting (JSON",
    "maybe a (non-standard)",
    "Expected space separating root-level values",
    "Unexpected close marker",
    "Unexpected end-of-input",
    "numeric value: expected digit (0-9)",
    "numeric value: Leading zeroes not",
)


def _cut_before(msg: str, marker: str) -> str:
    return msg[: msg.find(marker)]  # -1 when absent: drops the last character, as collect.py does


def _from(msg: str, marker: str) -> str:
    return msg[msg.find(marker) :]


def llamaresttest_message(body: bytes | str) -> str:
    """The message collect.py keeps of a 500/502 body: its first line, stripped, then its rules."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    lines = text.splitlines()
    msg = lines[0].strip() if lines else ""
    for phrase in _PHRASES:
        if phrase in msg:
            return phrase
    if "not found:" in msg:
        msg = _cut_before(msg, "not found:")
    if "meta" in msg:
        msg = _cut_before(msg, "meta")
    if "timestamp" in msg:
        msg = _from(msg, "status")
    if "For input string" in msg:
        msg = _cut_before(msg, "For input string")
    if "path" in msg:
        msg = _cut_before(msg, "path")
    if "500," in msg:
        msg = _from(msg, "500,")
    for start, end in (
        ("only regular", "at"),
        ("numeric value:", "at"),
        ("expected a valid value", ")"),
        ("was expecting", ")"),
    ):
        if start in msg:
            msg = _cut_before(_from(msg, start), end)
    if "Expected " in msg:
        msg = _cut_before(_from(msg, "Expected"), "at")
    return msg


def path_prefixes(spec: Mapping[str, Any] | None) -> tuple[str, ...]:
    """collect.py's keys: each spec path without a trailing ``/``, cut at its first ``{``."""
    out: list[str] = []
    for path in (spec or {}).get("paths") or {}:
        endpoint = str(path)
        if len(endpoint) > 1 and endpoint.endswith("/"):
            endpoint = endpoint[:-1]
        if "{" in endpoint:
            endpoint = endpoint[: endpoint.find("{")]
        if endpoint not in out:
            out.append(endpoint)
    return tuple(out)


@dataclass(frozen=True)
class LlamaRestTestFaults:
    unique: int
    #: prefix -> its distinct messages, in order of first appearance (prefixes without any left out)
    by_prefix: dict[str, list[str]]


def llamaresttest_faults(requests: Sequence[Request], spec: Mapping[str, Any] | None) -> LlamaRestTestFaults:
    prefixes = path_prefixes(spec)
    messages: dict[str, list[str]] = {p: [] for p in prefixes}
    for r in requests:
        if r.status not in (500, 502):
            continue
        msg = llamaresttest_message(r.response_body)
        for prefix in prefixes:
            # collect.py credits "<prefix>/" instead of "<prefix>" when both are keys and it matches
            target = prefix
            if not prefix.endswith("/") and prefix + "/" in messages and prefix + "/" in r.path:
                target = prefix + "/"
            elif prefix not in r.path:
                continue
            if msg not in messages[target]:
                messages[target].append(msg)
    kept = {p: m for p, m in messages.items() if m}
    return LlamaRestTestFaults(sum(len(m) for m in kept.values()), kept)


def operations_with_500(requests: Sequence[Request], operations: Sequence[Operation | None]) -> list[str]:
    """ARAT-RL's count: the distinct matched operations that answered exactly 500, sorted."""
    return sorted(
        {str(op) for r, op in zip(requests, operations, strict=True) if r.status == 500 and op is not None}
    )
