"""`docker stop` in the middle of testing loses nothing: the demo API and Schemathesis run directly
on the engine (no runner), the tool is stopped while it is busy, then the API. Every request the
tool counted is in the traffic database with its answer, and the API wrote a final coverage sample
after the proxy stopped. Also checks that COVERAGE_INTERVAL is honoured (1 s here)."""

from __future__ import annotations

import csv
import itertools
import json
import re
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from remote_runner.analysis import traffic
from remote_runner.common.process import execute

pytestmark = [pytest.mark.docker, pytest.mark.slow]

LABEL = "llamaresttest.test=images"


def docker(*args: str, timeout: float = 120) -> str:
    res = execute(["docker", *args], timeout=timeout)
    assert res.ok, f"docker {' '.join(args)} failed:\n{res.tail()}"
    return res.output.strip()


def wait_ready(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - our container
                if resp.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} not ready after {seconds} s")


def test_stop_mid_run_loses_nothing(
    demo_images: dict[str, float], project_root: Path, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    net, api, tool = f"img-test-{suffix}", f"img-test-{suffix}-api", f"img-test-{suffix}-tool"
    results = tmp_path / "results"
    results.mkdir()
    spec_dir = project_root / "apis" / "demo-shop" / "specifications"
    docker("network", "create", "--label", LABEL, net)
    try:
        docker(
            "run",
            "-d",
            "--name",
            api,
            "--network",
            net,
            "--label",
            LABEL,
            "--cpus",
            "0.5",
            "-e",
            "COVERAGE_INTERVAL=1",
            "-v",
            f"{results}:/results",
            "llamaresttest/api-demo-shop",
        )
        ip = docker("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{net}").IPAddress}}}}', api)
        wait_ready(f"http://{ip}:9090/health", 60)
        docker(
            "run",
            "-d",
            "--name",
            tool,
            "--network",
            net,
            "--label",
            LABEL,
            "--cpus",
            "0.5",
            "-e",
            f"HOST={api}",
            "-e",
            "PORT=9090",
            "-e",
            "TIME_BUDGET=300",
            "-e",
            "CPUS=0.5",
            "-e",
            "SPEC=/specifications/demo-shop-openapi.json",
            "-v",
            f"{spec_dir}:/specifications:ro",
            "llamaresttest/tool-schemathesis",
        )
        time.sleep(15)
        assert docker("inspect", "-f", "{{.State.Running}}", tool) == "true"
        docker("stop", "-t", "10", tool)
        stopped_api_at = time.time()
        docker("stop", "-t", "10", api)
        tool_log = docker("logs", tool)
        api_log = docker("logs", api)
        assert docker("inspect", "-f", "{{.State.ExitCode}}", tool) == "0", tool_log[-2000:]
        assert docker("inspect", "-f", "{{.State.ExitCode}}", api) == "0", api_log[-2000:]
    finally:
        execute(["docker", "rm", "-f", tool, api], timeout=60)
        execute(["docker", "network", "rm", net], timeout=60)

    totals = re.findall(r"TOOL_REQUESTS sent=(\d+) answered=(\d+) runs=(\d+)", tool_log)
    assert len(totals) == 1, tool_log[-2000:]
    sent, answered, _ = (int(x) for x in totals[0])
    assert answered > 20
    # Clean shutdown: the WAL was checkpointed into the database file and removed (checked before
    # this test opens the database, which recreates it).
    assert not (results / "traffic.sqlite-wal").exists(), api_log[-3000:]
    rows = [(r["request_headers"], r["status"]) for r in traffic.read_all(results / "traffic.sqlite")]
    by_tool = [r for r in rows if "schemathesis/" in json.loads(r[0]).get("User-Agent", "")]
    # An answered request was recorded before the proxy forwarded it; a request can only be missing
    # from the database if the tool was stopped while sending it (at most one per worker).
    assert answered <= len(by_tool) <= sent
    assert sent - answered <= 1
    assert all(status is not None for _, status in by_tool)

    with (results / "coverage" / "series.csv").open(newline="") as f:
        samples = list(csv.DictReader(f))
    epochs = [float(s["epoch"]) for s in samples]
    gaps = [b - a for a, b in itertools.pairwise(epochs)]
    assert len(samples) >= 15
    assert max(gaps) <= 1.75, gaps
    assert epochs[-1] >= stopped_api_at - 0.5, "no final sample at stop"
    order = [m for m in ("stopping proxy", "final coverage sample", "stopping service") if m in api_log]
    assert order == ["stopping proxy", "final coverage sample", "stopping service"], api_log[-2000:]
    assert (
        api_log.index("stopping proxy")
        < api_log.index("final coverage sample")
        < api_log.index("stopping service")
    )
