"""The runner end to end on the real Docker engine with the fixture images (limits scaled down)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.runner.conftest import (
    FIXTURES,
    TEST_LABEL,
    cli,
    journal_events,
    journal_rows,
    labelled,
    only_batch,
    read_json,
    spawn,
    terminate,
    wait_for,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def common(catalog: Path, results: Path, label: str, *extra: str) -> list[str]:
    return [
        "run",
        "--no-preflight",
        "--catalog",
        str(catalog),
        "--results",
        str(results),
        "--min-free-cpus",
        "0",
        "--label",
        label,
        "--no-build",
        *extra,
    ]


def test_batch_completes_with_pinned_cpus_and_the_container_contract(fixture_images, tmp_path, test_label):
    results = tmp_path / "results"
    # 1 whole CPU per container: an experiment holds both CPUs of this machine, as concrete cpusets,
    # so the two runs go one after the other
    res = cli(
        *common(
            fixture_images,
            results,
            test_label,
            "--apis",
            "fx-echo",
            "--tools",
            "fx-good",
            "--runs",
            "2",
            "--budget",
            "3s",
            "--cpus-per-container",
            "1",
            "--memory-per-container",
            "128m",
        )
    )
    assert res.returncode == 0, res.stderr
    batch = only_batch(results)
    assert batch.name.startswith("batch-") and batch.name.endswith("Z")
    rows = journal_rows(batch)
    assert [(r["repetition"], r["status"], r["attempts"], r["failures"]) for r in rows] == [
        (1, "succeeded", 1, 0),
        (2, "succeeded", 1, 0),
    ]
    spans = []
    for n in (1, 2):
        run_dir = batch / "fx-echo" / "fx-good" / f"run-{n}"
        meta = read_json(run_dir / "metadata.json")
        assert meta["status"] == "succeeded" and meta["stopped_by"] == "budget"
        assert meta["cpuset"] == {"api": "0", "tool": "1"}
        assert meta["oom_killed"] == {"api": False, "tool": False}
        assert str(meta["image_ids"]["api"]).startswith("sha256:")  # type: ignore[index]
        assert meta["start_utc"].endswith("Z") and meta["end_utc"].endswith("Z")  # type: ignore[union-attr]
        tool_log = (run_dir / "logs" / "tool.log").read_text()
        assert (
            "tool: env ok" in tool_log and "tool: spec ok" in tool_log and "tool: spec read-only" in tool_log
        )
        assert "tool: affinity 1\n" in tool_log, tool_log  # --cpuset-cpus really applied
        assert "tool: stopped after" in tool_log  # stopped at the budget's end by SIGTERM
        # API env contract and the /results mount; stopped with a grace period so it could flush
        assert (run_dir / "api-started").read_text().split() == ["fx-echo", "fx-good", str(n), "3"]
        assert (run_dir / "stopped-gracefully").is_file()
        spans.append((meta["start_utc"], meta["end_utc"]))
    assert spans[0][1] <= spans[1][0], "two experiments of 2 CPUs each overlapped on a 2-CPU machine"
    plan = read_json(batch / "plan.json")
    assert len(plan["runs"]) == 2 and plan["settings"]["budget_seconds"] == 3.0  # type: ignore[index,arg-type]
    assert (batch / "runner.log").read_text().count("succeeded") >= 2
    assert labelled(test_label) == ([], [])
    status = cli("status", "--results", str(results), "--json")
    assert status.returncode == 0, status.stderr
    assert '"succeeded": 2' in status.stdout and '"finished": true' in status.stdout


def test_failures_are_recorded_with_their_reason_and_retried(fixture_images, tmp_path, test_label):
    results = tmp_path / "results"
    res = cli(
        *common(
            fixture_images,
            results,
            test_label,
            "--apis",
            "fx-echo,fx-never-ready",
            "--tools",
            "fx-good,fx-crash,fx-hog",
            "--budget",
            "6s",
            "--cpus-per-container",
            "0.25",
            "--memory-per-container",
            "64m",
            "--max-attempts",
            "2",
        ),
        timeout=200,
    )
    assert res.returncode == 3, res.stderr  # done with failed runs (remote_runner.common.exit_codes)
    batch = only_batch(results)
    rows = {(r["api"], r["tool"]): r for r in journal_rows(batch)}
    assert rows[("fx-echo", "fx-good")]["status"] == "succeeded"
    expected = {
        ("fx-echo", "fx-crash"): "tool crashed (exit 3)",
        ("fx-echo", "fx-hog"): "tool out of memory",
        ("fx-never-ready", "fx-good"): "api not ready after 3 s",
        ("fx-never-ready", "fx-crash"): "api not ready after 3 s",
        ("fx-never-ready", "fx-hog"): "api not ready after 3 s",
    }
    for pair, reason in expected.items():
        row = rows[pair]
        assert (row["status"], row["reason"], row["failures"], row["attempts"]) == ("failed", reason, 2, 2), (
            row
        )
        run_dir = batch / pair[0] / pair[1] / "run-1"
        first = run_dir / "attempts" / "attempt-1"
        assert (
            read_json(first / "metadata.json")["reason"] == reason
        )  # the earlier attempt, moved aside whole
        assert read_json(run_dir / "metadata.json")["attempt"] == 2
    hog = read_json(batch / "fx-echo" / "fx-hog" / "run-1" / "metadata.json")
    assert hog["oom_killed"] == {"api": False, "tool": True} and hog["exit_codes"]["tool"] == 137  # type: ignore[index]
    assert labelled(test_label) == ([], [])


def test_kill_9_then_resume_runs_everything_exactly_once(fixture_images, tmp_path, test_label):
    results = tmp_path / "results"
    # 0.5 CPU per container: two experiments at a time on this 2-CPU machine
    args = common(
        fixture_images,
        results,
        test_label,
        "--apis",
        "fx-echo",
        "--tools",
        "fx-good",
        "--runs",
        "4",
        "--budget",
        "3s",
        "--cpus-per-container",
        "0.5",
        "--memory-per-container",
        "96m",
    )
    proc = spawn(*args, log=tmp_path / "first.log")
    try:
        batch = wait_for(
            lambda: next(iter(sorted(results.glob("batch-*/journal.sqlite"))), None), 60, "a batch"
        )
        batch = batch.parent

        def mid_batch() -> bool:
            states = [r["status"] for r in journal_rows(batch)]
            running = labelled(test_label)[0]
            return "succeeded" in states and "running" in states and len(running) >= 2

        wait_for(mid_batch, 90, "one run done and another running")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        terminate(proc)
    orphans, _ = labelled(test_label)
    assert orphans, "the kill left no container behind: the resume below would prove nothing"
    killed = {(r["repetition"]) for r in journal_rows(batch) if r["status"] == "running"}
    assert killed
    res = cli("run", "--results", str(results), "--batch", batch.name, "--no-build", timeout=180)
    assert res.returncode == 0, res.stderr
    rows = journal_rows(batch)
    assert [r["status"] for r in rows] == ["succeeded"] * 4
    assert all(r["failures"] == 0 for r in rows), rows  # an interruption is not a failed attempt
    succeeded = [e["repetition"] for e in journal_events(batch) if e["event"] == "succeeded"]
    assert sorted(succeeded) == [1, 2, 3, 4], succeeded  # each run done exactly once
    for rep in killed:
        run_dir = batch / "fx-echo" / "fx-good" / f"run-{rep}"
        assert (run_dir / "attempts" / "attempt-1").is_dir()  # the cut-short attempt, moved aside
        assert read_json(run_dir / "metadata.json")["attempt"] == 2
    assert "orphan containers" in (batch / "runner.log").read_text()
    assert labelled(test_label) == ([], [])


def test_sigterm_stops_cleanly_within_30_s_and_resume_finishes(fixture_images, tmp_path, test_label):
    results = tmp_path / "results"
    args = common(
        fixture_images,
        results,
        test_label,
        "--apis",
        "fx-echo",
        "--tools",
        "fx-good",
        "--runs",
        "2",
        "--budget",
        "6s",
        "--cpus-per-container",
        "0.25",
        "--memory-per-container",
        "96m",
    )
    proc = spawn(*args, log=tmp_path / "first.log")
    try:

        def tools_running() -> bool:
            return len(labelled(test_label)[0]) == 4  # 2 experiments x (api + tool)

        wait_for(tools_running, 90, "both experiments' tools running")
        batch = only_batch(results)
        sent = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(30)
        took = time.monotonic() - sent
    finally:
        terminate(proc)
    assert code == 143, (tmp_path / "first.log").read_text()
    assert took < 30
    rows = journal_rows(batch)
    assert [r["status"] for r in rows] == ["interrupted", "interrupted"]
    assert labelled(test_label) == ([], [])
    for rep in (1, 2):  # the API was stopped with its grace period
        assert (batch / "fx-echo" / "fx-good" / f"run-{rep}" / "stopped-gracefully").is_file()
    res = cli("run", "--results", str(results), "--batch", batch.name, "--no-build", timeout=120)
    assert res.returncode == 0, res.stderr
    rows = journal_rows(batch)
    assert [(r["status"], r["attempts"], r["failures"]) for r in rows] == [("succeeded", 2, 0)] * 2
    assert labelled(test_label) == ([], [])


def test_bad_input_is_refused_with_every_problem_at_once(fixture_images, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    res = cli(
        "run",
        "--catalog",
        str(fixture_images),
        "--results",
        str(blocker / "results"),
        "--apis",
        "fx-echo,nope",
        "--tools",
        "fx-good,zap",
        "--budget",
        "soon",
        "--cpus-per-container",
        "64",
        "--memory-per-container",
        "1000g",
        "--no-build",
    )
    assert res.returncode == 2
    err = res.stderr
    assert "unknown API 'nope'; known: fx-echo, fx-never-ready, fx-spec-in-image" in err
    assert "unknown tool 'zap'; known: fx-crash, fx-good, fx-hog" in err
    assert "budget_seconds: not a duration: 'soon'" in err
    assert "an experiment needs 128 CPUs" in err
    assert "GiB (2 containers x --memory-per-container 1000g)" in err
    assert "is not writable" in err
    assert not list(tmp_path.glob("**/batch-*"))


def test_no_docker_engine_is_refused_before_anything_starts(tmp_path):
    import subprocess
    import sys

    from tests.runner.conftest import ROOT, runner_env

    env = runner_env()
    env["DOCKER_HOST"] = f"unix://{tmp_path}/no-engine.sock"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "remote_runner",
            "run",
            "--catalog",
            str(FIXTURES / "catalog"),
            "--results",
            str(tmp_path / "r"),
            "--cpus-per-container",
            "0.25",
            "--memory-per-container",
            "64m",
            "--min-free-cpus",
            "0",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 2
    assert "no Docker engine answers" in res.stderr
    assert not list((tmp_path / "r").glob("batch-*"))


def test_failed_build_names_the_image_and_shows_its_log(fixture_images, tmp_path):
    res = cli("build", "--catalog", str(FIXTURES / "broken"), timeout=300)
    assert res.returncode == 1
    assert "building llamaresttest/tool-fx-broken from" in res.stderr
    assert "fixture: this build fails on purpose" in res.stderr
    # the failed step's container is removed too (the fixture base image carries the test label)
    assert labelled(f"{TEST_LABEL}=runner") == ([], [])


def test_config_file_batch_is_created_then_resumed_as_the_systemd_unit_does(
    fixture_images, tmp_path, test_label
):
    import json

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    config = bundle / "experiment.json"
    key, value = test_label.split("=", 1)
    config.write_text(
        json.dumps(
            {
                "catalog": str(fixture_images),
                "results": "results",
                "batch": "batch-from-config",
                "apis": ["fx-echo"],
                "tools": ["fx-good"],
                "runs": 1,
                "budget_seconds": 2,
                "cpus_per_container": 0.25,
                "memory_per_container": "96m",
                "min_free_cpus": 0,
                "max_attempts": 2,
                "labels": {key: value},
                "build": False,
                "preflight": False,
                "upload": None,
                "shutdown_when_done": False,
            }
        )
    )
    first = cli("run", "--config", str(config))
    assert first.returncode == 0, first.stderr
    batch = bundle / "results" / "batch-from-config"  # relative paths: relative to the config file
    assert [(r["status"], r["attempts"]) for r in journal_rows(batch)] == [("succeeded", 1)]
    again = cli("run", "--config", str(config))  # after a reboot: the same command resumes, nothing re-runs
    assert again.returncode == 0, again.stderr
    assert [(r["status"], r["attempts"]) for r in journal_rows(batch)] == [("succeeded", 1)]
    assert [e["event"] for e in journal_events(batch)].count("started") == 1
    assert "resuming batch batch-from-config" in (batch / "runner.log").read_text()
    assert labelled(test_label) == ([], [])


def test_runner_inside_a_container_probes_readiness_over_the_experiment_network(
    fixture_images, tmp_path, test_label
):
    """The runner in a container with the Docker socket mounted (no host port published): it joins
    each experiment's network to reach the API, and leaves it so the network can be removed."""
    import subprocess

    from tests.runner.conftest import ROOT, runner_env

    results = tmp_path / "results"
    results.mkdir()
    site = ROOT / ".venv" / "lib" / "python3.11" / "site-packages"  # psutil for the container's python 3.11
    # the engine the test talks to (DOCKER_HOST when set), mounted where the container's client looks
    socket = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")
    # a network of the test's own: the default bridge (docker0) can vanish while another engine runs
    network = f"lrt-test-runner-{tmp_path.name}"[:60]
    made = subprocess.run(
        ["docker", "network", "create", "--label", test_label, network],
        env=runner_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    try:
        res = _run_runner_container(fixture_images, results, test_label, network, socket, site)
    finally:
        rm = ["docker", "network", "rm", network]
        subprocess.run(rm, env=runner_env(), capture_output=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    batch = only_batch(results)
    meta = read_json(batch / "fx-echo" / "fx-good" / "run-1" / "metadata.json")
    assert meta["status"] == "succeeded" and "ready_after_seconds" in meta
    assert "could not remove network" not in (batch / "runner.log").read_text()


def _run_runner_container(
    fixture_images: Path, results: Path, test_label: str, network: str, socket: str, site: Path
) -> subprocess.CompletedProcess[str]:
    import subprocess

    from tests.runner.conftest import BASE_IMAGE, ROOT, runner_env

    return subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--label",
            test_label,
            "--network",
            network,
            "-v",
            f"{socket}:/var/run/docker.sock",
            "-v",
            "/usr/bin/docker:/usr/bin/docker:ro",
            "-v",
            f"{ROOT}:{ROOT}:ro",
            "-v",
            f"{results}:{results}",  # same path: the engine mounts run folders
            "-w",
            str(ROOT),
            "-e",
            f"PYTHONPATH={ROOT}:{site}",
            BASE_IMAGE,
            "python3",
            "-m",
            "remote_runner",
            *common(
                fixture_images,
                results,
                test_label,
                "--apis",
                "fx-echo",
                "--tools",
                "fx-good",
                "--budget",
                "2s",
                "--cpus-per-container",
                "0.25",
                "--memory-per-container",
                "96m",
            ),
        ],
        env=runner_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert labelled(test_label) == ([], [])


def test_a_spec_found_only_in_the_image_is_copied_into_the_batch_and_given_to_the_tool(
    fixture_images, tmp_path, test_label
):
    import hashlib
    import json

    assert not (fixture_images / "apis" / "fx-spec-in-image" / "specifications").exists()
    results = tmp_path / "results"
    args = common(
        fixture_images,
        results,
        test_label,
        "--apis",
        "fx-spec-in-image,fx-echo",
        "--tools",
        "fx-good",
        "--budget",
        "2s",
        "--cpus-per-container",
        "0.25",
        "--memory-per-container",
        "96m",
    )
    res = cli(*args)
    assert res.returncode == 0, res.stderr
    batch = only_batch(results)
    assert [r["status"] for r in journal_rows(batch)] == ["succeeded", "succeeded"]
    # the batch keeps the specs it used: out of the image (the symbolic link followed), and the
    # catalog's file for fx-echo
    copy = batch / "specifications" / "fx-spec-in-image" / "fx-spec-in-image-openapi.json"
    assert json.loads(copy.read_text())["info"]["title"] == "fx-spec-in-image"
    echo_copy = batch / "specifications" / "fx-echo" / "fx-echo-openapi.json"
    assert (
        echo_copy.read_bytes()
        == (fixture_images / "apis" / "fx-echo" / "specifications" / echo_copy.name).read_bytes()
    )
    assert sorted(p.name for p in (batch / "specifications").rglob("*")) == sorted(
        ["fx-spec-in-image", "fx-echo", copy.name, echo_copy.name]
    )
    run_dir = batch / "fx-spec-in-image" / "fx-good" / "run-1"
    tool_log = (run_dir / "logs" / "tool.log").read_text()
    digest = hashlib.sha256(copy.read_bytes()).hexdigest()
    assert f"tool: spec /specifications/{copy.name} sha256 {digest}" in tool_log, tool_log
    assert "tool: spec read-only" in tool_log
    summary = read_json(run_dir / "summary.json")
    assert summary["spec"] == str(copy) and summary["operations"]["total"] == 1  # type: ignore[index]
    assert labelled(test_label) == ([], [])  # the container used for copying is gone too
    # resuming keeps the batch's copy, even when it differs from what the image holds now
    copy.write_text(copy.read_text().replace("fx-spec-in-image", "kept-on-resume"))
    again = cli("run", "--results", str(results), "--batch", batch.name, "--no-build")
    assert again.returncode == 0, again.stderr
    assert "kept-on-resume" in copy.read_text()
    assert [p.name for p in copy.parent.iterdir()] == [copy.name]


def test_a_spec_the_image_does_not_hold_refuses_the_start_naming_api_image_and_path(
    fixture_images, tmp_path, test_label
):
    import shutil

    catalog = tmp_path / "catalog"
    api = catalog / "apis" / "fx-spec-in-image"  # same name: the fixture image is used
    api.mkdir(parents=True)
    shutil.copy(fixture_images / "apis" / "fx-spec-in-image" / "Dockerfile", api / "Dockerfile")
    (api / "api.toml").write_text('spec_in_image = "/nowhere/fx-openapi.json"\n')
    shutil.copytree(fixture_images / "tools" / "fx-good", catalog / "tools" / "fx-good")
    results = tmp_path / "results"
    res = cli(
        *common(
            catalog,
            results,
            test_label,
            "--budget",
            "2s",
            "--cpus-per-container",
            "0.25",
            "--memory-per-container",
            "96m",
        )
    )
    assert res.returncode == 2, res.stderr
    assert (
        "API fx-spec-in-image: cannot copy its spec /nowhere/fx-openapi.json out of image "
        "llamaresttest/api-fx-spec-in-image" in res.stderr
    ), res.stderr
    assert not list(results.glob("batch-*")), "nothing started, no batch folder left behind"
    assert labelled(test_label) == ([], [])
