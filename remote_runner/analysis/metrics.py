"""Metrics of one run, as pure functions over plain data (no files, no clock).

The numbers researchers report for a REST API testing run (../shared/REFERENCE.md):

- requests and their status classes (2xx, 4xx, 5xx, plus 401 and 403, and requests the service
  never answered);
- operations covered: distinct spec operations (method + path template) that got a 2xx, counted
  as RESTgym counts them (SeUniVr/RESTgym, README of its benchmark specs: every method under
  ``paths`` is one operation, HEAD apart from GET; 240 in the 11 benchmark specs). The query string
  is stripped, runs of ``/`` collapse to one, a trailing ``/`` is dropped, and a concrete path is
  matched against the spec's templates (literal segments win over parameters: ``/users/me`` beats
  ``/users/{id}``). A HEAD request maps to the template's HEAD operation when the spec declares
  one, else to its GET (servers answer HEAD with their GET handler);
- operations that produced a 5xx (ARAT-RL's failure count);
- unique failures: 5xx responses of one operation and status grouped by the Jaccard similarity of
  their normalised body tokens (numbers, UUIDs, timestamps and hex ids replaced by placeholders), so
  the same stack trace with a different id counts once; the threshold is a parameter;
- final line/branch/method coverage and the coverage series over time;
- time and number of requests until the first 2xx.

:mod:`remote_runner.analysis.results` reads the files and calls these; tests feed them small hand-made data.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

HTTP_METHODS = ("GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE")
DEFAULT_FAILURE_SIMILARITY = 0.8


@dataclass(frozen=True)
class Request:
    """One recorded request (a row of ``traffic.sqlite`` ``requests``)."""

    started: float
    method: str
    path: str
    status: int | None
    response_body: bytes = b""
    finished: float | None = None
    query: str = ""


@dataclass(frozen=True)
class CoverageSample:
    """One cumulative JaCoCo sample (a row of ``coverage/series.csv``)."""

    epoch: float
    line_covered: int
    line_missed: int
    branch_covered: int
    branch_missed: int
    method_covered: int
    method_missed: int


@dataclass(frozen=True, order=True)
class Operation:
    method: str
    template: str

    def __str__(self) -> str:
        return f"{self.method} {self.template}"


@dataclass(frozen=True)
class _Route:
    operation: Operation
    pattern: re.Pattern[str]
    rank: tuple[int, int]  # sorts more specific templates first


@dataclass(frozen=True)
class OperationMatcher:
    """Spec operations compiled to regular expressions; build with :func:`operation_matcher`."""

    operations: tuple[Operation, ...]
    routes: tuple[_Route, ...] = field(repr=False)
    base_paths: tuple[str, ...] = ("",)

    def match(self, method: str, path: str) -> Operation | None:
        method = method.upper()
        path = path.split("?", 1)[0].split("#", 1)[0] or "/"
        path = _SLASHES.sub("/", path)
        candidates = [path]
        for base in self.base_paths:
            if base and (path == base or path.startswith(base + "/")):
                candidates.append(path[len(base) :] or "/")
        for candidate in candidates:
            if len(candidate) > 1 and candidate.endswith("/"):
                candidate = candidate.rstrip("/") or "/"
            for wanted in (method, "GET") if method == "HEAD" else (method,):
                for route in self.routes:
                    if route.operation.method == wanted and route.pattern.fullmatch(candidate):
                        return route.operation
        return None


_PARAM = re.compile(r"\{[^/{}]+\}")
_SLASHES = re.compile(r"/{2,}")


def template_regex(template: str) -> re.Pattern[str]:
    """``/users/{id}/posts`` -> a regex matching ``/users/42/posts`` (one non-empty segment per parameter;
    a parameter may share a segment with literal text, as in ``/files/{name}.json``)."""
    template = template.rstrip("/") or "/"
    parts: list[str] = []
    pos = 0
    for m in _PARAM.finditer(template):
        parts.append(re.escape(template[pos : m.start()]))
        parts.append(r"[^/]+")
        pos = m.end()
    parts.append(re.escape(template[pos:]))
    return re.compile("".join(parts))


def _spec_base_paths(spec: Mapping[str, Any]) -> tuple[str, ...]:
    bases: list[str] = []
    base_path = spec.get("basePath")
    if isinstance(base_path, str):
        bases.append(base_path)
    servers = spec.get("servers")
    if isinstance(servers, list):
        for server in servers:
            url = server.get("url") if isinstance(server, Mapping) else None
            if isinstance(url, str):
                path = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*", "", url)
                bases.append(path)
    cleaned = []
    for b in bases:
        b = "/" + b.strip("/") if b.strip("/") else ""
        if b not in cleaned:
            cleaned.append(b)
    return tuple(cleaned) or ("",)


def spec_operations(spec: Mapping[str, Any]) -> tuple[Operation, ...]:
    """Every (method, path template) the spec declares (Swagger 2 or OpenAPI 3), sorted; HEAD is its
    own operation, as in RESTgym's count."""
    paths = spec.get("paths")
    ops: set[Operation] = set()
    if isinstance(paths, Mapping):
        for template, item in paths.items():
            if not isinstance(item, Mapping) or not isinstance(template, str):
                continue
            for method in item:
                if isinstance(method, str) and method.upper() in HTTP_METHODS:
                    ops.add(Operation(method.upper(), _SLASHES.sub("/", template)))
    return tuple(sorted(ops))


