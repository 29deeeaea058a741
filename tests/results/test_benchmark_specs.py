"""Operation counting on the 11 real benchmark specs (RESTgym's own files, data in
../shared/benchmark-specs, never copied into the repository): the counts RESTgym states (240 in
all, HEAD apart from GET), and the matcher on synthetic requests for every operation."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from remote_runner import cli
from remote_runner.analysis import metrics, results
from remote_runner.common.process import execute

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT.parent / "shared" / "benchmark-specs"
# RESTgym's count per API (../shared/benchmark-specs/README.md, from SeUniVr/RESTgym@56a9300).
COUNTS = {
    "blog": 52,
    "features-service": 18,
    "genome-nexus": 23,
    "languagetool": 2,
    "market": 13,
    "ncs": 6,
    "person-controller": 12,
    "project-tracking-system": 59,
    "restcountries": 22,
    "scs": 11,
    "user-management": 22,
}


def load(name: str) -> dict:
    doc, problem = results.load_spec(SPECS / name)
    assert problem is None and doc is not None, f"{name}: {problem}"
    return doc


def test_the_benchmark_has_240_operations_per_restgym() -> None:
    counts = {api: len(metrics.spec_operations(load(f"{api}-openapi.json"))) for api in COUNTS}
    assert counts == COUNTS
    assert sum(counts.values()) == 240
    ops = {str(o) for o in metrics.spec_operations(load("user-management-openapi.json"))}
    assert {"HEAD /error", "GET /error"} <= ops  # the one HEAD of the benchmark is its own operation


@pytest.mark.parametrize("api", sorted(COUNTS))
def test_the_swagger2_file_counts_the_same_operations(api: str) -> None:
    assert metrics.spec_operations(load(f"{api}.yaml")) == metrics.spec_operations(load(f"{api}-openapi.json"))


def concrete(template: str) -> str:
    return re.sub(r"\{[^/{}]+\}", "7", template)


@pytest.mark.parametrize("api", sorted(COUNTS))
def test_every_operation_is_matched_by_its_own_synthetic_requests(api: str) -> None:
    doc = load(f"{api}-openapi.json")
    matcher = metrics.operation_matcher(doc)
    wrong: list[str] = []
    for op in matcher.operations:
        path = concrete(op.template)
        variants = [path, path + "?a=1&b=two", path.rstrip("/") + "/", "/" + path, path.replace("/", "//", 2)]
        for variant in variants:
            got = matcher.match(op.method.lower(), variant)
            if got != op:
                wrong.append(f"{op.method} {variant} -> {got} (expected {op})")
        # one more segment is another resource: never this operation
        longer = matcher.match(op.method, path.rstrip("/") + "/zz-extra")
        if longer == op:
            wrong.append(f"{op.method} {path}/zz-extra -> {op} (a longer path must not match it)")
    assert not wrong, "\n".join(wrong)


def test_prefixes_in_the_paths_match_as_written() -> None:
    """The prefixes are part of the benchmark's paths (README of the specs): a request must carry them."""
    for api, prefix in (("restcountries", "/rest/v"), ("project-tracking-system", "/app/api/")):
        matcher = metrics.operation_matcher(load(f"{api}-openapi.json"))
        prefixed = [o for o in matcher.operations if o.template.startswith(prefix)]
        assert prefixed, f"{api}: no template starts with {prefix}"
        for op in prefixed:
            assert matcher.match(op.method, concrete(op.template)) == op
            stripped = "/" + concrete(op.template)[len(prefix) :].lstrip("/")
            assert matcher.match(op.method, stripped) != op, f"{api}: {stripped} must not be {op}"


def test_spec_command_prints_the_operations_and_the_matches_as_json(project_root: Path) -> None:
    res = execute(
        [
            sys.executable,
            "-m",
            "remote_runner",
            "spec",
            str(SPECS / "user-management-openapi.json"),
            "--match",
            "HEAD /error",
            "--match",
            "GET //error/?x=1",
            "--match",
            "GET /nowhere",
            "--json",
        ],
        cwd=project_root,
        timeout=60,
    )
    assert res.ok, res.tail()
    out = json.loads(res.output)
    assert len(out["operations"]) == 22 and "HEAD /error" in out["operations"]
    assert out["matches"] == {"HEAD /error": "HEAD /error", "GET //error/?x=1": "GET /error", "GET /nowhere": None}


def test_spec_command_reports_bad_input_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"paths": {}}')
    assert cli.main(["spec", str(bad), "--match", "GETT /x", "--match", "GET nopath"]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "no operations" in err and "'GETT /x'" in err and "'GET nopath'" in err
