"""The pure parts of the fault replay: trace keys, what is replayed and before what, verdicts, slots,
grouping (remote_runner/analysis/fault_keys.py, remote_runner/batch/replay.py). The replay itself runs on the real
engine in tests/images/test_replay.py."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from remote_runner.analysis import fault_keys, faults
from remote_runner.batch import replay
from remote_runner.placement import admission

OWN = frozenset({"shop.api.OrderController", "shop.api.Totals", "shop.api.Totals$Rule", "shop.api.Carts"})

SPRING_LOG = """\
2026-01-01T10:00:00.100000000Z 2026-01-01 10:00:00.100 ERROR 1 --- [nio-8080-exec-3] o.a.c.c.C.[.[.[/].[dispatcherServlet]    : Servlet.service() for servlet [dispatcherServlet] threw exception
2026-01-01T10:00:00.100100000Z org.springframework.web.util.NestedServletException: Request processing failed; nested exception is java.lang.ArithmeticException: / by zero
2026-01-01T10:00:00.100200000Z 	at org.springframework.web.servlet.FrameworkServlet.processRequest(FrameworkServlet.java:1014)
2026-01-01T10:00:00.100300000Z 	at javax.servlet.http.HttpServlet.service(HttpServlet.java:655)
2026-01-01T10:00:00.100400000Z 	at java.base/java.lang.Thread.run(Thread.java:833)
2026-01-01T10:00:00.100500000Z Caused by: java.lang.ArithmeticException: / by zero for order 81723
2026-01-01T10:00:00.100600000Z 	at shop.api.Totals$Rule.lambda$apply$0(Totals.java:44)
2026-01-01T10:00:00.100700000Z 	at shop.api.Totals$$EnhancerBySpringCGLIB$$5f2e1a.share(<generated>)
2026-01-01T10:00:00.100800000Z 	at jdk.internal.reflect.GeneratedMethodAccessor87.invoke(Unknown Source)
2026-01-01T10:00:00.100900000Z 	at shop.api.Totals.share(Totals.java:31)
2026-01-01T10:00:00.101000000Z 	... 2 more
"""


def test_root_cause_and_own_frames_with_the_elided_ones_restored() -> None:
    chains = fault_keys.parse_chains(SPRING_LOG)
    assert len(chains) == 1
    outer, root = chains[0]
    assert outer.type == "org.springframework.web.util.NestedServletException"
    assert root.type == "java.lang.ArithmeticException"
    # "... 2 more" restores the last two frames of the exception it caused
    assert [f.method for f in root.frames][-2:] == ["service", "run"]
    key = fault_keys.key_of(chains[0], OWN)
    # generated frames skipped, lambda number dropped, no message (it holds the order's id)
    assert key.key == (
        "java.lang.ArithmeticException | shop.api.Totals$Rule.lambda$apply(Totals.java:44)"
        " | shop.api.Totals.share(Totals.java:31)"
    )
    assert key.own_frames is True


def test_without_own_classes_the_top_frames_are_used_and_flagged() -> None:
    key = fault_keys.key_from_log(SPRING_LOG, frozenset())
    assert key is not None and key.own_frames is False
    # not the API's own: no line numbers in the key
    assert key.frames == (
        "shop.api.Totals$Rule.lambda$apply",
        "shop.api.Totals.share",
        "javax.servlet.http.HttpServlet.service",
    )


def test_two_endpoints_through_the_same_frames_share_a_key_and_other_callers_do_not() -> None:
    def trace(caller: str) -> str:
        return (
            "java.lang.IllegalStateException: empty cart 9\n"
            "\tat shop.api.Carts.total(Carts.java:20)\n"
            "\tat shop.api.Totals.share(Totals.java:31)\n"
            "\tat shop.api.Totals.sum(Totals.java:12)\n"
            f"\tat shop.api.OrderController.{caller}(OrderController.java:40)\n"
        )

    a = fault_keys.key_from_log(trace("invoice"), OWN)
    b = fault_keys.key_from_log(trace("receipt"), OWN)
    assert a is not None and b is not None and a.key == b.key
    deeper = fault_keys.key_from_log(trace("receipt"), OWN, frames=4)
    assert deeper is not None and deeper.key != a.key


def test_no_trace_no_key() -> None:
    assert fault_keys.key_from_log("stock: database still warming up, answering 503\n", OWN) is None
    assert fault_keys.parse_chains("") == []


def test_class_listing_from_folders_and_boot_jars() -> None:
    listing = "./shop/api/Totals.class\n./shop/api/Totals$Rule.class\nBOOT-INF/classes/shop/api/Carts.class\n"
    listing += "BOOT-INF/lib/x.jar\nmodule-info.class\n"
    assert fault_keys.class_names(listing) == {"shop.api.Totals", "shop.api.Totals$Rule", "shop.api.Carts"}


def rec(
    number: int, method: str, path: str, status: int, cookie: str = "", body: bytes = b""
) -> replay.Recorded:
    headers = (("Cookie", cookie),) if cookie else ()
    return replay.Recorded(number, float(number), method, path, "", headers, body, status)


def test_distinct_5xx_by_method_target_and_body() -> None:
    reqs = [
        rec(1, "GET", "/a", 500),
        rec(2, "GET", "/a", 500),
        rec(3, "POST", "/a", 500, body=b"x"),
        rec(4, "POST", "/a", 500, body=b"y"),
        rec(5, "GET", "/b", 404),
    ]
    assert [(r.number, n) for r, n in replay.distinct_5xx(reqs)] == [(1, 2), (3, 1), (4, 1)]


def test_prefix_is_the_sessions_successful_writes_up_to_the_bound() -> None:
    reqs = [
        rec(1, "POST", "/carts", 201, "s=1"),
        rec(2, "POST", "/carts", 400, "s=1"),  # failed write: left out
        rec(3, "GET", "/carts", 200, "s=1"),  # read: left out
        rec(4, "POST", "/carts", 201, "s=2"),  # other session: left out
        rec(5, "PUT", "/carts/1", 200, "s=1"),
        rec(6, "DELETE", "/carts/1", 204, "s=1"),
        rec(7, "GET", "/carts/1/total", 500, "s=1"),
        rec(8, "POST", "/carts", 201, "s=1"),  # after: left out
    ]
    assert [r.number for r in replay.prefix_for(reqs, reqs[6], bound=20)] == [1, 5, 6]
    assert [r.number for r in replay.prefix_for(reqs, reqs[6], bound=2)] == [5, 6]
    assert replay.prefix_for(reqs, reqs[6], bound=0) == []


def test_stateless_enough_when_no_write_succeeded() -> None:
    assert replay.stateless_enough(
        [rec(1, "GET", "/a", 200), rec(2, "POST", "/a", 400), rec(3, "GET", "/b", 500)]
    )
    assert not replay.stateless_enough([rec(1, "GET", "/a", 200), rec(2, "PUT", "/a/1", 204)])


def test_verdicts() -> None:
    assert replay.verdict([500, 500, 500], []) == (replay.CONFIRMED, "alone")
    assert replay.verdict([404, 404, 404], [500, 503, 500]) == (replay.CONFIRMED, "with prefix")
    assert replay.verdict([200, 500, 200], [500, 200, 200]) == (replay.FLAKY, None)
    assert replay.verdict([500, None, 500], []) == (replay.FLAKY, None)
    assert replay.verdict([200, 200, 200], []) == (replay.NOT_REPRODUCED, None)
    assert replay.verdict([None, None, None], [404, 404, 404]) == (replay.NOT_REPRODUCED, None)


def test_replayed_headers_lose_the_hop_headers_and_the_injected_credential() -> None:
    req = replay.Recorded(
        1,
        0.0,
        "GET",
        "/x",
        "",
        (("Host", "api:9090"), ("Authorization", "Bearer old"), ("Accept", "*/*"), ("Content-Length", "0")),
        b"",
        500,
    )
    assert replay.replay_headers(req, ["authorization"]) == {"Accept": "*/*"}
    assert replay.replay_headers(req) == {"Authorization": "Bearer old", "Accept": "*/*"}
    image = {"Config": {"Env": ["PATH=/bin", 'AUTH_STEPS={"steps": [], "header": "Authorization"}']}}
    assert replay.auth_header_of(image) == "Authorization"
    assert replay.auth_header_of({"Config": {"Env": ["PATH=/bin"]}}) is None


def test_slots_follow_admission() -> None:
    machine = admission.Machine(8, 32 << 30)
    idle = admission.Measurement(free_cpus=8.0, available_memory=32 << 30)
    assert replay.replay_slots(machine, idle, 2.0, 1 << 30, wanted=8) == 4
    busy = admission.Measurement(free_cpus=3.0, available_memory=32 << 30)
    assert replay.replay_slots(machine, busy, 1.0, 1 << 30, wanted=8) == 3
    short = admission.Measurement(free_cpus=8.0, available_memory=2 << 30)
    assert replay.replay_slots(machine, short, 1.0, 1 << 30, wanted=8) == 2
    full = admission.Measurement(free_cpus=0.2, available_memory=32 << 30)
    assert replay.replay_slots(machine, full, 1.0, 1 << 30, wanted=8) == 1  # slowly, never not at all


def entry(sig: str, number: int, verdict: str, key: str | None, body: str = "") -> dict:
    return {
        "signature": sig,
        "verdict": verdict,
        "key": key,
        "own_frames": True if key else None,
        "response_excerpt": body,
        "first": {"number": number, "method": "GET", "path": sig},
    }


def test_grouping_by_key_and_the_restgym_fallback() -> None:
    entries = [
        entry("/a", 3, replay.CONFIRMED, "E | x.A.f(A.java:1)"),
        entry("/b", 1, replay.CONFIRMED, "E | x.A.f(A.java:1)"),
        entry("/c", 5, replay.CONFIRMED, None, '{"message": "connection refused to db"}'),
        entry("/d", 6, replay.CONFIRMED, None, '{"message": "connection refused to db"}'),
        entry("/e", 7, replay.CONFIRMED, None, "totally different words here"),
        entry("/f", 2, replay.FLAKY, "F | x.B.g(B.java:2)"),
    ]
    grouped = replay.group_faults(entries, faults.Analysis())
    assert [(f["key_source"], f["requests"], f["first"]["number"]) for f in grouped] == [
        (replay.KEY_TRACE, ["/a", "/b"], 1),
        (replay.KEY_BUCKET, ["/c", "/d"], 5),
        (replay.KEY_BUCKET, ["/e"], 7),
    ]
    assert grouped[1]["key"].startswith("restgym-bucket-1: ")


def test_recorded_requests_are_read_through_the_traffic_reader(tmp_path: Path) -> None:
    db = tmp_path / "traffic.sqlite"
    conn = sqlite3.connect(db)
    conn.execute(
        "CREATE TABLE requests (id INTEGER PRIMARY KEY, started REAL, finished REAL, method TEXT, path TEXT,"
        " query TEXT, request_headers TEXT, request_body BLOB, status INTEGER, response_headers TEXT,"
        " response_body BLOB, wire TEXT)"
    )
    rows = [
        (1.0, "GET", "/health", "", {}, b"", 200, b"ok"),  # a readiness probe: before the tool's start
        (11.0, "POST", "/carts", "", {"Content-Type": "application/json"}, b'{"a": 1}', 201, b"{}"),
        (12.0, "GET", "/carts/1/total", "x=1", {"Accept": "*/*"}, b"", 500, b"boom"),
    ]
    for started, method, path, query, headers, body, status, answer in rows:
        conn.execute(
            "INSERT INTO requests (started, finished, method, path, query, request_headers, request_body,"
            " status, response_headers, response_body, wire) VALUES (?,?,?,?,?,?,?,?,?,?,'latin-1')",
            (started, started + 0.1, method, path, query, json.dumps(headers), body, status, "{}", answer),
        )
    conn.commit()
    conn.close()
    got = replay.read_recorded(db, tool_start=10.0)
    assert [(r.number, r.method, r.target, r.status) for r in got] == [
        (1, "POST", "/carts", 201),
        (2, "GET", "/carts/1/total?x=1", 500),
    ]
    assert got[0].body == b'{"a": 1}' and got[1].response_body == b"boom"
    assert got[1].header("accept") == "*/*"