def operation_matcher(spec: Mapping[str, Any] | None) -> OperationMatcher:
    """Compile the spec's operations; ``None`` (no spec) gives a matcher that matches nothing."""
    if spec is None:
        return OperationMatcher(operations=(), routes=())
    ops = spec_operations(spec)
    routes = []
    for op in ops:
        params = len(_PARAM.findall(op.template))
        literal = len(_PARAM.sub("", op.template))
        routes.append(_Route(op, template_regex(op.template), (params, -literal)))
    routes.sort(key=lambda r: (r.rank, r.operation))
    return OperationMatcher(operations=ops, routes=tuple(routes), base_paths=_spec_base_paths(spec))


# --- status classes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusCounts:
    requests: int
    status_2xx: int
    status_3xx: int
    status_4xx: int
    status_5xx: int
    status_401: int
    status_403: int
    no_response: int


def status_counts(requests: Sequence[Request]) -> StatusCounts:
    def count(pred: Any) -> int:
        return sum(1 for r in requests if r.status is not None and pred(r.status))

    return StatusCounts(
        requests=len(requests),
        status_2xx=count(lambda s: 200 <= s < 300),
        status_3xx=count(lambda s: 300 <= s < 400),
        status_4xx=count(lambda s: 400 <= s < 500),
        status_5xx=count(lambda s: 500 <= s < 600),
        status_401=count(lambda s: s == 401),
        status_403=count(lambda s: s == 403),
        no_response=sum(1 for r in requests if r.status is None),
    )


