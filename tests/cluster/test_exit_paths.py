"""Cluster mode's exit paths on a real Ray cluster (tests/cluster/conftest.py) against a stand-in of
the Compute API and the metadata server (tests/google_standin.py), to which the runner is pointed by
their conventional variables. For each path: the worker group's size at the end, whether the head
powered off (a ``systemctl`` stand-in first on the driver's PATH records it), and "VM-minutes billed
after the last run" printed: the group's size integrated from the last run's end to the test's end
(0 apart from the release's own seconds and the documented waits).

The driver's own Docker engine refuses to run containers here (a ``docker`` first on its PATH that
refuses ``run``/``create``/``start``, as a 4-vCPU head refuses ``--cpus 8``): every smoke run and
every real run must go to the workers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from remote_runner.common.process import execute
from remote_runner.experiment import catalog as catalog_mod
from tests.cluster.conftest import RayCluster, attempts, cluster_cli, cluster_spawn
from tests.google_standin import GROUP, GROUP_PATH, PROJECT, ZONE, Standin, google_standin
from tests.runner.conftest import journal_rows, labelled, only_batch, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]

RECORDED = Path(__file__).parent / "fixtures" / "fx-recorded"
GROUP_SETTINGS = {"project": PROJECT, "zone": ZONE, "name": GROUP}

DRIVER_DOCKER = """#!/bin/sh
# The driver's engine runs no experiment: it refuses what would start a container.
case "$1" in
  run|create|start) echo "$*" >> "{log}"
    echo "docker: Error response from daemon: the driver's engine runs no experiment (test)" >&2
    exit 125 ;;
esac
exec /usr/bin/docker "$@"
"""
SYSTEMCTL = """#!/bin/sh
echo "$*" >> "{log}"
"""


class Head:
    """The driver's machine as the tests shape it: its PATH, its config file, what it was asked."""

    def __init__(self, tmp: Path, cluster: RayCluster, google: Standin, **settings: object) -> None:
        self.bin = tmp / "head-bin"
        self.bin.mkdir()
        self.docker_log, self.systemctl_log = tmp / "driver-docker.log", tmp / "systemctl.log"
        for name, text, log in (
            ("docker", DRIVER_DOCKER, self.docker_log),
            ("systemctl", SYSTEMCTL, self.systemctl_log),
        ):
            path = self.bin / name
            path.write_text(text.format(log=log), encoding="utf-8")
            path.chmod(path.stat().st_mode | stat.S_IXUSR)
        self.config = tmp / "experiment.json"
        doc = {
            "worker_group": GROUP_SETTINGS,
            "shutdown_when_done": True,
            **settings,
        }
        self.config.write_text(json.dumps(doc), encoding="utf-8")
        self.env = {**cluster.env, **google.env()}
        self.env["PATH"] = f"{self.bin}:{self.env['PATH']}"
        self.cluster = RayCluster(cluster.address, cluster.workers, self.env)

    def powered_off(self) -> bool:
        return self.systemctl_log.is_file() and "poweroff" in self.systemctl_log.read_text()

    def refused(self) -> list[str]:
        return self.docker_log.read_text().splitlines() if self.docker_log.is_file() else []


def _args(
    catalog: Path, results: Path, label: str, head: Head, *extra: str, api: str = "fx-echo"
) -> list[str]:
    return [
        "run",
        "--config",
        str(head.config),
        "--ray",
        head.cluster.address,
        "--catalog",
        str(catalog),
        "--results",
        str(results),
        "--apis",
        api,
        "--cpus-per-container",
        "0.5",
        "--memory-per-container",
        "64m",
        "--min-free-cpus",
        "0",
        "--label",
        label,
        *extra,
    ]


def _last_run_end(batch: Path) -> float:
    ends = [float(a["ended"]) for a in attempts(batch) if a["ended"]]
    assert ends, "no attempt ended"
    return max(ends)


