"""The cross-API report from a real batch: `python -m remote_runner run` on the local Docker engine,
two tools on two APIs, then the ranks (at the budget's end and at equal requests), Friedman,
Nemenyi and the critical-difference diagrams, checked against scipy and scikit-posthocs on the
batch's own numbers.

The APIs: demo-shop (offline, the demo's) and ncs on its stand-in (tests/images/standin_images.py,
the API's own Dockerfile unchanged). The tools: Schemathesis, and Schemathesis again as a distinct
tool `schemathesis-get`, a temporary catalog's copy of tools/schemathesis whose entrypoint adds
`--include-method GET`. It is a second configuration, not a second tool: ARAT-RL's and EvoMaster's
images need GitHub or Docker Hub, which this machine cannot reach (tests/images/test_comparison_tools.py).

Budgets are seconds, so the runs are re-summarised with thresholds scaled to such budgets (as
tests/results/test_report_from_runner.py does, and for the same reason: Schemathesis spends seconds
starting up)."""

from __future__ import annotations

import csv
import json
import re
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from remote_runner.analysis import faults, results
from remote_runner.analysis.report import document as report
from remote_runner.analysis.report import tables
from remote_runner.analysis.verification import Thresholds
from remote_runner.common.process import execute
from tests.images.standin_images import ROOT, build_api, build_standin_base, standin

pytestmark = [pytest.mark.docker, pytest.mark.slow]

