"""The exclusion policy on a real batch (`python -m remote_runner run` on the local engine): a
deliberately slow tool and an API that dies during its first attempt.

- The slow tool (one request every 2 s, about 30 a minute, far below RESTgym's 130) is a result:
  its runs complete, stay in the main analysis with a flag, and only the verified-only analysis
  leaves them out.
- The broken API (demo-shop behind a wrapper that kills it 12 s into its first attempt, found by the
  earlier attempt the runner set aside in the run folder) is the harness's failure: the attempt is
  re-run, and the second attempt's run is what the report counts.

The tools are small Python loops on the infrastructure image (python3 is there), so nothing needs the
network. Budgets are 20 s with coverage sampled every 2 s, so the steady tool's runs pass every check.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from remote_runner.analysis.report import tables
from remote_runner.batch import journal
from remote_runner.common.process import execute
from remote_runner.experiment.run_key import RunKey
from tests.images.standin_images import ROOT

pytestmark = [pytest.mark.docker, pytest.mark.slow]

TOOL = """import os, sys, time, urllib.request, urllib.error
url = os.environ["BASE_URL"] + "/products"
pause = float(os.environ.get("PAUSE", "0"))
sent = 0
while True:
    try:
        urllib.request.urlopen(url, timeout=5).read()
    except (urllib.error.URLError, OSError):
        pass
    sent += 1
    if sent % 50 == 0 or pause:
        print(f"TOOL_REQUESTS sent={sent} answered={sent}", flush=True)
    time.sleep(pause)