def _billed_after(google: Standin, since: float, what: str) -> float:
    minutes = google.vm_minutes_after(since)
    print(
        f"\n[{what}] worker group at {google.sizes[GROUP_PATH]}; VM-minutes billed after the last run: "
        f"{minutes:.2f}"
    )
    return minutes


def test_smoke_runs_and_runs_go_to_workers_and_the_group_goes_before_the_report(
    cluster, fixture_images, tmp_path, test_label
):
    """Normal end with a resize refused once (403 then 200): preflight on the workers in parallel
    (the driver's engine refuses every container), every run on a worker, the group released before
    the report is built, then the head powers off."""
    catalog = tmp_path / "catalog"
    shutil.copytree(fixture_images, catalog, dirs_exist_ok=True)
    shutil.copytree(RECORDED, catalog / "apis" / "fx-recorded")
    image = catalog_mod.load(catalog).apis["fx-recorded"].image
    with google_standin(size=0, names=[f"lrt-{n}" for n in cluster.workers]) as google:  # created at 0
        google.zero_failures = [403]
        head = Head(tmp_path, cluster, google, worker_group={**GROUP_SETTINGS, "size": 3, "slots": 1})
        results = tmp_path / "results"
        res = cluster_cli(
            head.cluster,
            *_args(
                catalog,
                results,
                test_label,
                head,
                "--tools",
                "fx-good",
                "--runs",
                "2",
                "--budget",
                "5s",
                "--preflight-seconds",
                "4",
                api="fx-recorded",  # built here (the driver's engine may build, never run)
            ),
            timeout=400,
        )
        execute(["docker", "rmi", "-f", image], timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        batch = only_batch(results)
        assert head.refused() == [], "the driver's engine was asked to start a container"
        smoke = json.loads((batch / "preflight" / "fx-recorded" / "metadata.json").read_text())
        workers = {w.node_id for w in cluster.workers.values()}
        assert smoke["node"] in workers and smoke["status"] == "succeeded"
        assert "all 1 APIs passed" in (batch / "preflight" / "report.txt").read_text()
        assert {a["node"] for a in attempts(batch)} <= workers
        assert {r["status"] for r in journal_rows(batch)} == {"succeeded"}
        log = (batch / "runner.log").read_text()
        assert f"group {GROUP} released to 0" in log
        assert "try 1:" in log and "403" in log  # the refused first try, retried
        # asked for what the batch can use (2 runs, 1 slot a worker, at most 3) once the images were
        # pushed, then released; in between a worker that held no run may have gone (scale-in), never
        # one that ran an attempt
        sizes = [size for _t, _g, size in google.history]
        assert sizes[:2] == [0, 2] and sizes[-1] == 0 and sizes in ([0, 2, 0], [0, 2, 1, 0]), sizes
        ran_on = {
            f"lrt-{n}"
            for n, w in cluster.workers.items()
            if w.node_id in {a["node"] for a in attempts(batch)}
        }
        assert not set(google.deleted) & ran_on
        resized_at = google.history[-1][0]
        assert resized_at <= (batch / "report.md").stat().st_mtime, "the group goes before the report"
        assert google.sizes[GROUP_PATH] == 0 and head.powered_off()
        assert _billed_after(google, _last_run_end(batch), "normal end, 403 then 200") < 2.0
        status = json.loads(cluster_cli(head.cluster, "status", "--results", str(results), "--json").stdout)
        assert status["workers"]["state"] == "released"
        assert labelled(test_label) == ([], [])


def test_failed_runs_and_a_group_that_never_releases_keep_the_head_up(
    cluster, fixture_images, tmp_path, test_label
):
    """Runs that fail, then a resize refused every time: the driver retries for worker_release_seconds,
    then exits 9 with the head up (no power-off), and status and the log say so."""
    with google_standin(size=2) as google:
        google.refuse_always = 403
        head = Head(tmp_path, cluster, google, worker_release_seconds=5)
        results = tmp_path / "results"
        res = cluster_cli(
            head.cluster,
            *_args(
                fixture_images,
                results,
                test_label,
                head,
                "--tools",
                "fx-crash",
                "--runs",
                "1",
                "--budget",
                "4s",
                "--no-preflight",
                "--no-build",
                "--max-attempts",
                "1",
            ),
            timeout=300,
        )
        assert res.returncode == 9, res.stdout + res.stderr
        assert "the head stays up" in res.stderr
        batch = only_batch(results)
        assert google.sizes[GROUP_PATH] == 2 and len(google.resizes()) >= 2
        assert not head.powered_off()
        log = (batch / "runner.log").read_text()
        assert f"group {GROUP} NOT released" in log and "gcloud compute instance-groups managed resize" in log
        assert "power off: no (the worker group does not read 0 yet" in log
        text = cluster_cli(head.cluster, "status", "--results", str(results), "--once").stdout
        assert "workers: group" in text and "NOT released" in text
        billed = _billed_after(google, _last_run_end(batch), "resize always 403")
        assert billed > 0  # the stand-in's group still bills: the head is up to say so


def test_no_worker_ever_joins_the_group_is_released_and_the_head_powers_off(
    cluster, fixture_images, tmp_path, test_label
):
    with google_standin(size=2) as google:
        for name in cluster.workers:
            cluster.kill_worker(name)
        wait_for(lambda: not cluster.alive_ids(), 90, "both workers dead")
        head = Head(tmp_path, cluster, google, worker_wait_seconds=8)
        results = tmp_path / "results"
        started = time.time()
        res = cluster_cli(
            head.cluster,
            *_args(fixture_images, results, test_label, head, "--tools", "fx-good", "--no-build"),
            timeout=300,
        )
        assert res.returncode == 8, res.stdout + res.stderr
        assert "no worker joined within worker_wait_seconds (8 s)" in res.stderr
        assert google.sizes[GROUP_PATH] == 0 and head.powered_off()
        batch = only_batch(results)
        assert not (batch / "plan.json").exists()
        log = (batch / "runner.log").read_text()
        assert "0 of 2 workers joined, waiting 0 min" in log
        gave_up = started + 8
        # billed after the give-up (the documented wait itself is the operator's choice)
        assert _billed_after(google, gave_up, "no worker joins") < 1.0


def test_the_head_stopped_mid_batch_releases_the_group_in_its_shutdown_script(
    cluster, fixture_images, tmp_path, test_label
):
    """maxRunHours or a manual stop: systemd stops the runner (SIGTERM; it does not release: a
    redeploy restarts it the same way), then GCE runs the shutdown script, whose release-workers call
    resizes the group to 0."""
    with google_standin(size=2) as google:
        head = Head(tmp_path, cluster, google)
        results = tmp_path / "results"
        proc = cluster_spawn(
            head.cluster,
            *_args(
                fixture_images,
                results,
                test_label,
                head,
                "--tools",
                "fx-good",
                "--runs",
                "2",
                "--budget",
                "30s",
                "--no-preflight",
                "--no-build",
            ),
            log=tmp_path / "driver.log",
        )
        try:
            batch = wait_for(
                lambda: next(iter(results.glob("batch-*/journal.sqlite")), None), 120, "batch"
            ).parent
            wait_for(lambda: any(a["node"] for a in attempts(batch)), 120, "a placed attempt")
            time.sleep(2)
            os.killpg(proc.pid, signal.SIGTERM)
            assert proc.wait(120) == 143, (tmp_path / "driver.log").read_text()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        stopped = time.time()
        assert google.sizes[GROUP_PATH] == 2  # the runner alone never releases on SIGTERM
        res = cluster_cli(head.cluster, "release-workers", "--config", str(head.config), "--budget", "30")
        assert res.returncode == 0, res.stdout + res.stderr
        assert google.sizes[GROUP_PATH] == 0 and "at 0" in res.stderr
        assert _billed_after(google, stopped, "head stopped mid-batch") < 1.0
        # a settings file without a group: nothing to do, and says so
        bare = tmp_path / "bare.json"
        bare.write_text("{}", encoding="utf-8")
        res = cluster_cli(head.cluster, "release-workers", "--config", str(bare))
        assert res.returncode == 0 and "nothing to release" in res.stderr
        with sqlite3.connect(batch / "journal.sqlite") as db:
            assert db.execute(
                "SELECT COUNT(*) FROM runs WHERE status='interrupted' OR status='pending'"
            ).fetchone()[0]


def test_a_batch_stopped_by_the_cost_cap_exits_with_its_own_code_and_releases_the_group(
    cluster, fixture_images, tmp_path, test_label
):
    """maxCostUsd: workers at $36/h each (a cent a second, so the cap bites within seconds), two of
    them asked for, runs of 4 s ($0.04 each): the runs the cap pays for run, then the batch stops with
    exit 10, the group released, status showing the spend."""
    with google_standin(size=0, names=[f"lrt-{n}" for n in cluster.workers]) as google:
        head = Head(
            tmp_path,
            cluster,
            google,
            worker_group={**GROUP_SETTINGS, "size": 2, "slots": 1},
            max_cost_usd=0.3,
            cost_rates={"head_usd_per_hour": 0.0, "worker_usd_per_hour": 36.0},
        )
        results = tmp_path / "results"
        res = cluster_cli(
            head.cluster,
            *_args(
                fixture_images,
                results,
                test_label,
                head,
                "--tools",
                "fx-good",
                "--runs",
                "8",
                "--budget",
                "4s",
                "--no-preflight",
                "--no-build",
            ),
            timeout=400,
        )
        assert res.returncode == 10, res.stdout + res.stderr
        assert "cost cap reached: $" in res.stderr and "raise the cap and resume" in res.stderr
        batch = only_batch(results)
        statuses = [r["status"] for r in journal_rows(batch)]
        done = statuses.count("succeeded")
        assert 0 < done < 8 and statuses.count("pending") == 8 - done, statuses
        assert google.sizes[GROUP_PATH] == 0 and [s for _t, _g, s in google.history][:2] == [0, 2]
        doc = json.loads((batch / "spend.json").read_text())
        assert doc["cap_usd"] == 0.3 and doc["spent_usd"] > 0.25 and doc["runs_left"] == 8 - done
        text = cluster_cli(head.cluster, "status", "--results", str(results), "--once").stdout
        assert "spend: $" in text and "of a $0.30 cap (maxCostUsd)" in text
        print(f"\n[cost cap $0.30] {done} of 8 runs, spent ${doc['spent_usd']:.2f}; group at 0")
        assert labelled(test_label) == ([], [])


def test_once_nothing_is_pending_idle_workers_go_and_the_busy_one_stays(
    cluster, fixture_images, tmp_path, test_label
):
    """One run on a group of two: once it is placed nothing is pending, so the worker that holds no
    run is deleted from the group (its size 2 -> 1) while the busy one finishes; then the release."""
    names = [f"lrt-{n}" for n in cluster.workers]
    with google_standin(size=2, names=names) as google:
        head = Head(tmp_path, cluster, google, worker_group={**GROUP_SETTINGS, "size": 2, "slots": 1})
        results = tmp_path / "results"
        res = cluster_cli(
            head.cluster,
            *_args(
                fixture_images,
                results,
                test_label,
                head,
                "--tools",
                "fx-good",
                "--runs",
                "1",
                "--budget",
                "10s",
                "--no-preflight",
                "--no-build",
            ),
            timeout=300,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        batch = only_batch(results)
        (attempt,) = attempts(batch)
        busy = next(f"lrt-{n}" for n, w in cluster.workers.items() if w.node_id == attempt["node"])
        assert google.deleted == [n for n in names if n != busy]
        assert [s for _t, _g, s in google.history] == [2, 1, 0]
        scaled_at = google.history[1][0]
        assert scaled_at < _last_run_end(batch), "the idle worker went while the run was still running"
        log = (batch / "runner.log").read_text()
        assert "scaled in to 1: nothing is pending" in log
        _billed_after(google, _last_run_end(batch), "scale-in, then release")


def test_runs_are_summarised_where_they_ran_and_their_traffic_stays_in_the_bucket(
    cluster, fixture_images, tmp_path, test_label, monkeypatch
):
    """With an upload configured, a node summarises its run in a process of its own, uploads the
    whole folder (the GCS emulator here, which the driver's STORAGE_EMULATOR_HOST points the nodes
    at), and hands the driver the folder without its traffic database: the head's disk holds the
    summaries, the bucket every run's traffic."""
    from tests.services import gcs_emulator

    catalog = tmp_path / "catalog"
    shutil.copytree(fixture_images, catalog, dirs_exist_ok=True)
    shutil.copytree(RECORDED, catalog / "apis" / "fx-recorded")
    image = catalog_mod.load(catalog).apis["fx-recorded"].image
    with google_standin(size=0) as google, gcs_emulator("lrt-results") as storage:
        head = Head(tmp_path, cluster, google, upload={"bucket": "lrt-results", "path": "results"})
        head.env["STORAGE_EMULATOR_HOST"] = storage
        results = tmp_path / "results"
        try:
            res = cluster_cli(
                head.cluster,
                *_args(
                    catalog,
                    results,
                    test_label,
                    head,
                    "--tools",
                    "fx-good",
                    "--runs",
                    "2",
                    "--budget",
                    "4s",
                    "--no-preflight",
                    api="fx-recorded",
                ),
                timeout=400,
            )
        finally:
            execute(["docker", "rmi", "-f", image], timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        batch = only_batch(results)
        from google.cloud import storage as gcs

        monkeypatch.setenv("STORAGE_EMULATOR_HOST", storage)
        client = gcs.Client.create_anonymous_client()
        names = {b.name for b in client.list_blobs("lrt-results", prefix=f"results/{batch.name}/")}
        for n in (1, 2):
            run = batch / "fx-recorded" / "fx-good" / f"run-{n}"
            assert (run / "summary.json").is_file() and not (run / "traffic.sqlite").exists()
            meta = json.loads((run / "metadata.json").read_text())
            assert meta["status"] == "succeeded" and meta["traffic_in_bucket_only"] is True  # the node's word
            prefix = f"results/{batch.name}/fx-recorded/fx-good/run-{n}/attempt-1"
            assert f"{prefix}/traffic.sqlite" in names and f"{prefix}/summary.json" in names, sorted(names)
        assert not list(batch.rglob("traffic.sqlite"))


def test_an_upload_that_cannot_finish_keeps_the_head_up_but_not_the_workers(
    cluster, fixture_images, tmp_path, test_label
):
    """The bucket does not answer (Cloud Storage pointed at a closed port): the group is released as
    soon as nothing is pending, before the upload is tried; the head then stays up, since its disk
    holds results the bucket lacks, and says why."""
    from tests.services import free_port

    with google_standin(size=0, names=[f"lrt-{n}" for n in cluster.workers]) as google:
        head = Head(
            tmp_path,
            cluster,
            google,
            worker_group={**GROUP_SETTINGS, "size": 2, "slots": 1},
            upload={"bucket": "lrt-nowhere", "path": "results"},
        )
        head.env["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{free_port()}"
        results = tmp_path / "results"
        res = cluster_cli(
            head.cluster,
            *_args(
                fixture_images,
                results,
                test_label,
                head,
                "--tools",
                "fx-good",
                "--runs",
                "1",
                "--budget",
                "3s",
                "--no-preflight",
                "--no-build",
            ),
            timeout=400,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        batch = only_batch(results)
        log = (batch / "runner.log").read_text()
        assert google.sizes[GROUP_PATH] == 0 and not head.powered_off()
        assert "power off: no (" in log and "files not uploaded yet" in log
        assert log.index(f"group {GROUP} released to 0") < log.rindex("upload: ")
        assert _billed_after(google, _last_run_end(batch), "upload pending") < 1.0
