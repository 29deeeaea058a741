"""Metric functions on small inputs whose answers were worked out by hand."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remote_runner.analysis import metrics
from remote_runner.analysis.metrics import CoverageSample, Operation, Request, operation_matcher

SPEC = {
    "swagger": "2.0",
    "basePath": "/api",
    "paths": {
        "/users": {"get": {}, "post": {}, "parameters": []},
        "/users/{id}": {"get": {}, "delete": {}, "head": {}},
        "/users/me": {"get": {}},
        "/users/{id}/posts/{postId}": {"get": {}},
        "/files/{name}.json": {"get": {}},
    },
}


def req(method: str, path: str, status: int | None, t: float = 0.0, body: bytes = b"") -> Request:
    return Request(
        started=t,
        finished=None if status is None else t + 0.1,
        method=method,
        path=path,
        status=status,
        response_body=body,
    )


def test_spec_operations_lists_method_and_template_and_ignores_non_methods() -> None:
    ops = metrics.spec_operations(SPEC)
    # HEAD /users/{id} is its own operation (RESTgym's count); "parameters" is not a method
    assert [str(o) for o in ops] == [
        "DELETE /users/{id}",
        "GET /files/{name}.json",
        "GET /users",
        "GET /users/me",
        "GET /users/{id}",
        "GET /users/{id}/posts/{postId}",
        "HEAD /users/{id}",
        "POST /users",
    ]


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/api/users/42", "GET /users/{id}"),
        ("GET", "/users/42", "GET /users/{id}"),  # tools that ignore basePath still match
        ("GET", "/api/users/me", "GET /users/me"),  # literal segment beats the parameter
        ("DELETE", "/api/users/me", "DELETE /users/{id}"),  # no DELETE /users/me: the template
        ("HEAD", "/api/users/7", "HEAD /users/{id}"),  # the spec declares this HEAD
        ("HEAD", "/api/users", "GET /users"),  # no HEAD declared here: the GET it runs
        ("GET", "/api//users///42", "GET /users/{id}"),  # runs of / collapse
        ("GET", "/api/users?limit=3", "GET /users"),  # query stripped
        ("GET", "/api/users/", "GET /users"),  # trailing slash
        ("GET", "/api/users/5/posts/9", "GET /users/{id}/posts/{postId}"),
        ("GET", "/api/files/report.json", "GET /files/{name}.json"),
        ("get", "/api/users", "GET /users"),
        ("GET", "/api/users/5/posts", None),  # a parameter is one whole segment
        ("GET", "/api/users//posts/9", None),  # ... and not an empty one
        ("PUT", "/api/users/5", None),  # method not declared
        ("GET", "/other/users", None),
    ],
)
def test_matcher(method: str, path: str, expected: str | None) -> None:
    op = operation_matcher(SPEC).match(method, path)
    assert (str(op) if op else None) == expected


def test_openapi3_server_path_is_a_base_path() -> None:
    spec = {
        "openapi": "3.0.0",
        "servers": [{"url": "http://localhost:30110/rest/v1"}],
        "paths": {"/all": {"get": {}}},
    }
    m = operation_matcher(spec)
    assert m.match("GET", "/rest/v1/all") == Operation("GET", "/all")
    assert m.match("GET", "/all") == Operation("GET", "/all")
    assert m.match("GET", "/rest/v2/all") is None


def test_no_spec_matches_nothing() -> None:
    m = operation_matcher(None)
    assert m.operations == ()
    assert m.match("GET", "/") is None


def test_empty_run() -> None:
    m = operation_matcher(SPEC)
    assert metrics.status_counts([]) == metrics.StatusCounts(0, 0, 0, 0, 0, 0, 0, 0)
    assert metrics.operations_covered([], m) == ()
    assert metrics.operations_with_5xx([], m) == ()
    assert metrics.unique_failures([], m) == ()
    assert metrics.first_2xx([]) is None
    assert metrics.request_span([]) == 0.0
    assert metrics.final_coverage([]) is None
    assert metrics.coverage_series([]) == ()


def test_status_classes_and_operations_covered() -> None:
    m = operation_matcher(SPEC)
    run = [
        req("GET", "/api/users", 200, 10.0),
        req("HEAD", "/api/users/1", 204, 11.0),
        req("GET", "/api/users/2?x=1", 200, 12.0),
        req("POST", "/api/users", 400, 13.0),
        req("POST", "/api/users", 401, 14.0),
        req("DELETE", "/api/users/3", 403, 15.0),
        req("GET", "/api/nope", 200, 16.0),  # 2xx outside the spec: no operation
        req("GET", "/api/users/me", 302, 17.0),
        req("GET", "/api/users/me", None, 18.0),  # no response at all
        req("DELETE", "/api/users/4", 500, 19.0, b"boom"),
    ]
    c = metrics.status_counts(run)
    assert (c.requests, c.status_2xx, c.status_3xx, c.status_4xx, c.status_5xx) == (10, 4, 1, 3, 1)
    assert (c.status_401, c.status_403, c.no_response) == (1, 1, 1)
    assert [str(o) for o in metrics.operations_covered(run, m)] == [
        "GET /users",
        "GET /users/{id}",
        "HEAD /users/{id}",
    ]
    assert [str(o) for o in metrics.operations_with_5xx(run, m)] == ["DELETE /users/{id}"]
    first = metrics.first_2xx(run, start=5.0)
    assert first == metrics.FirstSuccess(seconds=5.0, requests=1)
    assert metrics.request_span(run) == pytest.approx(19.1 - 10.0)


def test_first_2xx_counts_requests_before_it() -> None:
    run = [req("GET", "/a", 404, 1.0), req("GET", "/a", 500, 2.0), req("GET", "/a", 201, 4.5)]
    assert metrics.first_2xx(run) == metrics.FirstSuccess(seconds=3.5, requests=3)
    assert metrics.first_2xx(run, start=0.5) == metrics.FirstSuccess(seconds=4.0, requests=3)


def test_only_5xx_run() -> None:
    m = operation_matcher(SPEC)
    trace_a = (
        b'{"timestamp":"2026-11-29T23:01:02.345+00:00",'
        b'"error":"NullPointerException at UserService.java:%d","id":"%s"}'
    )
    run = [
        req("GET", "/api/users/1", 500, 1.0, trace_a % (41, b"3f2c9a1e-0b7d-4c1e-9a55-0f6e2d8b7c11")),
        req("GET", "/api/users/2", 500, 2.0, trace_a % (41, b"aa2c9a1e-0b7d-4c1e-9a55-0f6e2d8b7c22")),
        req("GET", "/api/users/3", 500, 3.0, b"<html>Gateway exploded: upstream refused connection</html>"),
        req("POST", "/api/users", 500, 4.0, trace_a % (41, b"bb2c9a1e-0b7d-4c1e-9a55-0f6e2d8b7c33")),
        req("GET", "/api/users/4", 503, 5.0, b"busy"),
        req("GET", "/api/elsewhere/9", 500, 6.0, b"x"),
    ]
    c = metrics.status_counts(run)
    assert (c.requests, c.status_2xx, c.status_4xx, c.status_5xx) == (6, 0, 0, 6)
    assert metrics.operations_covered(run, m) == ()
    assert [str(o) for o in metrics.operations_with_5xx(run, m)] == ["GET /users/{id}", "POST /users"]
    groups = metrics.unique_failures(run, m, threshold=0.8)
    # GET /users/{id} 500: the two traces differing in timestamp-free ids are one failure, the HTML
    # page another; POST /users 500 (same trace, other operation) its own; 503 its own status; the
    # unknown path is keyed by its raw path.
    assert [(g.key, g.status, g.count) for g in groups] == [
        ("GET /users/{id}", 500, 2),
        ("GET /users/{id}", 500, 1),
        ("POST /users", 500, 1),
        ("GET /users/{id}", 503, 1),
        ("GET /api/elsewhere/9", 500, 1),
    ]
    assert metrics.first_2xx(run) is None


def test_unique_failure_threshold_is_configurable() -> None:
    m = operation_matcher(SPEC)
    # token sets {a b c d} and {a b c e}: Jaccard 3/5 = 0.6
    run = [req("GET", "/api/users", 500, 1.0, b"a b c d"), req("GET", "/api/users", 500, 2.0, b"a b c e")]
    assert len(metrics.unique_failures(run, m, threshold=0.6)) == 1
    assert len(metrics.unique_failures(run, m, threshold=0.61)) == 2
    with pytest.raises(ValueError):
        metrics.unique_failures(run, m, threshold=1.5)


def test_normalise_body_replaces_volatile_parts() -> None:
    a = metrics.normalise_body(
        b'{"at": "2026-11-29T23:00:01Z", "id": 42, "ref": "3f2c9a1e-0b7d-4c1e-9a55-0f6e2d8b7c11"}'
    )
    b = metrics.normalise_body(
        '{"at": "2025-01-02T03:04:05.999+01:00", "id": 7, "ref": "00000000-1111-2222-3333-444444444444"}'
    )
    assert a == b
    assert "uuid" in a and "timestamp" in a and "num" in a
    assert metrics.normalise_body(b"object at 0x7f3a2b1c") == metrics.normalise_body(b"object at 0xdeadbeef")
    assert metrics.normalise_body(b"\xff\xfe binary") == metrics.normalise_body(b"\xff\xfe binary")
    assert metrics.jaccard(frozenset(), frozenset()) == 1.0
    assert metrics.jaccard(frozenset("ab"), frozenset("bc")) == pytest.approx(1 / 3)


def test_coverage_final_and_series() -> None:
    samples = [
        CoverageSample(105.0, 30, 70, 10, 30, 5, 15),
        CoverageSample(100.0, 10, 90, 0, 40, 2, 18),
        CoverageSample(110.0, 50, 50, 20, 20, 10, 10),
    ]
    final = metrics.final_coverage(samples)
    assert final is not None
    assert (final.line, final.branch, final.method) == (0.5, 0.5, 0.5)
    assert (final.line_covered, final.line_total, final.branch_total) == (50, 100, 40)
    series = metrics.coverage_series(samples, start=95.0)
    assert [(p.seconds, p.line, p.branch) for p in series] == [
        (5.0, 0.1, 0.0),
        (10.0, 0.3, 0.25),
        (15.0, 0.5, 0.5),
    ]
    # a service with no branches at all: branch coverage is undefined, not 0
    nob = metrics.final_coverage([CoverageSample(1.0, 1, 1, 0, 0, 1, 0)])
    assert nob is not None and nob.branch is None and nob.method == 1.0


_SEGMENT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.~%", min_size=1, max_size=8).filter(
    lambda s: s not in (".", "..")
)


@settings(max_examples=200)
@given(
    st.lists(st.tuples(st.booleans(), _SEGMENT), min_size=1, max_size=5),
    st.lists(_SEGMENT, min_size=5, max_size=5),
    st.sampled_from(["GET", "HEAD", "POST"]),
    st.text(alphabet="abc=&1", max_size=8),
)
def test_any_concrete_path_of_a_template_matches_it(
    parts: list[tuple[bool, str]], values: list[str], method: str, query: str
) -> None:
    template = "".join(f"/{{p{i}}}" if is_param else f"/{lit}" for i, (is_param, lit) in enumerate(parts))
    concrete = "".join(f"/{values[i]}" if is_param else f"/{lit}" for i, (is_param, lit) in enumerate(parts))
    spec = {"paths": {template: {"get": {}, "post": {}}}}
    path = concrete + (f"?{query}" if query else "")
    expected = Operation("GET" if method == "HEAD" else method, template)
    assert operation_matcher(spec).match(method, path) == expected
    # one more segment is another resource, not this operation
    assert operation_matcher(spec).match(method, concrete + "/extra") is None
