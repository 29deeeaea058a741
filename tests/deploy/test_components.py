"""The components the program wires, under Pulumi's mocks: what they register, with which inputs.

``set_mocks`` is process-wide state: every test resets the root resource and installs fresh mocks.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import rpc, settings
from pulumi.runtime.stack import wait_for_rpcs
from pulumi.runtime.sync_await import _sync_await

from stacks import deploy, local, systemd
from stacks.bundle import sha256_file

from .conftest import make_key

BATCH = "batch-20260101T000000Z"


@dataclass(frozen=True)
class Registered:
    type: str
    name: str
    inputs: dict[str, Any]
    secret_inputs: frozenset[str]
    custom: bool


def _is_secret(value: object) -> bool:
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


def _unwrap(value: Any) -> Any:
    if _is_secret(value):
        return _unwrap(value["value"])
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[Registered] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
        secrets = frozenset(k for k, v in args.inputs.items() if _is_secret(v))
        self.resources.append(
            Registered(args.typ, args.name, _unwrap(dict(args.inputs)), secrets, bool(args.custom))
        )
        state = dict(args.inputs)
        if args.typ.endswith(":BatchName"):
            state["name"] = BATCH
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list[tuple[str, str]] | None]:
        return {}, None


def run(program: Callable[[], dict[str, pulumi.Output[Any]]]) -> tuple[Mocks, dict[str, Any]]:
    settings.ROOT.set(None)
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project="llamaresttest", stack="test", preview=False)
    outputs = program()
    values = {k: _sync_await(pulumi.Output.from_input(v).future()) for k, v in outputs.items()}
    _sync_await(wait_for_rpcs())
    return mocks, values


EXPERIMENT = {
    "catalog": "/opt/llamaresttest/current",
    "results": "/opt/llamaresttest/results",
    "batch": None,
    "apis": ["features-service"],
    "tools": ["llamaresttest"],
    "runs": 1,
    "budget_seconds": 3600,
    "models_dir": "/opt/llamaresttest/models",
    "upload": {"bucket": "models-bucket", "path": "llamaresttest-results"},
}


def test_local_runner_registers_only_docker_resources(tmp_path: Path) -> None:
    results, models = tmp_path / "results", tmp_path / "models"
    project = Path(__file__).resolve().parents[2]
    args = local.LocalRunnerArgs(experiment=EXPERIMENT, results_dir=results, models_dir=models, batch=BATCH)

    def program() -> dict[str, pulumi.Output[Any]]:
        runner = local.LocalRunner("local", args)
        return {"status": runner.status_command, "logs": runner.logs_command}

    mocks, outputs = run(program)
    custom = [r for r in mocks.resources if r.custom]
    # the runner's container and, before it, the one-shot metadata guard
    # (remote_runner/experiment/metadata_guard.py)
    assert sorted(r.type for r in custom) == ["docker:index/container:Container"] * 2 + [
        "docker:index/image:Image"
    ]
    assert not [r for r in mocks.resources if r.type.startswith("gcp:")]
    guard = next(r for r in custom if r.name == "local-metadata-guard").inputs
    assert guard["entrypoints"] == systemd.guard_command()
    assert guard["networkMode"] == "host" and guard["capabilities"]["adds"] == ["NET_ADMIN", "NET_RAW"]
    assert [(m["source"], m.get("readOnly", False)) for m in guard["mounts"]] == [(str(project), True)]

    image = next(r for r in custom if r.type == "docker:index/image:Image")
    assert image.inputs["skipPush"] is True
    assert image.inputs["imageName"] == "llamaresttest/runner:local"
    assert Path(image.inputs["build"]["dockerfile"]) == project / "stacks/runner-image/Dockerfile"
    reqs = image.inputs["build"]["args"]["RUNNER_REQUIREMENTS"].split()
    assert any(r.startswith("psutil") for r in reqs) and not any(r.startswith("pulumi") for r in reqs)

    container = next(r for r in custom if r.name == "local-container")
    inputs = container.inputs
    assert inputs["command"] == systemd.runner_command()  # the VM unit's command, word for word
    assert inputs["workingDir"] == str(project)
    assert inputs["stopSignal"] == "SIGTERM"
    assert inputs["stopTimeout"] >= 40 and inputs["destroyGraceSeconds"] >= inputs["stopTimeout"]
    assert inputs["restart"] == "on-failure" and inputs["init"] is True
    assert {(m["source"], m["target"], m.get("readOnly", False)) for m in inputs["mounts"]} == {
        ("/var/run/docker.sock", "/var/run/docker.sock", False),
        (str(project), str(project), True),
        (str(results), str(results), False),
        (str(models), str(models), True),
    }
    env = dict(e.split("=", 1) for e in inputs["envs"])
    given = json.loads(env[local.SETTINGS_ENV])
    assert given["catalog"] == str(project) and given["results"] == str(results)
    assert given["models_dir"] == str(models) and given["batch"] == BATCH
    assert given["apis"] == ["features-service"]
    assert env[local.BUNDLE_ENV] == local.bundle_hash(args, given)
    assert {"label": local.BUNDLE_LABEL, "value": env[local.BUNDLE_ENV]} in inputs["labels"]
    assert outputs["logs"] == "docker logs -f llamaresttest-runner"
    assert outputs["status"].startswith("docker exec llamaresttest-runner ")


def test_local_runner_names_its_batch_once_when_none_is_given(tmp_path: Path) -> None:
    args = local.LocalRunnerArgs(experiment=EXPERIMENT, results_dir=tmp_path / "results")

    def program() -> dict[str, pulumi.Output[Any]]:
        local.LocalRunner("local", args)
        return {}

    mocks, _ = run(program)
    types = sorted(r.type for r in mocks.resources if r.custom)
    assert types == [
        "docker:index/container:Container",
        "docker:index/container:Container",
        "docker:index/image:Image",
        "pulumi-python:dynamic/llamaresttest:BatchName",
    ]
    container = next(r for r in mocks.resources if r.name == "local-container")
    env = dict(e.split("=", 1) for e in container.inputs["envs"])
    assert json.loads(env[local.SETTINGS_ENV])["batch"] == BATCH
    assert "models_dir" in json.loads(env[local.SETTINGS_ENV])  # kept from the settings when not overridden


def test_deployment_state_holds_hash_and_path_not_the_archive_and_the_key_is_secret(tmp_path: Path) -> None:
    client, host = make_key(), make_key()
    args = deploy.DeploymentArgs(
        host="34.1.2.3",
        user="llrt",
        client_private_key=client.private_openssh,
        host_public_key=host.public_openssh,
        experiment=EXPERIMENT,
        auto_start=True,
        bundle_dir=tmp_path / "bundles",
    )

    def program() -> dict[str, pulumi.Output[Any]]:
        deployment = deploy.Deployment("deploy", args)
        return {
            "status": deployment.status_command,
            "logs": deployment.logs_command,
            "ssh": deployment.ssh_command,
        }

    mocks, outputs = run(program)
    types = sorted(r.type for r in mocks.resources if r.custom)
    assert types == [
        "pulumi-python:dynamic/llamaresttest:BatchName",
        "pulumi-python:dynamic/llamaresttest:Deployment",
    ]
    batch = next(r for r in mocks.resources if r.type == "pulumi-python:dynamic/llamaresttest:BatchName")
    assert batch.inputs["keeper"] == "34.1.2.3"
    res = next(r for r in mocks.resources if r.type == "pulumi-python:dynamic/llamaresttest:Deployment")
    inputs = res.inputs
    assert deploy.PRIVATE_KEY in res.secret_inputs
    assert inputs[deploy.EXPERIMENT]["batch"] == BATCH
    bundle_path = Path(inputs[deploy.BUNDLE_PATH])
    assert bundle_path.parent == tmp_path / "bundles"
    assert sha256_file(bundle_path) == inputs[deploy.BUNDLE_HASH]
    state_size = len(json.dumps({k: v for k, v in inputs.items() if k != "__provider"}))
    assert state_size < 20_000 < bundle_path.stat().st_size  # the archive itself is not in the state
    assert inputs[deploy.AUTO_START] is True and inputs[deploy.REMOTE_ROOT] == "/opt/llamaresttest"
    assert deploy.DeployProvider().check({}, inputs).failures == []
    assert outputs["ssh"] == "ssh -i llamaresttest-key llrt@34.1.2.3"
    status = shlex.split(outputs["status"])
    assert status[:-1] == ["ssh", "-i", "llamaresttest-key", "llrt@34.1.2.3"]  # one remote command argument
    assert status[-1] == (
        "cd /opt/llamaresttest/current && sudo /opt/llamaresttest/venv/bin/python -m remote_runner status"
        f" --results /opt/llamaresttest/results --batch {BATCH}"
    )
    logs = shlex.split(outputs["logs"])
    assert logs[-1] == "sudo journalctl -u llamaresttest-parallel.service -f -n 200 --no-pager"


def test_status_and_logs_commands_extend_the_stacks_ssh_command(tmp_path: Path) -> None:
    client, host = make_key(), make_key()
    base = "ssh -i ~/.ssh/llrt-dev -o IdentitiesOnly=yes llrt@34.1.2.3"
    args = deploy.DeploymentArgs(
        host="34.1.2.3",
        user="llrt",
        client_private_key=client.private_openssh,
        host_public_key=host.public_openssh,
        experiment={**EXPERIMENT, "batch": "batch-20250505T050505Z"},
        ssh_command=base,
        bundle_dir=tmp_path / "bundles",
    )

    def program() -> dict[str, pulumi.Output[Any]]:
        deployment = deploy.Deployment("deploy", args)
        return {"status": deployment.status_command, "logs": deployment.logs_command}

    mocks, outputs = run(program)
    # the settings name their batch: no BatchName is needed
    assert not [r for r in mocks.resources if r.type.endswith(":BatchName")]
    assert outputs["status"].startswith(base + " ")
    assert shlex.split(outputs["status"])[-1].endswith("--batch batch-20250505T050505Z")
    assert outputs["logs"].startswith(base + " ")


def test_batch_name_is_kept_until_the_machine_changes() -> None:
    provider = deploy.BatchNameProvider()
    created = provider.create({"keeper": "vm-1", "name": None})
    assert created.outs is not None
    assert created.id == created.outs["name"]
    assert len(created.id) == len("batch-20260101T000000Z") and created.id.startswith("batch-2")
    same = provider.diff(created.id, created.outs, {"keeper": "vm-1", "name": None})
    assert not same.changes
    other = provider.diff(created.id, created.outs, {"keeper": "vm-2", "name": None})
    assert other.changes and other.replaces == ["keeper"]


def test_gcp_credentials_file_prefers_the_environment_then_gclouds_default(tmp_path: Path) -> None:
    adc = tmp_path / ".config" / "gcloud" / "application_default_credentials.json"
    assert local.gcp_credentials_file({}, home=tmp_path) is None
    adc.parent.mkdir(parents=True)
    adc.write_text("{}")
    assert local.gcp_credentials_file({}, home=tmp_path) == adc
    key = tmp_path / "service-account.json"
    key.write_text("{}")
    assert local.gcp_credentials_file({"GOOGLE_APPLICATION_CREDENTIALS": str(key)}, home=tmp_path) == key
    missing = {"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "gone.json")}
    assert local.gcp_credentials_file(missing, home=tmp_path) == adc
    elsewhere = tmp_path / "gcloud-config"
    elsewhere.mkdir()
    (elsewhere / "application_default_credentials.json").write_text("{}")
    assert local.gcp_credentials_file({"CLOUDSDK_CONFIG": str(elsewhere)}, home=tmp_path) == (
        elsewhere / "application_default_credentials.json"
    )
