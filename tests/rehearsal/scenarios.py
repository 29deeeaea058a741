"""The rehearsal's scenarios: the Pulumi program (under mocks) declares, the local cloud boots what it
declared, and the real deploy provider deploys and destroys over SSH with the pinned host key
(docs/rehearsal.md). Each scenario prints its timeline and "box-minutes running after the last run".

Run them with ``scripts/rehearse.sh [one-vm|spot|cluster|exit-paths|all]``; tests/rehearsal runs them
under pytest. A failure raises :class:`RehearsalFailure` naming the part of ours that broke.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stacks.bundle import runner_requirements
from stacks.compute import ENDPOINT_ENV
from stacks.deploy import DeployProvider, Timing
from stacks.remote import RetryPolicy
from tests.pulumi.harness import ROOT
from tests.rehearsal import program
from tests.rehearsal.cloud import DOCKER, PREEMPT_GRACE, Box, CloudError, Group, LocalCloud, box_image, docker

PYBASE = "llamaresttest-test/pybase"
PYBASE_DIR = ROOT / "tests" / "runner" / "fixtures" / "pybase"
STATE_DIR = "/var/lib/llamaresttest"
READY, FAILED = f"{STATE_DIR}/startup.ready", f"{STATE_DIR}/startup.failed"
STARTUP_LOG = "/var/log/llamaresttest-startup.log"
# The Docker Hub stand-in: base images the catalog's Dockerfiles name, loaded into a box's engine.
BASE_IMAGES = ("debian:bookworm-slim", PYBASE)
MODEL_FILES = ("ex.gguf", "ipd.gguf")


class RehearsalFailure(AssertionError):
    """A scenario went wrong; the message names which part (ours or a stand-in's) and why."""


@dataclass
class Timeline:
    scenario: str
    marks: dict[str, float] = field(default_factory=dict)
    box_minutes_after_last_run: float | None = None

    ORDER = ("boot", "startup ready", "deploy", "first run", "last run", "resize", "power-off")

    def mark(self, what: str, at: float | None = None) -> None:
        self.marks[what] = time.time() if at is None else at

    def render(self) -> str:
        zero = self.marks.get("boot") or min(self.marks.values(), default=time.time())
        lines = [f"[rehearse {self.scenario}] timeline (seconds after the first boot)"]
        for name in (*self.ORDER, *[k for k in self.marks if k not in self.ORDER]):
            at = self.marks.get(name)
            when = "-" if at is None else f"+{at - zero:7.1f}s  {datetime.fromtimestamp(at, UTC):%H:%M:%SZ}"
            lines.append(f"  {name:<16} {when}")
        if self.box_minutes_after_last_run is not None:
            lines.append(
                f"[rehearse {self.scenario}] box-minutes running after the last run: "
                f"{self.box_minutes_after_last_run:.2f}"
            )
        return "\n".join(lines)


@dataclass
class Rehearsal:
    """Shared machinery of one scenario: the local cloud, the declared stack, the provider."""

    scenario: str
    work: Path
    log: Callable[[str], None]
    runner_dir: Path | None = None  # a patched copy of remote_runner (the "remove a part" tests)
    startup_patch: Callable[[str], str] | None = None  # a patched startup script (same)
    rid: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    timeline: Timeline = field(init=False)
    cloud: LocalCloud = field(init=False)
    declared: program.Declared = field(init=False)

    def __post_init__(self) -> None:
        self.timeline = Timeline(self.scenario)

    def step(self, text: str) -> None:
        self.log(f"[rehearse {self.scenario}] {text}")

    # -- setup ------------------------------------------------------------------------------------
    def prepare(self, config: dict[str, object]) -> None:
        self.step("running the Pulumi program under mocks: what does the stack declare?")
        project_dir = program.make_project(self.work / "project", runner_dir=self.runner_dir)
        self.declared = program.declare(project_dir, config, self.work / "cache")
        if self.startup_patch is not None:
            vm = self.declared.vm
            vm.metadata["startup-script"] = self.startup_patch(vm.metadata["startup-script"])
            if self.declared.template is not None:
                t = self.declared.template
                t.metadata["startup-script"] = self.startup_patch(t.metadata["startup-script"])
        requirements = runner_requirements((ROOT / "pyproject.toml").read_text())
        image = box_image(requirements, sys.executable, self.step)
        ensure_pybase()
        self.cloud = LocalCloud(self.rid, self.declared.project, image, self.step)
        self.step(
            f"local cloud {self.rid}: VPC {self.cloud.network}, metadata + Compute stand-in, GCS emulator"
        )
        self.cloud.up()
        self._buckets()

    def _buckets(self) -> None:
        """The models bucket with the stack's two model files, and an empty results bucket."""
        client = self.cloud.storage_client()
        models = client.create_bucket(program.MODELS_BUCKET)
        client.create_bucket(program.RESULTS_BUCKET)
        path = "LlamaRestTest"
        for name in MODEL_FILES:
            models.blob(f"{path}/{name}").upload_from_string(hashlib.sha256(name.encode()).digest() * 64)

    def close(self) -> None:
        if hasattr(self, "cloud"):
            self.cloud.close()

    # -- the steps of `pulumi up` and `pulumi destroy` ----------------------------------------------
    def boot_vm(self, cpuset: str = "0-1") -> Box:
        vm = self.declared.vm
        self.step(f"booting {vm.name} at {vm.network_ip} ({vm.machine_type} as a box on CPUs {cpuset})")
        self.timeline.mark("boot")
        return self.cloud.create_box(
            vm.name,
            vm.network_ip,
            vm.zone,
            vm.metadata,
            cpuset=cpuset,
            spot=vm.spot,
            termination_action=vm.termination_action,
            machine_type=vm.machine_type,
        )

    def wait_ready(self, box: Box, timeout: float = 420) -> float:
        """Until the startup script (run by the guest-agent stand-in) writes its ready marker."""
        started = time.monotonic()
        while True:
            state = self.cloud.box_exec(
                box, f"if [ -f {FAILED} ]; then echo FAILED; elif [ -f {READY} ]; then echo READY; fi"
            )
            if state.strip() == "READY":
                return time.time()
            if state.strip() == "FAILED":
                raise RehearsalFailure(f"the startup script failed on {box.name}:\n{self.startup_tail(box)}")
            if time.monotonic() - started > timeout:
                raise RehearsalFailure(
                    f"the startup script wrote no ready marker on {box.name} within {timeout:.0f}s:\n"
                    f"{self.startup_tail(box)}"
                )
            time.sleep(3)

    def startup_tail(self, box: Box, lines: int = 25) -> str:
        return self.cloud.box_exec(
            box,
            f"tail -n {lines} {STARTUP_LOG} 2>/dev/null; "
            "journalctl -u google-startup-scripts --no-pager | tail -n 5",
        )

    def load_base_images(self, box: Box) -> None:
        """The Docker Hub stand-in: the catalog's base images into the box's engine."""
        self.step(
            f"loading base images {', '.join(BASE_IMAGES)} into {box.name}'s engine (Docker Hub stand-in)"
        )
        saved = subprocess.run([DOCKER, "save", *BASE_IMAGES], capture_output=True, check=True).stdout
        docker("exec", "-i", box.container, "docker", "load", "-q", input_bytes=saved, timeout=300)

    def check_metadata_guard(self, box: Box) -> None:
        """An experiment container on the box must not get the VM's token from the metadata server (the
        startup script's DOCKER-USER rule; on Google Cloud it would be the service account's token)."""
        probe = (
            "import urllib.request as u\n"
            "r = u.Request('http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token',"
            " headers={'Metadata-Flavor': 'Google'})\n"
            "print(u.urlopen(r, timeout=8).read().decode())\n"
        )
        proc = subprocess.run(
            [
                DOCKER,
                "exec",
                box.container,
                "docker",
                "run",
                "--rm",
                "--label",
                "llamaresttest.rehearsal=probe",
                PYBASE,
                "python3",
                "-c",
                probe,
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
        if proc.returncode == 0 and b"access_token" in proc.stdout:
            raise RehearsalFailure(
                f"an experiment container on {box.name} read the VM's service-account token from the "
                "metadata server (169.254.169.254): the startup script's metadata guard (DOCKER-USER REJECT "
                "to 169.254.169.254) is missing or does not work"
            )
        self.step(f"metadata guard holds on {box.name}: a container's request to 169.254.169.254 failed")

    def provider(self) -> DeployProvider:
        assert self.cloud.google is not None
        timing = Timing(
            connect=RetryPolicy(timeout_seconds=180, max_wait=5),
            connect_on_delete=RetryPolicy(timeout_seconds=60, max_wait=5),
            poll_seconds=3,
            start_timeout=240,
            host_key_grace=60,
            host_key_retry_seconds=3,
            command_timeout=900,
        )
        return DeployProvider(timing=timing, environ={ENDPOINT_ENV: self.cloud.google.url})

    def deploy_props(self, box: Box) -> dict[str, Any]:
        """The deployment's inputs as `pulumi up` hands them over, with the box's address for the VM's."""
        props = {k: v for k, v in self.declared.deployment_props.items() if k != "__provider"}
        props["host"] = box.ip
        return props

    def deploy(self, box: Box) -> dict[str, Any]:
        self.step(f"deploying over SSH to {box.ip} with the pinned host key (the real DeployProvider.create)")
        result = self.provider().create(self.deploy_props(box))
        self.timeline.mark("deploy")
        return dict(result.outs or {})

    def destroy(self, outs: dict[str, Any]) -> None:
        self.step("pulumi destroy: the real DeployProvider.delete (stop the runner, final upload)")
        self.provider().delete(str(outs.get("host")), outs)

    def wait_off(self, box: Box, timeout: float) -> float:
        started = time.monotonic()
        while self.cloud.refresh(box) != "TERMINATED":
            if time.monotonic() - started > timeout:
                raise RehearsalFailure(
                    f"{box.name} did not power off within {timeout:.0f}s of the deploy (shutdownWhenDone); "
                    f"runner status:\n{self.runner_status(box)}"
                )
            time.sleep(3)
        return box.intervals[-1][1]

    def runner_status(self, box: Box) -> str:
        return self.cloud.box_exec(
            box,
            "systemctl status llamaresttest-runner --no-pager | tail -n 5; "
            "journalctl -u llamaresttest-runner --no-pager | tail -n 30",
        )

    # -- what the bucket says ---------------------------------------------------------------------
    def batch_prefix(self) -> str:
        exp = self.declared.experiment
        upload = dict(exp.get("upload") or {})
        return f"{upload.get('path')}/{exp.get('batch')}/"

    def uploaded(self) -> dict[str, bytes]:
        return self.cloud.bucket_objects(program.RESULTS_BUCKET, self.batch_prefix())

    def journal_rows(self, objects: dict[str, bytes]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        key = self.batch_prefix() + "journal.sqlite"
        if key not in objects:
            raise RehearsalFailure(
                f"no journal.sqlite in gs://{program.RESULTS_BUCKET}/{self.batch_prefix()}"
            )
        present = sorted(k.rsplit("/", 1)[-1] for k in objects if k.startswith(key))
        with tempfile.TemporaryDirectory() as tmp:
            # A WAL-mode database is its file plus its -wal: both as the bucket holds them.
            for suffix in ("", "-wal"):
                if key + suffix in objects:
                    Path(tmp, "journal.sqlite" + suffix).write_bytes(objects[key + suffix])
            db = sqlite3.connect(Path(tmp, "journal.sqlite"))
            try:
                runs = db.execute(
                    "SELECT api, tool, repetition, status, started, finished, reason FROM runs"
                ).fetchall()
                attempts = db.execute(
                    "SELECT api, tool, repetition, attempt, node, outcome, started, ended FROM attempts"
                ).fetchall()
            except sqlite3.DatabaseError as exc:
                raise RehearsalFailure(
                    f"the batch's journal in the results bucket cannot be read ({exc}); the bucket holds "
                    f"{present} of it"
                ) from exc
            finally:
                db.close()
        return runs, attempts

    def check_every_run_once(self, objects: dict[str, bytes], expected: int) -> tuple[float, float]:
        """Each run succeeded with exactly one committed attempt, and its results are in the bucket.
        Returns (first run's start, last run's end)."""
        runs, attempts = self.journal_rows(objects)
        problems = []
        if len(runs) != expected:
            problems.append(f"{len(runs)} runs in the journal, expected {expected}")
        for api, tool, rep, status, _s, _f, reason in runs:
            committed = [a for a in attempts if a[:3] == (api, tool, rep) and a[5] == "committed"]
            if status != "succeeded":
                problems.append(f"{api}/{tool}/run-{rep} is {status} ({reason})")
            if len(committed) != 1:
                problems.append(f"{api}/{tool}/run-{rep} has {len(committed)} committed attempts")
            summary = f"{self.batch_prefix()}{api}/{tool}/run-{rep}/summary.json"
            if summary not in objects:
                problems.append(f"{summary} is not in the results bucket")
        if problems:
            raise RehearsalFailure("the batch did not run every run exactly once: " + "; ".join(problems))
        first = min(float(r[4]) for r in runs)
        last = max(float(r[5]) for r in runs)
        return first, last


def ensure_pybase() -> None:
    if docker("image", "inspect", PYBASE, check=False).strip() in ("", "[]"):
        docker("build", "-q", "--network", "host", "-t", PYBASE, str(PYBASE_DIR), timeout=600)


# ---------------------------------------------------------------------------------------------------
# Scenario 1: one VM


def one_vm(r: Rehearsal) -> Timeline:
    """Up, a batch of the fixture API x tool, results in the bucket, power-off, destroy, nothing left."""
    r.prepare(program.base_config(["fx-recorded"], ["fx-good"]))
    box = r.boot_vm()
    ready = r.wait_ready(box)
    r.timeline.mark("startup ready", ready)
    r.step(f"startup script finished on {box.name} ({ready - box.booted_at:.0f}s after boot)")
    r.load_base_images(box)
    r.check_metadata_guard(box)
    outs = r.deploy(box)
    r.step("runner started by its unit; waiting for the batch and the power-off (shutdownWhenDone)")
    off = r.wait_off(box, timeout=420)
    r.timeline.mark("power-off", off)
    objects = r.uploaded()
    first, last = r.check_every_run_once(objects, expected=2)
    r.timeline.mark("first run", first)
    r.timeline.mark("last run", last)
    r.step(f"{len(objects)} objects in gs://{program.RESULTS_BUCKET}/{r.batch_prefix()}; every run once")
    r.timeline.box_minutes_after_last_run = r.cloud.box_minutes_after(last)
    r.destroy(outs)
    r.step("the instance is deleted after the deployment (Pulumi's order)")
    r.cloud.delete_box(box)
    left = r.cloud.running_boxes()
    if left:
        raise RehearsalFailure(f"boxes still running after destroy: {[b.name for b in left]}")
    after = r.uploaded()
    if len(after) < len(objects):
        raise RehearsalFailure("the final upload lost objects")
    return r.timeline


SCENARIOS: dict[str, Callable[[Rehearsal], Timeline]] = {"one-vm": one_vm}


def run_scenario(name: str, work: Path, log: Callable[[str], None] = print, **kwargs: Any) -> Timeline:
    rehearsal = Rehearsal(name, work, log, **kwargs)
    try:
        timeline = SCENARIOS[name](rehearsal)
    except CloudError as exc:
        raise RehearsalFailure(f"the local cloud failed: {exc}") from exc
    finally:
        rehearsal.close()
    log(timeline.render())
    return timeline


# ---------------------------------------------------------------------------------------------------
# Scenario 3: a cluster


REGISTRY_DIR = Path(__file__).resolve().parent / "registry"
REGISTRY_IP = "10.128.0.200"
WORKER_IPS = [f"10.128.0.{n}" for n in range(100, 110)]
# A VM's /dev/shm is half its memory; Docker gives a container 64 MB. Ray's object store lives there.
SHM = "2300m"


def start_registry(r: Rehearsal) -> str:
    """The Artifact Registry stand-in: a box running Debian's docker-registry at REGISTRY_IP:80."""
    tag = (
        "llamaresttest-rehearsal/registry:"
        + hashlib.sha256(b"".join(p.read_bytes() for p in sorted(REGISTRY_DIR.iterdir()))).hexdigest()[:12]
    )
    if docker("image", "inspect", tag, check=False).strip() in ("", "[]"):
        r.step(f"building the registry image {tag} (Debian's docker-registry)")
        docker(
            "build",
            "-q",
            "--network",
            "host",
            "--label",
            "llamaresttest.rehearsal=registry-image",
            "-t",
            tag,
            str(REGISTRY_DIR),
        )
    docker(
        "run",
        "-d",
        "--name",
        f"lrt-rh-{r.rid}-registry",
        "--label",
        f"llamaresttest.rehearsal={r.rid}",
        "--network",
        r.cloud.network,
        "--ip",
        REGISTRY_IP,
        tag,
    )
    return REGISTRY_IP


def cluster_extras(r: Rehearsal, registry_host: str) -> dict[str, Any]:
    """What a VPC gives a cluster box besides the instance: the registry's name (Artifact Registry's
    host, here the registry box, reached over plain HTTP: the engine is told it is insecure), and a
    /dev/shm of a VM's size."""
    return {
        "hosts": {registry_host: REGISTRY_IP},
        "daemon_json": json.dumps({"insecure-registries": [registry_host]}),
        "shm": SHM,
    }


def cluster(r: Rehearsal) -> Timeline:
    """Head (1 CPU) + two spot workers (2 shared CPUs) from the template; images built on the head and
    pulled from the registry box; one worker killed mid-run and recreated; every run once; group at 0
    and head off at the end."""
    r.prepare(
        program.base_config(
            ["fx-recorded"], ["fx-good"], workers=2, workerMachineType="n1-standard-4", runsPerCombination=4
        )
    )
    head, group = boot_cluster(r)
    r.step(f"the group {group.name} (target {group.target}) creates its workers from the template")
    ready = r.wait_ready(head, timeout=600)
    r.timeline.mark("startup ready", ready)
    r.load_base_images(head)
    outs = r.deploy(head)
    r.step("runner started (cluster mode); waiting for a run on a worker, then killing that worker")
    victim = wait_for_running_worker(r, timeout=600)
    r.step(f"killing worker {victim.name} mid-run (a spot preemption with termination action DELETE)")
    r.cloud.mark(f"kill {victim.name}")
    r.timeline.mark(f"kill {victim.name}")
    r.cloud.kill_box(victim)
    off = r.wait_off(head, timeout=900)
    r.timeline.mark("power-off", off)
    if group.target != 0:
        raise RehearsalFailure(f"the head powered off with the worker group at {group.target}, not 0")
    released = released_at(group)
    if released is None:
        raise RehearsalFailure(f"the worker group never went from workers to 0: sizes {group.history}")
    r.timeline.mark("resize", released)
    objects = r.uploaded()
    first, last = r.check_every_run_once(objects, expected=4)
    r.timeline.mark("first run", first)
    r.timeline.mark("last run", last)
    wait_no_members(r, group.path, timeout=180)
    r.timeline.box_minutes_after_last_run = r.cloud.box_minutes_after(last)
    r.destroy(outs)
    r.cloud.delete_box(head)
    group.target = 0
    left = r.cloud.running_boxes()
    if left:
        raise RehearsalFailure(f"boxes still running after destroy: {[b.name for b in left]}")
    return r.timeline


def boot_cluster(r: Rehearsal, *, no_capacity: bool = False) -> tuple[Box, Group]:
    """The registry box, the head (1 CPU) and the worker group as the stack declares them (its
    template's metadata and machine type); the group starts creating workers at once unless it has
    ``no_capacity``."""
    d = r.declared
    assert d.template is not None
    registry_host = str(d.experiment["registry"]).split("/", 1)[0]
    start_registry(r)
    r.cloud.box_extras = cluster_extras(r, registry_host)
    head = r.boot_vm(cpuset="0")
    group = Group(
        path=f"/compute/v1/projects/{d.project}/zones/{d.vm.zone}/instanceGroupManagers/{d.group_name}",
        name=d.group_name,
        zone=d.vm.zone,
        base_name=d.template.name.rstrip("-"),
        metadata=d.template.metadata,
        spot=d.template.spot,
        cpuset="0-1",
        memory="",
        target=d.group_size,
        free_ips=list(WORKER_IPS),
        machine_type=d.template.machine_type,
        no_capacity=no_capacity,
    )
    r.cloud.add_group(group)
    return head, group


def released_at(group: Group) -> float | None:
    """When the group last went from some workers to none (the release; not its creation at 0)."""
    last = None
    for (_, before), (at, size) in zip(group.history, group.history[1:], strict=False):
        if size == 0 and before > 0:
            last = at
    return last


def wait_for_running_worker(r: Rehearsal, timeout: float) -> Box:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        for box in list(r.cloud.boxes.values()):
            if not box.group or r.cloud.refresh(box) != "RUNNING":
                continue
            names = r.cloud.box_exec(box, "docker ps --format '{{.Names}}' 2>/dev/null", timeout=30)
            if any(n.startswith("lrt-") and n.endswith("-tool") and "-r0-" not in n for n in names.split()):
                return box
        time.sleep(3)
    head = r.cloud.boxes[r.declared.vm.name]
    try:
        workers = head_file(r, head, "workers.json").strip()
    except RehearsalFailure as exc:
        workers = str(exc)
    raise RehearsalFailure(
        f"no run started on any worker within {timeout:.0f}s (head {r.cloud.refresh(head)}; its "
        f"workers.json: {workers}):\n{r.runner_status(head)}"
    )


def wait_no_members(r: Rehearsal, group_path: str, timeout: float) -> float:
    started = time.monotonic()
    while [b for b in r.cloud.running_boxes() if b.group == group_path]:
        if time.monotonic() - started > timeout:
            group = r.cloud.groups[group_path]
            raise RehearsalFailure(
                f"workers still run {timeout:.0f}s later; the group's target is {group.target} "
                f"(sizes {group.history})"
            )
        time.sleep(3)
    return time.time()


SCENARIOS["cluster"] = cluster


# ---------------------------------------------------------------------------------------------------
# Scenario 2: one spot VM preempted mid-batch

# The stack's start schedule ("0 * * * *": every hour) compressed to this many seconds.
SCHEDULE_SECONDS = 20.0


def spot(r: Rehearsal) -> Timeline:
    """A spot VM stopped as Google preempts it (30 s) while runs are running; the instance schedule the
    stack declares starts it again; the runner resumes; every run exactly once; off at the end."""
    r.prepare(program.base_config(["fx-recorded"], ["fx-good"], spot=True, runsPerCombination=3))
    vm = r.declared.vm
    if not (vm.spot and vm.termination_action == "STOP" and r.declared.start_schedule):
        raise RehearsalFailure(
            f"the spot stack declares spot={vm.spot}, termination {vm.termination_action!r}, start schedule "
            f"{r.declared.start_schedule!r}: nothing would bring a preempted VM back"
        )
    box = r.boot_vm()
    ready = r.wait_ready(box)
    r.timeline.mark("startup ready", ready)
    r.load_base_images(box)
    outs = r.deploy(box)
    wait_for_running_run(r, box, timeout=420)
    r.step(f"preempting {box.name} mid-run (stopped with {PREEMPT_GRACE}s, as Google stops a spot VM)")
    r.timeline.mark("preempt")
    r.cloud.stop_box(box, grace=PREEMPT_GRACE)
    r.step(
        f"the instance schedule ({r.declared.start_schedule}, compressed to {SCHEDULE_SECONDS:.0f}s) "
        "starts it again"
    )
    r.cloud.schedules[vm.name] = SCHEDULE_SECONDS
    started = time.monotonic()
    while r.cloud.refresh(box) != "RUNNING" or len(box.intervals) < 2:
        if time.monotonic() - started > 120:
            raise RehearsalFailure("the instance schedule did not start the preempted VM")
        time.sleep(2)
    r.timeline.mark("restart", box.intervals[-1][0])
    ready = r.wait_ready(box)
    r.timeline.mark("startup ready again", ready)
    # Powered off by the runner once the resumed batch is uploaded; not started again meanwhile.
    off = wait_batch_done_and_off(r, box, timeout=480)
    r.timeline.mark("power-off", off)
    objects = r.uploaded()
    first, last = r.check_every_run_once(objects, expected=3)
    r.timeline.mark("first run", first)
    r.timeline.mark("last run", last)
    # What the hourly schedule costs after the batch (docs/stacks.md): one more wake, measured.
    r.step("one more scheduled start after the batch: the runner must find nothing left and power off")
    wakes = len(box.intervals)
    started = time.monotonic()
    while len(box.intervals) == wakes:
        if time.monotonic() - started > 120:
            raise RehearsalFailure("the instance schedule did not start the VM after the batch")
        time.sleep(2)
    woke = box.intervals[-1][0]
    wait_off_after(r, box, woke, timeout=300)
    r.cloud.schedules.pop(vm.name, None)
    r.timeline.mark("wake after batch", woke)
    r.timeline.mark("off again", box.intervals[-1][1])
    r.step(f"a scheduled wake after the batch ran {box.intervals[-1][1] - woke:.0f}s (billed once per hour)")
    r.timeline.box_minutes_after_last_run = r.cloud.box_minutes_after(last)
    r.destroy(outs)
    r.cloud.delete_box(box)
    left = r.cloud.running_boxes()
    if left:
        raise RehearsalFailure(f"boxes still running after destroy: {[b.name for b in left]}")
    return r.timeline


def wait_for_running_run(r: Rehearsal, box: Box, timeout: float) -> None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        names = r.cloud.box_exec(box, "docker ps --format '{{.Names}}' 2>/dev/null", timeout=30).split()
        if any(n.startswith("lrt-") and n.endswith("-tool") and "-r0-" not in n for n in names):
            time.sleep(5)  # well inside the run
            return
        time.sleep(2)
    raise RehearsalFailure(f"no run started on {box.name} within {timeout:.0f}s:\n{r.runner_status(box)}")


def wait_batch_done_and_off(r: Rehearsal, box: Box, timeout: float) -> float:
    started = time.monotonic()
    while True:
        if r.cloud.refresh(box) == "TERMINATED":
            return box.intervals[-1][1]
        if time.monotonic() - started > timeout:
            raise RehearsalFailure(
                f"{box.name} did not power off within {timeout:.0f}s of its restart:\n{r.runner_status(box)}"
            )
        time.sleep(2)


def wait_off_after(r: Rehearsal, box: Box, since: float, timeout: float) -> None:
    started = time.monotonic()
    while not (r.cloud.refresh(box) == "TERMINATED" and box.intervals[-1][0] >= since):
        if time.monotonic() - started > timeout:
            raise RehearsalFailure(
                f"{box.name}, woken after its batch, did not power off within {timeout:.0f}s:\n"
                + r.runner_status(box)
            )
        time.sleep(2)


SCENARIOS["spot"] = spot


# ---------------------------------------------------------------------------------------------------
# Scenario 4: the cluster's exit paths

# The stack's workerWaitMinutes (default 30) compressed: how long the head waits for a first worker.
# One value serves both paths, as one stack config would: (a) waits it out for nothing; in (b) a worker
# box must boot its stock first boot (apt, Docker, venv, Ray) and join within it. 45 s was enough on an
# idle machine and too little in CI beside the image tests (the head gave up on a booting worker), so
# it keeps the real ratio instead: a 30-minute wait is about 4x a VM's 8-minute first boot; a box's
# first boot takes 40-150 s here.
WORKER_WAIT_SECONDS = 300


def exit_paths(r: Rehearsal) -> Timeline:
    """Two ways a cluster batch ends early, one head: (a) no worker joins (the zone has no capacity):
    the head waits ``worker_wait_seconds``, releases the group and powers off; (b) capacity is back and
    the head is started again: the batch resumes on new workers, and the head is stopped mid-batch (an
    operator's stop, a host failure): its shutdown script releases the group. Nothing is left running."""
    r.prepare(
        program.base_config(
            ["fx-recorded"],
            ["fx-good"],
            workers=2,
            workerMachineType="n1-standard-4",
            runsPerCombination=4,
            workerWaitMinutes=WORKER_WAIT_SECONDS / 60,
        )
    )
    head, group = boot_cluster(r, no_capacity=True)
    r.step(f"(a) the group {group.name} has no capacity: it will create no worker")
    ready = r.wait_ready(head, timeout=600)
    r.timeline.mark("startup ready", ready)
    r.load_base_images(head)
    r.deploy(head)
    r.step(f"(a) waiting for the head to give up after {WORKER_WAIT_SECONDS}s without a worker")
    off = r.wait_off(head, timeout=600)
    r.timeline.mark("(a) head off", off)
    asked = [size for _, size in group.history if size > 0]
    released = released_at(group)
    if not asked:
        raise RehearsalFailure(f"(a) the head never asked the group for workers: sizes {group.history}")
    if group.target != 0 or released is None:
        raise RehearsalFailure(
            f"(a) the head gave up without a worker but left the group at {group.target}: the runner's "
            f"release on exit 8 (remote_runner/placement/workers.py) did not happen; sizes {group.history}"
        )
    r.timeline.mark("(a) resize", released)
    status = head_file(r, head, "workers.json")
    if "released" not in status:
        raise RehearsalFailure(f"(a) workers.json does not say the group was released: {status!r}")
    r.step(f"(a) group {asked[-1]} -> 0, head off {off - released:.1f}s after the release: {status.strip()}")
    minutes_a = r.cloud.box_minutes_after(released)

    r.step("(b) capacity is back; the head is started again and resumes its batch on new workers")
    group.no_capacity = False
    r.cloud.start_box(head)
    r.timeline.mark("(b) head started")
    victim = wait_for_running_worker(r, timeout=600)
    r.timeline.mark("(b) run on a worker")
    r.step(f"(b) the head's workers.json: {head_file(r, head, 'workers.json').strip()}")
    r.step(f"(b) a run is under way on {victim.name}; stopping the head mid-batch (its shutdown script runs)")
    stopped = time.time()
    r.timeline.mark("(b) head stop")
    r.cloud.stop_box(head)
    gone = wait_no_members(r, group.path, timeout=240)
    r.timeline.mark("(b) workers gone", gone)
    if group.target != 0:
        raise RehearsalFailure(
            f"(b) the head was stopped mid-batch and the group is at {group.target}: its shutdown script's "
            "release-workers (stacks/ray_nodes.py) did not resize it to 0"
        )
    r.timeline.mark("(b) resize", released_at(group))
    left = r.cloud.running_boxes()
    if left:
        raise RehearsalFailure(f"(b) boxes still running after the head stopped: {[b.name for b in left]}")
    minutes_b = r.cloud.box_minutes_after(stopped)
    r.step(
        f"box-minutes running after (a) the give-up's release: {minutes_a:.2f}; "
        f"after (b) the head's stop: {minutes_b:.2f}"
    )
    r.timeline.box_minutes_after_last_run = minutes_b
    return r.timeline


def head_file(r: Rehearsal, box: Box, name: str) -> str:
    """A file of the batch's folder on a box's disk, running or off (a stopped VM keeps its disk)."""
    exp = r.declared.experiment
    path = f"{exp['results']}/{exp['batch']}/{name}"
    proc = subprocess.run(
        [DOCKER, "cp", f"{box.container}:{path}", "-"], capture_output=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        raise RehearsalFailure(f"{path} is not on {box.name}'s disk: {proc.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as archive:
        member = archive.extractfile(name)
        return member.read().decode() if member else ""


SCENARIOS["exit-paths"] = exit_paths
