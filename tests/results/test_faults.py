"""RESTgym's fault count and per-API cleaning on hand-checked bodies shaped like each API's errors
(shapes as SeUniVr/RESTgym src/process_results.py handles them: a first line with quoted text for
languagetool, an HTML <body> for features-service, a JSON message for market/user-management/blog,
JSON punctuation for person-controller), our definition against metrics.unique_failures, and the
[analysis] settings of the catalog."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from remote_runner.analysis import faults, metrics
from remote_runner.experiment import catalog
from remote_runner.analysis.metrics import Request

ROOT = Path(__file__).resolve().parents[2]


def test_languagetool_first_line_prefix_and_quotes_removed() -> None:
    body = (
        "Error: Internal Error: Unknown language 'xx-YY' in \"text\" (code 39)\n"
        "\tat org.languagetool.Languages.getLanguageForShortCode(Languages.java:233)\n"
    )
    assert faults.clean_languagetool(body).split() == ["Unknown", "language", "in", "code"]
    # the triple quote before (code 39) does not swallow the rest of the line
    odd = "Error: Internal Error: bad (''' (code 39)) near 'abc'"
    assert faults.clean_languagetool(odd).split() == ["bad", "code", "near"]


def test_html_body_keeps_only_the_body() -> None:
    page = "<html><head><title>Error 500 x</title></head><body><h1>Whitelabel</h1> boom</body></html>"
    assert faults.clean_html_body(page) == "<body><h1>Whitelabel</h1> boom"
    assert faults.clean_html_body("no html here") == "no html here"


def test_json_message_for_user_management_and_blog() -> None:
    assert faults.clean_json_message('{"status":500,"message":"User not found: 42"}') == "User not found: 42"
    # a message of 4 characters or fewer is not enough: the whole body stays
    short = '{"status":500,"message":"Err"}'
    assert faults.clean_json_message(short) == short
    assert faults.clean_json_message("not json") == "not json"
    assert faults.clean_json_message('{"message": null}') == '{"message": null}'


def test_json_message_market_takes_any_message_and_drops_brackets() -> None:
    body = '{"message":"Could not commit [insert into product values (?, ?)] because of X"}'
    assert faults.clean_json_message_market(body) == "Could not commit  because of X"
    assert faults.clean_json_message_market('{"message":"Err"}') == "Err"
    assert faults.clean_json_message_market("plain [gone] text") == "plain  text"


def test_person_controller_punctuation() -> None:
    assert faults.clean_punctuation('{"error":"x","list":[1,2]}').split() == ["error", "x", "list", "1", "2"]


def test_empty_body_counts_as_500() -> None:
    assert faults.words(b"") == frozenset({"500"})
    assert faults.words("   \n") == frozenset({"500"})


def test_restgym_joins_the_most_similar_bucket_not_the_first() -> None:
    a = "alpha beta gamma delta"  # bucket 0
    b = "alpha beta gamma epsilon zeta eta"  # J(a, b) = 3/7 < 0.5: bucket 1
    c = "alpha beta gamma epsilon zeta"  # J(c, a) = 3/6 = 0.5, J(c, b) = 5/6: joins b, not a
    res = faults.restgym_buckets([a, b, c], "none", 0.5)
    assert res.assignment == (0, 1, 1)
    assert [bk.count for bk in res.buckets] == [1, 2]
    assert res.unique == 2


def test_restgym_pools_all_5xx_and_threshold_zero_needs_some_overlap() -> None:
    # the same text from two operations is one fault in RESTgym's count (ours keeps them apart)
    reqs = [
        Request(1.0, "GET", "/a", 500, b"NullPointerException at Foo"),
        Request(2.0, "POST", "/b", 500, b"NullPointerException at Foo"),
    ]
    matcher = metrics.operation_matcher({"paths": {"/a": {"get": {}}, "/b": {"post": {}}}})
    assert len(metrics.unique_failures(reqs, matcher)) == 2
    assert faults.restgym_buckets([r.response_body for r in reqs], "none", 0.7).unique == 1
    # threshold 0 (ncs, scs): any shared word joins, no shared word does not
    assert faults.restgym_buckets(["x y", "y z", "q"], "none", 0.0).assignment == (0, 0, 1)


def test_restgym_count_with_api_cleaning_on_realistic_bodies() -> None:
    bodies = [
        '{"timestamp":"2026-01-01T00:00:01Z","status":500,"message":"Product 17 not found"}',
        '{"timestamp":"2026-01-01T00:00:09Z","status":500,"message":"Product 18 not found"}',
        '{"timestamp":"2026-01-01T00:00:12Z","status":500,"message":"could not execute statement [x=1]"}',
    ]
    # market: message only, so the two "not found" bodies share 3 of 5 words (0.6 < 0.7): still two
    # buckets; the third is its own: 3 buckets
    assert faults.restgym_buckets(bodies, "json-message-market", 0.7).unique == 3
    # with the whole JSON body nothing is alike enough either, but at 0.5 the "not found" pair joins
    assert faults.restgym_buckets(bodies, "json-message-market", 0.5).assignment == (0, 0, 1)
    with pytest.raises(ValueError, match="unknown fault cleaning"):
        faults.restgym_buckets(bodies, "nope", 0.7)


def test_our_failures_equal_metrics_unique_failures() -> None:
    rnd = random.Random(7)
    spec = {"paths": {"/p/{id}": {"get": {}, "put": {}}, "/q": {"post": {}}}}
    matcher = metrics.operation_matcher(spec)
    texts = ["NPE at line {n}", "timeout after {n} ms", "db error {n} in table t", ""]
    reqs = []
    for i in range(400):
        method, path = rnd.choice([("GET", f"/p/{i}"), ("PUT", "/p/3"), ("POST", "/q"), ("GET", "/zz")])
        status = rnd.choice([200, 404, 500, 503])
        body = rnd.choice(texts).format(n=rnd.randint(1, 9)).encode()
        reqs.append(Request(float(i), method, path, status, body))
    ops = [matcher.match(r.method, r.path) for r in reqs]
    groups, flags = faults.our_failures(reqs, ops, 0.8)
    assert groups == metrics.unique_failures(reqs, matcher, 0.8)
    assert sum(flags) == len(groups) > 3


def test_catalog_carries_restgym_settings_for_the_eleven() -> None:
    cat = catalog.load(ROOT)
    assert cat.problems == ()
    for name, expected in faults.RESTGYM_ANALYSIS.items():
        assert cat.apis[name].analysis == expected, name
    genome = cat.apis["genome-nexus"].analysis
    assert genome.thresholds_for("schemathesis").min_requests_per_minute == 50
    assert genome.thresholds_for("llamaresttest").min_requests_per_minute == 130
    assert cat.apis["languagetool"].analysis.fault_cleaning == "languagetool"


def test_bad_analysis_tables_report_every_problem(tmp_path: Path) -> None:
    folder = tmp_path / "apis" / "x"
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text("FROM scratch\n")
    (folder / "api.toml").write_text(
        '[analysis]\nfault_cleaning = "soap"\nfault_similarity = 1.5\nthreshold = 3\n'
        '[analysis.min_requests_per_minute_by_tool]\nschemathesis = "fast"\n'
    )
    cat = catalog.load(tmp_path)
    text = "\n".join(cat.problems)
    assert "fault_cleaning must be one of" in text and "soap" in text
    assert "fault_similarity must be within [0, 1], got 1.5" in text
    assert "unknown key [analysis] 'threshold'" in text
    assert "min_requests_per_minute_by_tool.schemathesis must be a number" in text
    assert cat.apis["x"].analysis == faults.Analysis()
