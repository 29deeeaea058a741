"""Cluster mode end to end on a real Ray cluster (tests/cluster/conftest.py) with the runner's fixture
images: runs spread over nodes of different sizes, a node lost mid-run, a request no node fits, the
driver killed and resumed, images pulled from a registry by the node."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.cluster.conftest import RayCluster, attempts, cluster_cli, cluster_spawn
from tests.runner.conftest import journal_rows, labelled, only_batch, read_json, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _args(catalog: Path, results: Path, label: str, cluster: RayCluster, *extra: str) -> list[str]:
    return [
        "run",
        "--ray",
        cluster.address,
        "--catalog",
        str(catalog),
        "--results",
        str(results),
        "--apis",
        "fx-echo",
        "--tools",
        "fx-good",
        "--cpus-per-container",
        "0.5",
        "--memory-per-container",
        "64m",
        "--min-free-cpus",
        "0",
        "--no-preflight",
        "--label",
        label,
        *extra,
    ]


def _exactly_once(batch: Path, runs: int) -> list[dict[str, object]]:
    """Every run succeeded with one committed attempt, whose folder is the one in the batch."""
    rows = journal_rows(batch)
    assert len(rows) == runs
    assert {r["status"] for r in rows} == {"succeeded"}, rows
    assert all(r["failures"] == 0 for r in rows), rows
    tries = attempts(batch)
    for row in rows:
        mine = [
            a
            for a in tries
            if (a["api"], a["tool"], a["repetition"]) == (row["api"], row["tool"], row["repetition"])
        ]
        committed = [a for a in mine if a["outcome"] == "committed"]
        assert len(committed) == 1, mine
        assert committed[0]["attempt"] == row["committed_attempt"] == row["attempts"]
        run_dir = batch / str(row["api"]) / str(row["tool"]) / f"run-{row['repetition']}"
        meta = read_json(run_dir / "metadata.json")
        assert meta["attempt"] == row["committed_attempt"] and meta["status"] == "succeeded"
        assert meta["node"] == committed[0]["node"]
        assert (run_dir / "summary.json").is_file()
    return tries


def test_a_batch_spreads_over_nodes_of_different_sizes(cluster, fixture_images, tmp_path, test_label):
    results = tmp_path / "results"
    res = cluster_cli(
        cluster,
        *_args(fixture_images, results, test_label, cluster, "--runs", "3", "--budget", "6s", "--no-build"),
    )
    assert res.returncode == 0, res.stdout + res.stderr
    batch = only_batch(results)
    tries = _exactly_once(batch, 3)
    ids = {w.name: w.node_id for w in cluster.workers.values()}
    used = {a["node"] for a in tries}
    assert used == {ids["big"], ids["small"]}, (used, ids)  # 3 at once: 2 on big, 1 on small
    starts = sorted(
        read_json(batch / "fx-echo" / "fx-good" / f"run-{n}" / "metadata.json")["start_utc"]
        for n in (1, 2, 3)
    )
    ends = sorted(
        read_json(batch / "fx-echo" / "fx-good" / f"run-{n}" / "metadata.json")["end_utc"] for n in (1, 2, 3)
    )
    assert starts[-1] < ends[0], "the cluster holds 3 experiments at once: all 3 ran together"
    status = json.loads(cluster_cli(cluster, "status", "--results", str(results), "--json").stdout)
    cl = status["cluster"]
    assert cl["dashboard"].startswith("http://127.0.0.1:")
    by_id = {n["node_id"]: n for n in cl["nodes"]}
    assert by_id[ids["big"]]["slots"] == 2 and by_id[ids["small"]]["slots"] == 1
    assert by_id[ids["big"]]["alive"] and by_id[ids["small"]]["alive"]
    assert sum(status["runs_per_node"].values()) == 3
    assert labelled(test_label) == ([], [])


def test_a_run_that_fits_no_node_is_refused_up_front(cluster, fixture_images, tmp_path, test_label):
    results = tmp_path / "results"
    start = time.monotonic()
    res = cluster_cli(
        cluster,
        *_args(fixture_images, results, test_label, cluster, "--no-build", "--cpus-per-container", "2"),
        timeout=120,
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert "no node of the cluster fits it (largest: 2 CPUs" in res.stderr, res.stderr
    assert "lower --cpus-per-container" in res.stderr
    assert time.monotonic() - start < 60
    assert not list(results.glob("batch-*/journal.sqlite"))


def test_a_node_lost_mid_run_is_requeued_and_runs_elsewhere_exactly_once(
    cluster, fixture_images, tmp_path, test_label
):
    results = tmp_path / "results"
    proc = cluster_spawn(
        cluster,
        *_args(fixture_images, results, test_label, cluster, "--runs", "3", "--budget", "15s", "--no-build"),
        log=tmp_path / "driver.log",
    )
    try:
        small = cluster.workers["small"].node_id
        batch = wait_for(
            lambda: next(iter(results.glob("batch-*/journal.sqlite")), None), 120, "the batch"
        ).parent

        # wait until small runs an experiment whose containers are up, then kill its raylet
        def small_running() -> bool:
            placed = [a for a in attempts(batch) if a["node"] == small and a["outcome"] == "running"]
            return bool(placed) and bool(labelled(f"llamaresttest.node={small}")[0])

        wait_for(small_running, 120, "an experiment on the small node")
        time.sleep(2)
        orphans = labelled(f"llamaresttest.node={small}")[0]
        assert orphans
        cluster.kill_worker("small")
        assert proc.wait(240) == 0, (tmp_path / "driver.log").read_text()
        # no container of the batch outlives it: the dead node's API container (its engine lives on,
        # as after a raylet crash) was removed by the end-of-batch clean-up of the alive nodes
        assert labelled(test_label) == ([], [])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    tries = _exactly_once(batch, 3)
    lost = [a for a in tries if a["outcome"] == "lost"]
    assert len(lost) == 1 and lost[0]["node"] == small, tries
    big = cluster.workers["big"].node_id
    rerun = [
        a
        for a in tries
        if (a["api"], a["tool"], a["repetition"]) == (lost[0]["api"], lost[0]["tool"], lost[0]["repetition"])
        and a["outcome"] == "committed"
    ]
    assert rerun[0]["node"] == big and rerun[0]["attempt"] == lost[0]["attempt"] + 1
    # the dead node's containers kept running; the next attempt on this engine removed them
    assert labelled(f"llamaresttest.node={small}") == ([], [])
    log = (batch / "runner.log").read_text()
    assert "node lost (NodeDiedError)" in log
    assert all(r["failures"] == 0 for r in journal_rows(batch))


def test_the_driver_killed_then_resumed_runs_everything_exactly_once(
    cluster, fixture_images, tmp_path, test_label
):
    results = tmp_path / "results"
    log = tmp_path / "driver-1.log"
    proc = cluster_spawn(
        cluster,
        *_args(fixture_images, results, test_label, cluster, "--runs", "4", "--budget", "12s", "--no-build"),
        log=log,
    )
    try:
        batch = wait_for(
            lambda: next(iter(results.glob("batch-*/journal.sqlite")), None), 120, "the batch"
        ).parent
        wait_for(
            lambda: len([a for a in attempts(batch) if a["outcome"] == "running" and a["node"]]) >= 2,
            120,
            "two placed attempts",
        )
        time.sleep(2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = {(r["repetition"], r["status"]) for r in journal_rows(batch)}
    assert ("fx-echo", "running") not in before
    res = cluster_cli(
        cluster,
        *_args(fixture_images, results, test_label, cluster, "--batch", batch.name, "--no-build"),
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    tries = _exactly_once(batch, 4)
    assert any(a["outcome"] == "abandoned" for a in tries), tries  # the killed driver's attempts
    assert labelled(test_label) == ([], [])


def test_a_node_pulls_the_images_it_did_not_build_from_the_registry(
    cluster, fixture_images, registry, tmp_path, test_label
):
    """The driver builds and pushes (``run --registry`` without --no-build); the image is then taken
    off this engine, so the node that runs the experiment must pull it from the registry."""
    from remote_runner.common.process import execute
    from remote_runner.experiment import catalog as catalog_mod

    catalog = tmp_path / "catalog"
    shutil.copytree(fixture_images, catalog, dirs_exist_ok=True)
    shutil.copytree(catalog / "apis" / "fx-echo", catalog / "apis" / "fx-pulled")
    specs = catalog / "apis" / "fx-pulled" / "specifications"
    (specs / "fx-echo-openapi.json").rename(specs / "fx-pulled-openapi.json")
    image = catalog_mod.load(catalog).apis["fx-pulled"].image
    prefix = registry.prefix(f"lrt-test-{os.getpid()}")
    remote = f"{prefix}/{image}"
    try:
        results = tmp_path / "results"
        args = _args(catalog, results, test_label, cluster, "--runs", "1", "--budget", "3s")
        args[args.index("fx-echo")] = "fx-pulled"
        first = cluster_cli(cluster, *args, "--registry", prefix)  # builds fx-pulled, pushes, runs
        assert first.returncode == 0, first.stdout + first.stderr
        assert f"pushing {image} to {remote}" in first.stderr
        # now the image exists only in the registry: a node that needs it must pull it
        assert execute(["docker", "rmi", "-f", image, remote], timeout=120).ok
        assert execute(["docker", "image", "inspect", image], timeout=60).ok is False
        second = cluster_cli(cluster, *args, "--registry", prefix, "--no-build")
        assert second.returncode == 0, second.stdout + second.stderr
        batch = sorted(results.glob("batch-*"))[-1]
        _exactly_once(batch, 1)
        meta = read_json(batch / "fx-pulled" / "fx-good" / "run-1" / "metadata.json")
        assert str(meta["image_ids"]["api"]).startswith("sha256:")  # type: ignore[index]
        assert execute(["docker", "image", "inspect", remote], timeout=60).ok  # pulled by the node
        served = registry.served()
        assert f"/v2/{prefix.split('/', 1)[1]}/{image}/manifests/latest" in served.replace('"', " ")
    finally:  # the pushed tags of both images, and the rebuilt-later plain API image
        tool_remote = f"{prefix}/{catalog_mod.load(catalog).tools['fx-good'].image}"
        execute(["docker", "rmi", "-f", image, remote, tool_remote], timeout=120)
