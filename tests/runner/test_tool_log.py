"""The tool-log contract (remote_runner.analysis.tool_log) on lines as the tool entrypoints print them."""

from __future__ import annotations

import json

from remote_runner.analysis import tool_log
from remote_runner.analysis.tool_log import RequestCount, Restart


def test_last_request_count_wins_and_prefixes_are_ignored() -> None:
    report = tool_log.parse_text(
        "[schemathesis 2026-12-01T20:00:00Z] run 1 exited with 0\n"
        "[schemathesis 2026-12-01T20:00:01Z] TOOL_REQUESTS sent=10 answered=9 runs=1\n"
        "[schemathesis 2026-12-01T20:01:00Z] TOOL_REQUESTS sent=183 answered=181 runs=2\n"
    )
    assert report.requests == RequestCount(sent=183, answered=181, runs=2)
    assert report.restarts == ()
    assert report.unreadable == ()


def test_restarts_in_order_with_reason_and_tail_capped() -> None:
    tail = [f"line {i}" for i in range(15)]
    report = tool_log.parse(
        [
            "[llamaresttest x] TOOL_RESTART "
            + json.dumps({"run": 1, "exit": 1, "reason": "KeyError: 'description'", "tail": []}),
            "noise",
            "TOOL_RESTART " + json.dumps({"run": 2, "exit": 137, "reason": "exit 137", "tail": tail}),
        ]
    )
    assert [r.run for r in report.restarts] == [1, 2]
    assert report.restarts[0] == Restart(run=1, exit=1, reason="KeyError: 'description'", tail=())
    assert report.restarts[1].tail == tuple(tail[-10:])
    assert report.restarts[1].as_dict()["exit"] == 137
    assert report.requests is None


def test_damaged_marker_lines_are_reported_not_dropped() -> None:
    report = tool_log.parse(["TOOL_RESTART {not json", "TOOL_REQUESTS sent=x", 'TOOL_RESTART {"reason": 3}'])
    assert report.restarts == ()
    assert len(report.unreadable) == 3