APIS = ("demo-shop", "ncs")
TOOLS = ("schemathesis", "schemathesis-get")
BUDGET = 30.0
SHORT_BUDGET = Thresholds(min_requests_per_minute=8, min_span_fraction=0.1, min_samples_per_minute=4)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG whose signature, IHDR chunk and every chunk's CRC are right, and which
    ends with IEND (a truncated or corrupt file fails here)."""
    assert data.startswith(PNG_MAGIC), data[:16]
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in chunk {kind!r}"
        chunks.append((kind, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND", [k for k, _ in chunks]
    assert any(k == b"IDAT" for k, _ in chunks)
    width, height = struct.unpack(">II", chunks[0][1][:8])
    return width, height


@pytest.fixture(scope="module")
def batch(demo_images: dict[str, float], tmp_path_factory: pytest.TempPathFactory) -> Path:
    build_standin_base()
    standin(tmp_path_factory.mktemp("standin"), "ncs")
    ok, output = build_api("ncs")
    assert ok, output[-3000:]
    catalog = tmp_path_factory.mktemp("two-tool-catalog")
    (catalog / "apis").mkdir()
    (catalog / "tools").mkdir()
    for api in APIS:
        (catalog / "apis" / api).symlink_to(ROOT / "apis" / api)
    (catalog / "tools" / "schemathesis").symlink_to(ROOT / "tools" / "schemathesis")
    variant = catalog / "tools" / "schemathesis-get"
    shutil.copytree(ROOT / "tools" / "schemathesis", variant)  # the wheelhouse too: same cached layers
    entrypoint = variant / "entrypoint.sh"
    text = entrypoint.read_text()
    assert text.count("--no-color") == 1, "the entrypoint's st run line changed: adapt the variant"
    entrypoint.write_text(text.replace("--no-color", "--no-color --include-method GET"))
    out = tmp_path_factory.mktemp("two-tool-results")
    res = execute(
        [
            sys.executable,
            "-m",
            "remote_runner",
            "run",
            "--no-preflight",
            # RESTgym's protocol, scaled down by explicit flags (recorded as overridden in plan.json)
            "--preset",
            "restgym",
            "--catalog",
            str(catalog),
            "--results",
            str(out),
            "--apis",
            ",".join(APIS),
            "--tools",
            ",".join(TOOLS),
            "--runs",
            "1",
            "--budget",
            f"{BUDGET:g}s",
            "--cpus-per-container",
            "0.5",
            "--memory-per-container",
            "512m",
            "--min-free-cpus",
            "0",
            "--max-attempts",
            "1",
            "--stop-grace",
            "10",
        ],
        timeout=600,
        cwd=ROOT,
    )
    assert res.ok, res.tail(60)
    batches = sorted(out.glob("batch-*"))
    assert len(batches) == 1, res.tail()
    batch = batches[0]
    for run_dir in results.find_run_dirs(batch):
        api = run_dir.parent.parent.name
        spec = next((batch / "specifications" / api).glob("*.json"))
        results.write_run_summary(
            run_dir, spec, BUDGET, thresholds=SHORT_BUDGET, analysis=faults.default_analysis(api)
        )
    results.write_batch_summary(batch)
    report.build_report(batch)
    return batch


def verified_rows(batch: Path) -> list[dict[str, str]]:
    return [r for r in csv.DictReader((batch / "summary.csv").open()) if r["verified"] == "true"]


def test_every_run_is_real_and_verified(batch: Path) -> None:
    rows = list(csv.DictReader((batch / "summary.csv").open()))
    assert sorted((r["api"], r["tool"]) for r in rows) == sorted((a, t) for a in APIS for t in TOOLS)
    for r in rows:
        assert r["status"] == "succeeded", r
        assert r["verified"] == "true", r  # else its API drops out of the ranks below
        assert int(r["requests"]) >= 1 and 0 < float(r["line_coverage"]) <= 1, r
    # the variant is a different configuration: it tests GET operations only (its checks may still
    # send other methods to their paths, e.g. unsupported_method; those are no operation of the spec)
    for api in APIS:
        summary = json.loads((batch / api / "schemathesis-get" / "run-1" / "summary.json").read_text())
        covered = summary["operations"]["covered_list"]
        assert covered and all(op.startswith("GET ") for op in covered), (api, covered)
    demo = json.loads((batch / "demo-shop" / "schemathesis" / "run-1" / "summary.json").read_text())
    assert any(not op.startswith("GET ") for op in demo["operations"]["covered_list"]), demo["operations"]


def _section(md: str, start: str) -> str:
    return md.split(start, 1)[1].split("###", 1)[0]


def _check_ranking(section: str, table: np.ndarray) -> None:
    """The section's Friedman figures, mean ranks and Nemenyi p-values against scipy and
    scikit-posthocs on ``table`` (APIs x TOOLS). scipy's friedmanchisquare wants 3 or more tools, so
    with our 2 the chi-square is the textbook one (Demsar 2006, eq. 1, with scipy's tie correction)
    on scipy's ranks, and its p-value scipy's chi-square survival function."""
    import scikit_posthocs as sp
    from scipy.stats import chi2 as chi2_dist
    from scipy.stats import rankdata

    n, k = table.shape
    ranks = rankdata(-table, axis=1)
    sums = ranks.sum(axis=0)
    ties = sum(int((c**3 - c).sum()) for c in (np.unique(row, return_counts=True)[1] for row in table))
    correction = 1 - ties / (n * k * (k * k - 1))
    if correction > 0:
        chi2 = (12 / (n * k * (k + 1)) * float((sums**2).sum()) - 3 * n * (k + 1)) / correction
        p = float(chi2_dist.sf(chi2, k - 1))
        shown = "<0.001" if p < 0.001 else f"{p:.3f}"
        assert f"Friedman chi-square = {chi2:.3f}, df = {k - 1}, p = {shown}" in section, section
    else:  # every API ties the tools: no evidence of a difference
        assert f"Friedman chi-square = 0.000, df = {k - 1}, p = 1.000" in section, section
    mean_ranks = ranks.mean(axis=0)
    nemenyi = sp.posthoc_nemenyi_friedman(table).to_numpy()
    header = next(ln for ln in section.splitlines() if ln.startswith("| tool | mean rank |"))
    others = [
        c.strip().removeprefix("Nemenyi p vs ").removesuffix(" (Friedman not significant)")
        for c in header.strip("|").split("|")[2:]
    ]
    assert sorted(others) == sorted(TOOLS)
    for i, tool in enumerate(TOOLS):
        line = next(ln for ln in section.splitlines() if ln.startswith(f"| {tool} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1] == f"{mean_ranks[i]:.2f}"
        for other, cell in zip(others, cells[2:], strict=True):
            pv = float(nemenyi[i, TOOLS.index(other)])
            assert cell == ("-" if other == tool else "<0.001" if pv < 0.001 else f"{pv:.3f}")


def test_ranks_at_the_budget_end_name_both_tools_and_apis(batch: Path) -> None:
    md = (batch / "report.md").read_text()
    rows = verified_rows(batch)
    for key, label in (
        ("line_coverage", "Line coverage"),
        ("operations_covered", "Operations covered (2xx)"),
    ):
        section = _section(md, f"### Ranks: {label}")
        assert "2 APIs went in: demo-shop, ncs." in section
        assert "With fewer than 5 APIs these tests have little power." in section
        table = np.array(
            [
                [next(float(r[key]) for r in rows if r["api"] == a and r["tool"] == t) for t in TOOLS]
                for a in APIS
            ]
        )
        _check_ranking(section, table)
        cd = f"cd-{key}.png"
        # two APIs: Friedman cannot be significant, so the post-hoc results are marked
        assert (
            f"![critical-difference diagram: {label} at the budget's end (Friedman not significant)]({cd})"
            in section
        )
        width, height = png_size((batch / cd).read_bytes())
        assert width > 300 and height > 100


def test_ranks_at_equal_requests(batch: Path) -> None:
    md = (batch / "report.md").read_text()
    rows = verified_rows(batch)
    points = {a: min(int(r["requests"]) for r in rows if r["api"] == a) // 100 * 100 for a in APIS}
    section = _section(md, "#### Ranks at equal requests: Line coverage")
    went_in = [a for a in APIS if points[a] >= 100]  # below one series row: no equal-request values
    left_out = [a for a in APIS if a not in went_in]
    if left_out:
        assert f"Left out (a tool has no value at equal requests): {', '.join(left_out)}." in section
    if not went_in:
        assert "No API went in." in section
        return
    assert (
        f"{len(went_in)} API{'s' if len(went_in) > 1 else ''} went in, each at its smallest request count: "
        + ", ".join(f"{a} at {points[a]} requests" for a in went_in)
        + "."
    ) in section

    def at(api: str, tool: str) -> float:
        summary = json.loads((batch / api / tool / "run-1" / "summary.json").read_text())
        block = summary["cumulative"]
        row = next(r for r in block["rows"] if r[block["columns"].index("requests")] == points[api])
        return float(row[block["columns"].index("line_coverage")])

    _check_ranking(section, np.array([[at(a, t) for t in TOOLS] for a in went_in]))
    cd = "cd-line_coverage-equal-requests.png"
    assert f"]({cd})" in section
    png_size((batch / cd).read_bytes())


def test_every_plot_of_the_report_is_a_valid_png(batch: Path) -> None:
    md = (batch / "report.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert {"coverage-demo-shop.png", "coverage-ncs.png", "operations-covered.png"} <= set(images)
    assert sum(1 for i in images if i.startswith("cd-")) >= len(tables.RANK_METRICS)
    for name in images:
        png_size((batch / name).read_bytes())


PROVENANCE_KEYS = {
    "preset",
    "seed",
    "seed_given_to_tool",
    "order",
    "tool_env",
    "build_args",
    "images",
    "models",
    "models_problem",
    "host",
    "container_cpu",
    "peak_memory",
    "tool_version",
}


def test_every_run_records_its_provenance_and_the_batch_its_protocol(batch: Path) -> None:
    plan = json.loads((batch / "plan.json").read_text())
    protocol = plan["protocol"]
    assert protocol["preset"] == "restgym" and protocol["shuffle"] is True
    assert isinstance(protocol["shuffle_seed"], int) and protocol["shuffle_seed"] == plan["settings"]["seed"]
    assert set(protocol["overridden"]) == {
        "runs",
        "budget_seconds",
        "cpus_per_container",
        "memory_per_container",
    }
    assert protocol["overridden"]["runs"] == {"preset": 10, "used": 1}
    order = {(r["api"], r["tool"]): (r["order"], r["seed"]) for r in plan["runs"]}
    for run_dir in results.find_run_dirs(batch):
        meta = json.loads((run_dir / "metadata.json").read_text())
        prov = meta["provenance"]
        assert set(prov) == PROVENANCE_KEYS, sorted(set(prov) ^ PROVENANCE_KEYS)
        assert (prov["order"], prov["seed"]) == order[(meta["api"], meta["tool"])]
        assert prov["preset"] == "restgym" and prov["seed_given_to_tool"] is True
        for role in ("api", "tool"):
            assert prov["images"][role]["id"].startswith("sha256:"), prov["images"]
            assert prov["peak_memory"][role]["bytes"] > 1024**2, prov["peak_memory"]
        cpu = prov["container_cpu"]
        assert cpu["count"] >= 1 and cpu["model"] and cpu["kernel"] == prov["host"]["kernel"]
        assert prov["host"]["node"] and prov["host"]["machine_type_source"]
        # asked from the tool at start (`st --version`)
        assert prov["tool_version"]["source"] == "tool (TOOL_VERSION at start)"
        assert prov["tool_version"]["text"].endswith("version 4.32.5"), prov["tool_version"]
        # schemathesis mounts no models; the field says so (None), as it would list them by sha256
        assert prov["models"] is None and prov["models_problem"] is None
        if meta["tool"] == "schemathesis":
            assert prov["tool_env"] == {
                "SCHEMATHESIS_ARGS": "--max-examples 1500 --no-shrink",
                "SCHEMATHESIS_WORKERS": "1",
            }
            log = (run_dir / "logs" / "tool.log").read_text()
            assert "options --max-examples 1500 --no-shrink" in log and f"seed {prov['seed']}" in log
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["request_count"]["source"] == "tool (TOOL_REQUESTS)"


def test_the_report_shows_the_protocol_both_analyses_corrected_p_and_four_fault_counts(batch: Path) -> None:
    md = (batch / "report.md").read_text()
    protocol = md.split("## Protocol", 1)[1].split("\n## ", 1)[0]
    assert "Preset restgym: RESTgym's protocol" in protocol
    assert "overridden: budget_seconds 3600 -> 30, cpus_per_container 8 -> 0.5" in protocol
    assert "memory_per_container 16g -> 512m, runs 10 -> 1." in protocol
    line = next(ln for ln in protocol.splitlines() if ln.startswith("| schemathesis |"))
    assert "| 2 | 2 | 2 |" in line and "version 4.32.5 (tool (TOOL_VERSION at start)) | none |" in line
    assert "schemathesis: ours 4.32.5, the paper's 4.7.5" in protocol
    demo = md.split("## API: demo-shop", 1)[1].split("\n## API: ", 1)[0]
    assert "| metric | schemathesis: all completed (n=1) | schemathesis: verified only (n=1) |" in demo
    assert "### Tool comparisons (p Holm-corrected, A12): fully verified runs only" in demo
    for label in (
        "Unique failures (ours)",
        "Unique failures (RESTgym)",
        "Operations with a 500 (ARAT-RL)",
        "Unique 500/502 messages per path prefix (LlamaRestTest)",
    ):
        assert f"| {label} |" in demo
    assert re.search(
        r"p=[0-9.<]+ \(uncorrected [0-9.<]+\), A12=[0-9.]+ (negligible|small|medium|large)", demo
    )
    assert "## Ranks across APIs: fully verified runs only" in md
