"""Issue 24: the indexed clustering (faults.restgym_buckets, faults.our_failures) and the pieced,
cached metrics.normalise_body give exactly what the straightforward versions give. Those versions
are kept here, as they were in remote_runner before the change, and serve as the reference."""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from remote_runner.analysis import faults, metrics
from remote_runner.analysis.metrics import Operation, Request

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import paper_benchmark  # noqa: E402  (the benchmark's realistic bodies)

# --- the reference versions (remote_runner before issue 24) ---------------------------------------


def reference_restgym(bodies: list[bytes | str], cleaning: str, threshold: float) -> faults.RestgymFaults:
    firsts: list[frozenset[str]] = []
    counts: list[int] = []
    examples: list[str] = []
    assignment: list[int] = []
    for body in bodies:
        ws = faults.words(body, cleaning)
        best, best_sim = -1, 0.0
        for i, first in enumerate(firsts):
            inter = len(ws & first)
            if not inter:
                continue
            sim = inter / (len(ws) + len(first) - inter)
            if sim >= threshold and sim > best_sim:
                best, best_sim = i, sim
        if best < 0:
            best = len(firsts)
            firsts.append(ws)
            counts.append(0)
            examples.append(faults._text(body)[:300])
        counts[best] += 1
        assignment.append(best)
    return faults.RestgymFaults(
        buckets=tuple(faults.Bucket(i, counts[i], examples[i]) for i in range(len(firsts))),
        assignment=tuple(assignment),
    )


def reference_normalise(body: bytes | str) -> frozenset[str]:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    for pattern, placeholder in metrics._NORMALISERS:
        text = pattern.sub(placeholder, text)
    return frozenset(t.lower() for t in metrics._TOKEN.findall(text))


def reference_our_failures(
    requests: list[Request], operations: list[Operation | None], threshold: float
) -> tuple[tuple[metrics.FailureGroup, ...], tuple[bool, ...]]:
    groups: dict[tuple[str, int], list[tuple[frozenset[str], list[int]]]] = {}
    order: list[tuple[str, int, list[int], str]] = []
    flags: list[bool] = []
    for r, op in zip(requests, operations, strict=True):
        if r.status is None or not 500 <= r.status < 600:
            flags.append(False)
            continue
        key = str(op) if op is not None else f"{r.method.upper()} {r.path.split('?', 1)[0]}"
        tokens = reference_normalise(r.response_body)
        clusters = groups.setdefault((key, r.status), [])
        for first, count in clusters:
            if metrics.jaccard(first, tokens) >= threshold:
                count[0] += 1
                flags.append(False)
                break
        else:
            count = [1]
            clusters.append((tokens, count))
            body = faults._text(r.response_body)[:300] if r.response_body else ""
            order.append((key, r.status, count, body))
            flags.append(True)
    found = tuple(metrics.FailureGroup(key=k, status=s, count=c[0], example=e) for k, s, c, e in order)
    return found, tuple(flags)


# --- strategies -----------------------------------------------------------------------------------

# few words, so bodies overlap a lot and land on both sides of every threshold
WORD = st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h", "x1", "y2", "Error", "null", "500", "'q'"])
TEXT = st.lists(WORD, min_size=0, max_size=12).map(" ".join)


@st.composite
def body(draw: st.DrawFn) -> bytes | str:
    text = draw(TEXT)
    shape = draw(st.sampled_from(["plain", "json", "html", "languagetool", "punctuated", "bytes"]))
    if shape == "json":
        text = json.dumps({"message": text + draw(st.sampled_from(["", " [x y]", " [a]"]))})
    elif shape == "html":
        text = f"<html><body>{text}</body></html>{draw(TEXT)}"
    elif shape == "languagetool":
        text = f"Error: Internal Error: {text} '{draw(TEXT)}'\nsecond {draw(TEXT)}"
    elif shape == "punctuated":
        text = ",".join(text.split()) + '":{}[]'
    return text.encode() if shape == "bytes" else text