def _is_2xx(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


def _is_5xx(status: int | None) -> bool:
    return status is not None and 500 <= status < 600


def operations_covered(requests: Iterable[Request], matcher: OperationMatcher) -> tuple[Operation, ...]:
    """Distinct spec operations that answered at least once with a 2xx."""
    found = {matcher.match(r.method, r.path) for r in requests if _is_2xx(r.status)}
    return tuple(sorted(op for op in found if op is not None))


def operations_with_5xx(requests: Iterable[Request], matcher: OperationMatcher) -> tuple[Operation, ...]:
    """Distinct spec operations that produced at least one 5xx."""
    found = {matcher.match(r.method, r.path) for r in requests if _is_5xx(r.status)}
    return tuple(sorted(op for op in found if op is not None))


# --- unique failures ------------------------------------------------------------------------------

_NORMALISERS = (
    (re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"), " UUID "),
    (
        re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"),
        " TIMESTAMP ",
    ),
    (re.compile(r"\d{4}-\d{2}-\d{2}"), " DATE "),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b"), " TIME "),
    (
        re.compile(r"\b0x[0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"),
        " HEX ",
    ),
    (re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"), " NUM "),
)
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[^\sA-Za-z0-9_]")


# A body is cut at spaces into pieces that no replacement or token crosses: a match holds no
# whitespace except TIMESTAMP's "2024-01-01 10:00", whose space follows a digit, so a space that
# follows a digit stays inside its piece. Each pass and the tokens then act on every piece as on the
# whole text (a piece starts after a space, as \b and the lookaheads see a text's start, and ends
# before one, as they see its end), so a body's tokens are the union of its pieces', and the pieces
# bodies share (the frames of one stack trace) are normalised once.


@functools.lru_cache(maxsize=1 << 16)
def _piece_tokens(piece: str) -> frozenset[str]:
    for pattern, placeholder in _NORMALISERS:
        piece = pattern.sub(placeholder, piece)
    if piece.isascii():  # lowering ASCII changes no character's class: one call for all tokens
        return frozenset(_TOKEN.findall(piece.lower()))
    return frozenset(t.lower() for t in _TOKEN.findall(piece))


def _pieces(text: str) -> list[str]:
    pieces: list[str] = []
    held: str | None = None
    for part in text.split(" "):
        if held is None:
            held = part
        elif held and held[-1].isdecimal():  # the space may be TIMESTAMP's: keep it inside
            held = f"{held} {part}"
        else:
            pieces.append(held)
            held = part
    if held is not None:
        pieces.append(held)
    return pieces


def normalise_body(body: bytes | str) -> frozenset[str]:
    """The set of tokens of a response body with its volatile parts (UUIDs, timestamps, dates, times,
    hex ids, numbers) replaced by placeholders, so two bodies differing only there are equal.

    The same set as replacing each pattern over the whole text, then tokenising it (the six passes
    in order; tests/results/test_linear_clustering.py keeps that version and checks both agree),
    computed per piece (``_pieces``) with the pieces' tokens cached."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    pieces = _pieces(text)
    if len(pieces) == 1:
        return _piece_tokens(pieces[0])
    found: set[str] = set()
    for piece in pieces:
        found |= _piece_tokens(piece)
    return frozenset(found)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """Size of the intersection over size of the union; two empty sets are identical (1.0)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass(frozen=True)
class FailureGroup:
    key: str  # operation ("POST /users") or, when the spec does not know the path, "METHOD path"
    status: int
    count: int
    example: str  # first body of the group, truncated


def unique_failures(
    requests: Iterable[Request],
    matcher: OperationMatcher,
    threshold: float = DEFAULT_FAILURE_SIMILARITY,
) -> tuple[FailureGroup, ...]:
    """5xx responses grouped per (operation, status) by body similarity: a response joins the first
    group whose first body has Jaccard similarity >= ``threshold`` with its own, else starts a group.
    Deterministic (arrival order)."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"similarity threshold must be within [0, 1], got {threshold}")
    groups: dict[tuple[str, int], list[tuple[frozenset[str], list[Any]]]] = {}
    order: list[tuple[str, int, int]] = []
    for r in requests:
        if not _is_5xx(r.status):
            continue
        assert r.status is not None
        op = matcher.match(r.method, r.path)
        key = str(op) if op is not None else f"{r.method.upper()} {r.path.split('?', 1)[0]}"
        tokens = normalise_body(r.response_body)
        clusters = groups.setdefault((key, r.status), [])
        for cluster in clusters:
            if jaccard(cluster[0], tokens) >= threshold:
                cluster[1][0] += 1
                break
        else:
            body = r.response_body.decode("utf-8", "replace") if r.response_body else ""
            clusters.append((tokens, [1, body[:300]]))
            order.append((key, r.status, len(clusters) - 1))
    return tuple(
        FailureGroup(key=k, status=s, count=groups[(k, s)][i][1][0], example=groups[(k, s)][i][1][1])
        for k, s, i in order
    )


# --- coverage -------------------------------------------------------------------------------------


def _ratio(covered: int, missed: int) -> float | None:
    total = covered + missed
    return None if total == 0 else covered / total


@dataclass(frozen=True)
class CoveragePoint:
    seconds: float  # since the run's start
    line: float | None  # fraction 0..1; None when the sample has no lines at all
    branch: float | None
    method: float | None


def coverage_series(
    samples: Sequence[CoverageSample], start: float | None = None
) -> tuple[CoveragePoint, ...]:
    """Samples as fractions over time, in time order; ``start`` defaults to the first sample."""
    ordered = sorted(samples, key=lambda s: s.epoch)
    if not ordered:
        return ()
    t0 = ordered[0].epoch if start is None else start
    return tuple(
        CoveragePoint(
            seconds=s.epoch - t0,
            line=_ratio(s.line_covered, s.line_missed),
            branch=_ratio(s.branch_covered, s.branch_missed),
            method=_ratio(s.method_covered, s.method_missed),
        )
        for s in ordered
    )


@dataclass(frozen=True)
class FinalCoverage:
    line: float | None
    branch: float | None
    method: float | None
    line_covered: int
    line_total: int
    branch_covered: int
    branch_total: int
    method_covered: int
    method_total: int


def final_coverage(samples: Sequence[CoverageSample]) -> FinalCoverage | None:
    """Coverage at the last sample (samples are cumulative); ``None`` without samples."""
    if not samples:
        return None
    s = max(samples, key=lambda x: x.epoch)
    return FinalCoverage(
        line=_ratio(s.line_covered, s.line_missed),
        branch=_ratio(s.branch_covered, s.branch_missed),
        method=_ratio(s.method_covered, s.method_missed),
        line_covered=s.line_covered,
        line_total=s.line_covered + s.line_missed,
        branch_covered=s.branch_covered,
        branch_total=s.branch_covered + s.branch_missed,
        method_covered=s.method_covered,
        method_total=s.method_covered + s.method_missed,
    )


# --- first success --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FirstSuccess:
    seconds: float  # from ``start`` (or the first request) to the first 2xx request's arrival
    requests: int  # 1-based position of the first 2xx request


def first_2xx(requests: Sequence[Request], start: float | None = None) -> FirstSuccess | None:
    """Time and number of requests until the first 2xx, in arrival order; ``None`` if there was none."""
    ordered = sorted(requests, key=lambda r: r.started)
    for i, r in enumerate(ordered, start=1):
        if _is_2xx(r.status):
            t0 = ordered[0].started if start is None else start
            return FirstSuccess(seconds=max(0.0, r.started - t0), requests=i)
    return None


def request_span(requests: Sequence[Request]) -> float:
    """Seconds from the first request's arrival to the last request's end (0 with fewer than one)."""
    if not requests:
        return 0.0
    first = min(r.started for r in requests)
    last = max(r.finished if r.finished is not None else r.started for r in requests)
    return max(0.0, last - first)
