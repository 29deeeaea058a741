"""The 11 benchmark API images, built on their stand-ins (conftest ``benchmark_images``), in ONE batch
through the runner (`python -m remote_runner run`), 10-second budgets, with a stand-in tool that walks
the spec the runner hands it. Every run must succeed with requests recorded through the proxy and a
coverage sample with classes; the MySQL APIs' db-init.sh must really run against Debian's MariaDB and
pass its login check, and every database API's stand-in service must reach the database its jar's
configuration names (genome-nexus: the -D override of the internet host)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

from remote_runner.common.process import execute
from remote_runner.experiment import preflight
from tests.images.standin_images import APIS, ROOT, STANDIN

pytestmark = [pytest.mark.docker, pytest.mark.slow]

BUDGET = 10
TOOL = "standin-walker"
# What each database API's log must show: its sidecar up where the jar's config says, and the
# stand-in service connected there.
DATABASE_LINES = {
    "blog": [
        "db-init: loaded /api/database/blogapi.sql into blogapi",
        "db-init: blog/blog reaches blogapi on 127.0.0.1:3307",
        "stand-in: database spring.datasource.url=jdbc:mysql://localhost:3307/blogapi?useSSL=false answers",
    ],
    "user-management": [
        "db-init: root/root reaches users on 127.0.0.1:3306",
        "stand-in: database spring.datasource.url=jdbc:mysql://localhost:3306/users?useSSL=false answers",
    ],
    "genome-nexus": [
        "mongod stand-in listening on 27017",
        "stand-in: database spring.data.mongodb.uri=mongodb://127.0.0.1:27017/annotator answers",
    ],
    "person-controller": [
        "mongod stand-in listening on 27019",
        "stand-in: database spring.data.mongodb.uri=mongodb://localhost:27019/person answers",
    ],
}


@pytest.fixture(scope="module")
def batch(benchmark_images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    tool = execute(
        ["docker", "build", "-q", "-t", f"llamaresttest/tool-{TOOL}", str(STANDIN / "tool")], timeout=300
    )
    assert tool.ok, tool.tail(30)
    # A catalog of the repository's own API folders (unchanged) and the stand-in tool.
    catalog = tmp_path_factory.mktemp("standin-catalog")
    for api in APIS:
        shutil.copytree(ROOT / "apis" / api, catalog / "apis" / api)
    shutil.copytree(STANDIN / "tool", catalog / "tools" / TOOL)
    results = tmp_path_factory.mktemp("standin-results")
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
            "--apis",
            ",".join(APIS),
            "--tools",
            TOOL,
            "--runs",
            "1",
            "--budget",
            f"{BUDGET}s",
            "--cpus-per-container",
            "0.5",
            "--memory-per-container",
            "640m",
            "--min-free-cpus",
            "0",
            "--results",
            str(results),
        ],
        cwd=ROOT,
        timeout=600,
    )
    assert res.ok, res.tail(60)
    batches = sorted(results.glob("batch-*"))
    assert len(batches) == 1, res.tail(40)
    return batches[0]


@pytest.mark.parametrize("api", APIS)
def test_each_standin_runs_through_the_runner(batch: Path, api: str) -> None:
    run = batch / api / TOOL / "run-1"
    meta = json.loads((run / "metadata.json").read_text())
    api_log = (run / "logs" / "api.log").read_text(errors="replace")
    assert meta["status"] == "succeeded", (meta, api_log[-3000:])
    # the preflight's own judgement of the run: recorded requests and a coverage sample with classes
    evidence = preflight.read_evidence(run, meta["status"], None)
    assert preflight.judge(evidence) is None, (evidence, api_log[-3000:])
    tool_log = (run / "logs" / "tool.log").read_text(errors="replace")
    assert "walker: 0 operations" not in tool_log, tool_log[-2000:]
    with sqlite3.connect(run / "traffic.sqlite") as db:
        statuses = [s for (s,) in db.execute("SELECT status FROM requests")]
    assert statuses.count(200) >= 2, statuses[:20]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["tool_requests"]["sent"] >= 1, summary["tool_requests"]
    # the walker sends every operation of the real spec: the metrics map each one back to it
    assert summary["operations"]["covered"] == summary["operations"]["total"] > 0, summary["operations"]
    for line in DATABASE_LINES.get(api, []):
        assert line in api_log, f"{api}: {line!r} not in its log:\n{api_log[-3000:]}"