THRESHOLD = st.one_of(
    st.sampled_from([0.0, 0.5, 0.7, 0.8, 0.9, 1.0, 1 / 3, 2 / 3]),
    st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
)


MASK_LIMITS = (0, 1, 2, faults._MASK_FROM)
# sets filed by pairs of words: never, up to the default pair prefix, whenever a match needs 2 words
PAIR_LIMITS = (0, faults._PAIRS_UP_TO, 10**6)
KNOBS = [(mask, pairs) for mask in MASK_LIMITS for pairs in PAIR_LIMITS]


@contextmanager
def mask_from(limit: int, pairs: int = faults._PAIRS_UP_TO) -> Iterator[None]:
    saved = faults._MASK_FROM, faults._PAIRS_UP_TO
    faults._MASK_FROM, faults._PAIRS_UP_TO = limit, pairs
    try:
        yield
    finally:
        faults._MASK_FROM, faults._PAIRS_UP_TO = saved


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bodies=st.lists(body(), max_size=60),
    cleaning=st.sampled_from(sorted(faults.CLEANINGS)),
    threshold=THRESHOLD,
)
def test_indexed_restgym_buckets_equal_comparing_every_bucket(
    bodies: list[bytes | str], cleaning: str, threshold: float
) -> None:
    want = reference_restgym(bodies, cleaning, threshold)
    # candidates compared as bit masks from 0, 1, 2 or 8 of them on; small sets filed by pairs or not
    for limit, pairs in KNOBS:
        with mask_from(limit, pairs):
            assert faults.restgym_buckets(bodies, cleaning, threshold) == want, (limit, pairs)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pool=st.lists(body(), min_size=1, max_size=8),
    picks=st.lists(st.integers(min_value=0, max_value=7), max_size=80),
    cleaning=st.sampled_from(sorted(faults.CLEANINGS)),
    threshold=THRESHOLD,
)
def test_restgym_buckets_with_repeated_bodies_equal_comparing_every_bucket(
    pool: list[bytes | str], picks: list[int], cleaning: str, threshold: float
) -> None:
    """Bodies drawn again and again from a few: a word set met before, settled (similarity 1) or
    compared again only with the buckets opened since, gives the reference's bucket."""
    bodies = [pool[i % len(pool)] for i in picks]
    want = reference_restgym(bodies, cleaning, threshold)
    for limit, pairs in KNOBS:
        with mask_from(limit, pairs):
            assert faults.restgym_buckets(bodies, cleaning, threshold) == want, (limit, pairs)


@settings(max_examples=500, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=1400),
        st.text(max_size=700).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.lists(
            st.sampled_from(
                [b"a", b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80", b"\xff", b"\xe2\x82", b"\xf0\x9f"]
            ),
            max_size=700,
        ).map(b"".join),
    ),
    chars=st.sampled_from([0, 1, 2, 3, 299, 300]),
)
def test_example_head_decodes_as_the_whole_body(data: bytes, chars: int) -> None:
    assert faults._head(data, chars) == faults._text(data)[:chars]
    text = data.decode("utf-8", "replace")
    assert faults._head(text, chars) == text[:chars]


def test_indexed_restgym_buckets_on_realistic_bodies() -> None:
    """The benchmark's bodies (stack traces from 50 templates, compact Spring errors, HTML, LanguageTool),
    every case the benchmark times, plus thresholds around them."""
    for kind, cleaning, threshold, make in paper_benchmark.clustering_cases():
        rnd = random.Random(kind + cleaning)
        bodies: list[bytes | str] = [make(rnd, 1_764_000_000.0 + i * 0.37) for i in range(400)]
        for t in (threshold, threshold - 0.05, 0.0, 1.0):
            want = reference_restgym(bodies, cleaning, t)
            for limit, pairs in KNOBS:
                with mask_from(limit, pairs):
                    got = faults.restgym_buckets(bodies, cleaning, t)
                assert got == want, (kind, cleaning, t, limit, pairs)


# --- normalise_body -------------------------------------------------------------------------------