"""
DIES_ONCE = """#!/bin/sh
# the first attempt of a run dies 12 s in; a later one (its run folder holds attempts/) lives
if [ -d /results/attempts ]; then exec python3 /opt/recording/supervisor.py; fi
python3 /opt/recording/supervisor.py &
sleep 12
echo "dies-once: killing the API on purpose" >&2
exit 1
"""
IMAGES = (
    "llamaresttest/tool-fx-steady",
    "llamaresttest/tool-fx-slow",
    "llamaresttest/api-demo-shop-dies-once",
)


def _tool(folder: Path, pause: float) -> None:
    folder.mkdir(parents=True)
    (folder / "tool.py").write_text(TOOL)
    (folder / "tool.toml").write_text("needs_models = false\n")
    (folder / "Dockerfile").write_text(
        f"FROM llamaresttest/infrastructure\nENV PAUSE={pause}\nCOPY tool.py /tool.py\n"
        'ENTRYPOINT ["python3", "-u", "/tool.py"]\n'
    )


@pytest.fixture(scope="module")
def batch(recording_images: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    catalog = tmp_path_factory.mktemp("exclusion-catalog")
    (catalog / "apis").mkdir()
    (catalog / "apis" / "demo-shop").symlink_to(ROOT / "apis" / "demo-shop")
    dies = catalog / "apis" / "demo-shop-dies-once"
    dies.mkdir()
    (dies / "specifications").symlink_to(ROOT / "apis" / "demo-shop" / "specifications")
    (dies / "api.toml").write_text((ROOT / "apis" / "demo-shop" / "api.toml").read_text())
    (dies / "dies-once.sh").write_text(DIES_ONCE)
    (dies / "Dockerfile").write_text(
        "FROM llamaresttest/api-demo-shop\nCOPY dies-once.sh /dies-once.sh\n"
        'RUN chmod +x /dies-once.sh\nENTRYPOINT ["/dies-once.sh"]\n'
    )
    _tool(catalog / "tools" / "fx-steady", 0)
    _tool(catalog / "tools" / "fx-slow", 2)
    for image, folder in zip(
        IMAGES, ("tools/fx-steady", "tools/fx-slow", "apis/demo-shop-dies-once"), strict=True
    ):
        built = execute(["docker", "build", "-q", "-t", image, str(catalog / folder)], timeout=600)
        assert built.ok, built.tail(30)
    out = tmp_path_factory.mktemp("exclusion-results")
    res = execute(
        [
            sys.executable,
            "-m",
            "remote_runner",
            "run",
            "--no-preflight",
            "--no-build",
            "--catalog",
            str(catalog),
            "--results",
            str(out),
            "--apis",
            "demo-shop,demo-shop-dies-once",
            "--tools",
            "fx-steady,fx-slow",
            "--budget",
            "20s",
            "--coverage-interval",
            "2",
            "--cpus-per-container",
            "0.5",
            "--memory-per-container",
            "512m",
            "--min-free-cpus",
            "0",
            "--max-attempts",
            "2",
            "--shuffle",
            "--seed",
            "22",
        ],
        timeout=900,
        cwd=ROOT,
    )
    (batch,) = sorted(out.glob("batch-*"))
    assert res.returncode == 0, res.tail(60) + (batch / "runner.log").read_text()[-3000:]
    yield batch
    execute(["docker", "rmi", "-f", *IMAGES], timeout=120)


def test_the_broken_apis_attempts_are_re_run_and_the_second_counts(batch: Path) -> None:
    jour = journal.Journal(batch / "journal.sqlite")
    try:
        for tool in ("fx-steady", "fx-slow"):
            row = jour.get(RunKey(1, "demo-shop-dies-once", tool))
            assert (row.status, row.attempts, row.failures) == ("succeeded", 2, 1), row
            first = json.loads(
                (
                    batch
                    / "demo-shop-dies-once"
                    / tool
                    / "run-1"
                    / "attempts"
                    / "attempt-1"
                    / "metadata.json"
                ).read_text()
            )
            assert first["status"] == "failed" and first["reason"].startswith("api exited"), first["reason"]
            second = json.loads(
                (batch / "demo-shop-dies-once" / tool / "run-1" / "metadata.json").read_text()
            )
            assert (second["attempt"], second["status"]) == (2, "succeeded")
        for tool in ("fx-steady", "fx-slow"):  # the healthy API: one attempt each
            assert jour.get(RunKey(1, "demo-shop", tool)).attempts == 1
    finally:
        jour.close()


def test_the_slow_tool_is_kept_in_the_main_analysis_with_a_flag(batch: Path) -> None:
    runs = {(r.api, r.tool): r for r in tables.load_runs(batch)}
    for api in ("demo-shop", "demo-shop-dies-once"):
        steady, slow = runs[(api, "fx-steady")], runs[(api, "fx-slow")]
        assert steady.completed and steady.verified, steady.reason
        assert slow.completed and not slow.verified and not slow.infrastructure
        names = [f.split(":")[0] for f in slow.flags]
        assert names[0] == "requests_per_minute" and set(names) <= {"requests_per_minute", "request_span"}, (
            names
        )
    md = (batch / "report.md").read_text()
    assert "4 runs: 4 completed, of which 2 fully verified and 2 kept with a flag; 0 failed." in md
    demo = md.split("## API: demo-shop\n", 1)[1].split("\n## ", 1)[0]
    assert "| fx-slow | 1 | 0 | 1 |" in demo  # completed 1, fully verified 0, all 1
    flagged = md.split("## Runs kept with a flag", 1)[1]
    assert flagged.count("| fx-slow | 1 | requests_per_minute: ") == 2
    assert "None: every run completed." in md
    # the main ranking keeps both APIs; the verified-only one names the tool that lacks a value
    main = md.split("### Ranks: Line coverage\n", 1)[1].split("###", 1)[0]
    assert "2 APIs went in: demo-shop, demo-shop-dies-once." in main
    strict = md.split("### Ranks: Line coverage (fully verified runs only)", 1)[1].split("###", 1)[0]
    assert "Missing: demo-shop: fx-slow; demo-shop-dies-once: fx-slow." in strict
    plan = json.loads((batch / "plan.json").read_text())
    assert plan["protocol"]["shuffle_seed"] == 22 and plan["protocol"]["preset"] is None
