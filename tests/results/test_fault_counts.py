"""The other papers' fault counts (ARAT-RL's, LlamaRestTest's) on hand-made traffic."""

from __future__ import annotations

from remote_runner.analysis import fault_counts
from remote_runner.analysis.metrics import Operation, Request

SPEC = {"paths": {"/users/{id}": {}, "/users/": {}, "/orders": {}, "/orders/{id}/items": {}}}


def test_llamaresttest_messages_follow_collect_py_rules() -> None:
    assert fault_counts.llamaresttest_message(b"Unexpected end-of-input: expected close marker\nat x") == (
        "Unexpected end-of-input"
    )
    # 'not found:' cuts before it; 'path' cuts before it
    assert fault_counts.llamaresttest_message(b"User not found: 42") == "User "
    body = b'{"timestamp":"2026-12-01","status":500,"error":"Internal","path":"/users/7"}'
    # timestamp: from 'status'; then cut before 'path'; then from '500,'
    assert fault_counts.llamaresttest_message(body) == '500,"error":"Internal","'
    assert fault_counts.llamaresttest_message(b"") == ""
    assert fault_counts.path_prefixes(SPEC) == ("/users/", "/users", "/orders", "/orders/")


def test_llamaresttest_counts_unique_messages_per_path_prefix() -> None:
    reqs = [
        Request(1.0, "GET", "/users/1", 500, b"NullPointerException"),
        Request(2.0, "GET", "/users/2", 500, b"NullPointerException"),  # same message, same prefix
        Request(3.0, "GET", "/users/3", 502, b"Bad gateway"),
        Request(4.0, "POST", "/orders", 500, b"NullPointerException"),  # same message, other prefix
        Request(5.0, "POST", "/orders", 503, b"unavailable"),  # 503 is not theirs
    ]
    got = fault_counts.llamaresttest_faults(reqs, SPEC)
    # '/users/' matches the /users/<n> paths and is credited as itself; "/users" would be credited
    # to "/users/" too (collect.py's rule), so it holds nothing of its own
    assert got.by_prefix == {
        "/users/": ["NullPointerException", "Bad gateway"],
        "/orders": ["NullPointerException"],
    }
    assert got.unique == 3


def test_arat_rl_counts_operations_that_returned_500() -> None:
    a, b = Operation("GET", "/a"), Operation("POST", "/b")
    reqs = [
        Request(1.0, "GET", "/a", 500),
        Request(2.0, "GET", "/a", 500),
        Request(3.0, "POST", "/b", 503),  # a 5xx but not a 500: ours counts it, ARAT-RL's does not
        Request(4.0, "GET", "/x", 500),  # no operation of the spec
    ]
    assert fault_counts.operations_with_500(reqs, [a, a, b, None]) == [str(a)]
