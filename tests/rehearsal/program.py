"""What the Pulumi program declares for a stack, taken from a run of ``__main__.py`` under Pulumi's mocks
(tests/pulumi/harness.py), as the rehearsal needs it: each instance's and the worker template's
metadata, addresses and shape, the group, and the deployment's inputs (what `pulumi up` hands the
deploy provider). Nothing here is invented: a value the program does not declare is not served."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.pulumi.harness import GCP_PROJECT, HEAD_INTERNAL_IP, INTERNAL_IP, ROOT, ProgramRun, run_program

INSTANCE = "gcp:compute/instance:Instance"
TEMPLATE = "gcp:compute/instanceTemplate:InstanceTemplate"
GROUP = "gcp:compute/instanceGroupManager:InstanceGroupManager"
DEPLOYMENT = "pulumi-python:dynamic/llamaresttest:Deployment"
SCHEDULE = "gcp:compute/resourcePolicy:ResourcePolicy"
SCHEDULE_ATTACHMENT = "gcp:compute/resourcePolicyAttachment:ResourcePolicyAttachment"
FIXTURE_CATALOG = ROOT / "tests" / "runner" / "fixtures" / "catalog"
# The fixture API that keeps the API container's contract far enough for the preflight to pass.
RECORDED_API = ROOT / "tests" / "cluster" / "fixtures" / "fx-recorded"
MODELS_BUCKET = "rehearsal-models"
RESULTS_BUCKET = "rehearsal-results"


@dataclass(frozen=True)
class Machine:
    """An instance or the worker template, as declared."""

    name: str
    zone: str
    metadata: dict[str, str]
    machine_type: str
    spot: bool
    network_ip: str  # the declared internal address (the mocks' answer for an ephemeral one)
    termination_action: str  # "STOP", "DELETE" or "" (on-demand)


@dataclass(frozen=True)
class Declared:
    run: ProgramRun
    project: str
    vm: Machine
    template: Machine | None
    group_name: str
    group_size: int
    deployment_name: str
    deployment_props: dict[str, Any]
    # The spot restart the stack declares: the schedule's cron (start), "" for none.
    start_schedule: str

    @property
    def experiment(self) -> dict[str, Any]:
        return dict(self.deployment_props.get("experiment") or {})


def make_project(base: Path, *, catalog: Path = FIXTURE_CATALOG, runner_dir: Path | None = None) -> Path:
    """A checkout for the rehearsal: the real __main__.py, pyproject.toml and remote_runner (or a patched
    copy of it), and the fixture catalog's apis/ and tools/ (fast images)."""
    base.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "__main__.py", base / "__main__.py")
    shutil.copy(ROOT / "pyproject.toml", base / "pyproject.toml")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(runner_dir or ROOT / "remote_runner", base / "remote_runner", ignore=ignore)
    for kind in ("apis", "tools"):
        shutil.copytree(catalog / kind, base / kind, ignore=ignore)
    shutil.copytree(RECORDED_API, base / "apis" / RECORDED_API.name, ignore=ignore)
    return base


def base_config(apis: list[str], tools: list[str], **extra: object) -> dict[str, object]:
    """A gcp stack scaled to a 2-core machine: 1-minute runs, 0.5 CPU and 256 MiB per container."""
    config: dict[str, object] = {
        "gcp:project": GCP_PROJECT,
        "gcp:zone": "us-central1-a",
        "llamaresttest:modelsBucket": MODELS_BUCKET,
        "llamaresttest:resultsBucket": RESULTS_BUCKET,
        "llamaresttest:sshSourceRanges": ["10.128.0.1/32"],
        "llamaresttest:machineType": "n1-standard-4",
        "llamaresttest:apis": apis,
        "llamaresttest:tools": tools,
        "llamaresttest:runsPerCombination": 2,
        "llamaresttest:timeBudgetMinutes": 1,
        "llamaresttest:cpusPerContainer": 0.5,
        "llamaresttest:memoryPerContainerGb": 0.25,
        "llamaresttest:minFreeCpus": 0,
        "llamaresttest:autoStart": True,
        "llamaresttest:shutdownWhenDone": True,
    }
    config.update({f"llamaresttest:{k}" if ":" not in k else k: v for k, v in extra.items()})
    return config


def _machine(inputs: Mapping[str, Any], name: str, default_ip: str) -> Machine:
    scheduling = dict(inputs.get("scheduling") or {})
    interfaces = list(inputs.get("networkInterfaces") or [{}])
    return Machine(
        name=name,
        zone=str(inputs.get("zone") or ""),
        metadata={str(k): str(v) for k, v in dict(inputs.get("metadata") or {}).items()},
        machine_type=str(inputs.get("machineType") or ""),
        spot=scheduling.get("provisioningModel") == "SPOT",
        network_ip=str(interfaces[0].get("networkIp") or default_ip),
        termination_action=str(scheduling.get("instanceTerminationAction") or ""),
    )


def declare(
    project_dir: Path, config: Mapping[str, object], bundle_cache: Path, stack: str = "dev"
) -> Declared:
    """Runs the program under mocks (bundles written under ``bundle_cache``) and reads what it declared."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(bundle_cache)
    try:
        run = run_program(project_dir, config, stack=stack)
    finally:
        if old is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = old
    instance = run.one(INSTANCE)
    templates = run.of_type(TEMPLATE)
    groups = run.of_type(GROUP)
    template = None
    if templates:
        t = templates[0]
        template = _machine(t.inputs, str(t.inputs.get("namePrefix") or t.name), "")
    deployment = run.one(DEPLOYMENT)
    default_ip = HEAD_INTERNAL_IP if templates else INTERNAL_IP
    schedules = run.of_type(SCHEDULE)
    start = ""
    for schedule in schedules:
        vm_schedule = dict(schedule.inputs.get("instanceSchedulePolicy") or {})
        start = str(dict(vm_schedule.get("vmStartSchedule") or {}).get("schedule") or start)
    return Declared(
        run=run,
        project=GCP_PROJECT,
        vm=_machine(instance.inputs, str(instance.inputs.get("name") or instance.name), default_ip),
        template=template,
        group_name=str(groups[0].inputs.get("name") or groups[0].name) if groups else "",
        group_size=int(groups[0].inputs.get("targetSize") or 0) if groups else 0,
        deployment_name=deployment.name,
        deployment_props=dict(deployment.inputs),
        start_schedule=start,
    )