VOLATILE = st.text(
    alphabet=st.sampled_from(
        list("0123456789abcdefABCDEFxX-:.,+eETZ _\n\t\r/\"'{}[]") + ["İ", "K", "٣", "é", "ß"]
    ),
    max_size=300,
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(VOLATILE, st.text(max_size=200)))
@example(text="92024-01-01T10:00 " * 5)
@example(text="x" * 47 + " 2024-01-01 10:00:00 at " + "y" * 60)
@example(text="1111-11-1111-11-11T10:00" + " " * 50 + "0xdeadbeef12345678 ")
def test_normalise_body_equals_the_six_passes(text: str) -> None:
    assert metrics.normalise_body(text) == reference_normalise(text)
    assert metrics.normalise_body(text.encode("utf-8", "surrogatepass")) == reference_normalise(
        text.encode("utf-8", "surrogatepass")
    )


def test_normalise_body_on_realistic_bodies() -> None:
    rnd = random.Random(24)
    traces = paper_benchmark.TraceTemplates()
    for i in range(300):
        b = traces.body(rnd, 1_764_000_000.0 + i * 0.123, f"/api/x/{i}")
        assert metrics.normalise_body(b) == reference_normalise(b)
        e = paper_benchmark.error_4xx(rnd, 400, 1_764_000_000.0 + i, f"/api/y/{i}")
        assert metrics.normalise_body(e) == reference_normalise(e)


# --- our_failures ---------------------------------------------------------------------------------

OPS = [Operation("GET", "/pets/{id}"), Operation("POST", "/pets"), None]
SCAN_LIMITS = (0, 3, faults._SCAN_LIMIT)


@contextmanager
def scan_limit(limit: int) -> Iterator[None]:
    saved = faults._SCAN_LIMIT
    faults._SCAN_LIMIT = limit
    try:
        yield
    finally:
        faults._SCAN_LIMIT = saved


@st.composite
def request(draw: st.DrawFn) -> tuple[Request, Operation | None]:
    status = draw(st.sampled_from([200, 404, 500, 500, 502, 503, None]))
    text = draw(st.one_of(TEXT, VOLATILE))
    r = Request(
        started=0.0,
        method=draw(st.sampled_from(["GET", "post"])),
        path=draw(st.sampled_from(["/pets/1", "/pets?x=1", "/other"])),
        status=status,
        response_body=text.encode("utf-8", "surrogatepass"),
    )
    return r, draw(st.sampled_from(OPS))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pairs=st.lists(request(), max_size=60), threshold=THRESHOLD)
def test_our_failures_equal_the_first_group_scan(
    pairs: list[tuple[Request, Operation | None]], threshold: float
) -> None:
    requests = [r for r, _ in pairs]
    ops = [op for _, op in pairs]
    want = reference_our_failures(requests, ops, threshold)
    # groups scanned one by one, then the index, from the first group on too; by pairs or not
    for limit in SCAN_LIMITS:
        for pairs in PAIR_LIMITS:
            with scan_limit(limit), mask_from(faults._MASK_FROM, pairs):
                assert faults.our_failures(requests, ops, threshold) == want, (limit, pairs)


def test_our_failures_on_realistic_bodies() -> None:
    rnd = random.Random(7)
    traces = paper_benchmark.TraceTemplates()
    requests, ops = [], []
    for i in range(600):
        op = rnd.choice(OPS)
        body = traces.body(rnd, 1_764_000_000.0 + i * 0.29, f"/pets/{i}") if i % 3 else b""
        requests.append(Request(0.0, "GET", f"/pets/{i}", rnd.choice([500, 500, 503]), body))
        ops.append(op)
    for t in (0.0, 0.5, 0.8, 0.9, 0.95, 1.0):
        want = reference_our_failures(requests, ops, t)
        for limit in SCAN_LIMITS:
            for pairs in PAIR_LIMITS:
                with scan_limit(limit), mask_from(faults._MASK_FROM, pairs):
                    assert faults.our_failures(requests, ops, t) == want, (t, limit, pairs)
