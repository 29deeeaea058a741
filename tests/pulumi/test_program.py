"""The Pulumi program under mocks: what each stack configuration declares, with which inputs."""

from __future__ import annotations

import json
import logging
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from stacks.access import results_write_condition
from stacks.bundle import sha256_file
from stacks.config import ConfigError, this_machine
from stacks.local import SETTINGS_ENV
from stacks.machines import experiment_slots
from tests.pulumi.harness import (
    BATCH,
    EPHEMERAL_IP,
    GCP_PROJECT,
    INSTANCE_ID,
    ROOT,
    STATIC_IP,
    ProgramRun,
    Registered,
    run_program,
)

INSTANCE = "gcp:compute/instance:Instance"
FIREWALL = "gcp:compute/firewall:Firewall"
IAM_MEMBER = "gcp:storage/bucketIAMMember:BucketIAMMember"
ACCOUNT = "gcp:serviceaccount/account:Account"
ADDRESS = "gcp:compute/address:Address"
PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
DEPLOYMENT = "pulumi-python:dynamic/llamaresttest:Deployment"
BATCH_NAME = "pulumi-python:dynamic/llamaresttest:BatchName"
CONTAINER = "docker:index/container:Container"
IMAGE = "docker:index/image:Image"

# What a user sets on top of Pulumi.dev.yaml's example values.
REAL_VALUES = {
    "gcp:project": GCP_PROJECT,
    "llamaresttest:modelsBucket": "lab-llm-models",
    "llamaresttest:sshSourceRanges": ["198.18.7.0/24", "100.64.1.5/32"],
}


def dev_stack_config() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"])


def base_config(**overrides: object) -> dict[str, object]:
    config: dict[str, object] = {**dev_stack_config(), **REAL_VALUES}
    config.update({f"llamaresttest:{k}": v for k, v in overrides.items()})
    return config


def iam_members(run: ProgramRun) -> dict[str, dict[str, Any]]:
    return {r.name: r.inputs for r in run.of_type(IAM_MEMBER)}


def startup_script(run: ProgramRun) -> str:
    script = run.one(INSTANCE).inputs["metadata"]["startup-script"]
    assert isinstance(script, str)
    return script


def test_dev_stack_file_refuses_its_example_values(project_dir: Path) -> None:
    with pytest.raises(ConfigError) as info:
        run_program(project_dir, dev_stack_config())
    problems = info.value.problems
    assert len(problems) == 3, problems
    assert any(p.startswith("gcp:project") and "example value" in p for p in problems)
    assert any("modelsBucket" in p and "example value" in p for p in problems)
    assert any("sshSourceRanges" in p and "documentation range" in p for p in problems)


def test_dev_stack_declares_the_vm_and_its_access(project_dir: Path) -> None:
    run = run_program(project_dir, base_config())

    custom = sorted(r.type for r in run.resources if r.custom)
    assert custom == sorted(
        [
            ACCOUNT,
            IAM_MEMBER,
            IAM_MEMBER,
            FIREWALL,
            INSTANCE,
            PRIVATE_KEY,
            PRIVATE_KEY,
            BATCH_NAME,
            DEPLOYMENT,
        ]
    )

    vm = run.one(INSTANCE).inputs
    assert vm["name"] == "llamaresttest-dev"
    assert vm["machineType"] == "n1-standard-32"
    assert vm["zone"] == "us-central1-a"
    assert vm["bootDisk"]["initializeParams"] == {
        "image": "debian-cloud/debian-12",
        "size": 100,
        "type": "pd-balanced",
    }
    assert vm["scheduling"] == {
        "provisioningModel": "STANDARD",
        "preemptible": False,
        "automaticRestart": True,
        "onHostMaintenance": "MIGRATE",
        "instanceTerminationAction": "STOP",
        "maxRunDuration": {"seconds": 24 * 3600},
    }
    assert vm["allowStoppingForUpdate"] is True
    assert vm["labels"] == {"project": "llamaresttest", "stack": "dev"}
    assert vm["serviceAccount"] == {
        "email": f"llamaresttest-dev-vm@{GCP_PROJECT}.iam.gserviceaccount.com",
        "scopes": ["cloud-platform"],
    }
    assert vm["shieldedInstanceConfig"]["enableSecureBoot"] is True
    assert vm["networkInterfaces"] == [{"network": "default", "accessConfigs": [{}]}]
    # In-place updatable metadata, as a secret (the script carries the host private key).
    assert "metadataStartupScript" not in vm
    assert "metadata" in run.one(INSTANCE).secret_inputs
    assert vm["metadata"]["block-project-ssh-keys"] == "TRUE"

    firewall = run.one(FIREWALL).inputs
    assert firewall["sourceRanges"] == ["198.18.7.0/24", "100.64.1.5/32"]
    assert firewall["allows"] == [{"protocol": "tcp", "ports": ["22"]}]
    assert firewall["direction"] == "INGRESS"
    assert firewall["targetTags"] == vm["tags"] == ["llamaresttest-dev-ssh"]

    members = iam_members(run)
    member = f"serviceAccount:llamaresttest-dev-vm@{GCP_PROJECT}.iam.gserviceaccount.com"
    assert members["access-models-reader"] == {
        "bucket": "lab-llm-models",
        "role": "roles/storage.objectViewer",
        "member": member,
    }
    writer = members["access-results-writer"]
    assert (writer["bucket"], writer["role"], writer["member"]) == (
        "lab-llm-models",
        "roles/storage.objectUser",
        member,
    )
    expression = writer["condition"]["expression"]
    assert expression == results_write_condition("lab-llm-models", "llamaresttest-results")
    assert 'startsWith("projects/_/buckets/lab-llm-models/objects/llamaresttest-results/")' in expression
    assert run.of_type(ADDRESS) == []


def test_dev_stack_startup_script_installs_the_generated_keys(project_dir: Path) -> None:
    run = run_program(project_dir, base_config())
    script = startup_script(run)
    host_private, host_public = run.mocks.keys["ssh-keys-host"]
    _, client_public = run.mocks.keys["ssh-keys-client"]
    assert script.startswith("#!/bin/bash\n")
    assert f"HOST_PRIVATE_KEY='{host_private.strip()}'" in script
    assert f"HOST_PUBLIC_KEY='{host_public}'" in script
    assert f"CLIENT_PUBLIC_KEY='{client_public}'" in script
    assert "MODELS_BUCKET=lab-llm-models\nMODELS_PATH=LlamaRestTest\n" in script
    assert "SSH_USER=llamaresttest\n" in script


def test_dev_stack_outputs(project_dir: Path) -> None:
    run = run_program(project_dir, base_config())
    out = run.outputs
    client_private, _ = run.mocks.keys["ssh-keys-client"]
    _, host_public = run.mocks.keys["ssh-keys-host"]
    assert out["instanceName"] == "llamaresttest-dev"
    assert out["zone"] == "us-central1-a"
    assert out["externalIp"] == EPHEMERAL_IP
    assert out["experimentSlots"] == 2
    assert out["hourlyCostUsd"] == pytest.approx(
        1.51999
    )  # catalogue figure (remote_runner/cloud/price_table.py); the old table rounded it
    assert out["resultsUrl"] == "gs://lab-llm-models/llamaresttest-results/"
    assert out["sshCommand"] == (
        "ssh -i ~/.ssh/llamaresttest-dev -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes "
        f"-o UserKnownHostsFile=~/.ssh/llamaresttest-dev.known_hosts llamaresttest@{EPHEMERAL_IP}"
    )
    assert out["sshKnownHosts"] == f"{EPHEMERAL_IP} {host_public}"
    assert out["sshHostPublicKey"] == host_public
    assert out["sshClientPrivateKey"] == client_private
    assert run.secret_outputs == {"sshClientPrivateKey"}


def test_n1_standard_96_on_spot(project_dir: Path) -> None:
    run = run_program(
        project_dir,
        base_config(machineType="n1-standard-96", spot=True, maxRunHours=12, diskSizeGb=200),
        stack="big96",
    )
    vm = run.one(INSTANCE).inputs
    assert vm["machineType"] == "n1-standard-96"
    assert vm["name"] == "llamaresttest-big96"
    assert vm["labels"] == {"project": "llamaresttest", "stack": "big96"}
    assert vm["bootDisk"]["initializeParams"]["size"] == 200
    assert vm["scheduling"] == {
        "provisioningModel": "SPOT",
        "preemptible": True,
        "automaticRestart": False,
        "onHostMaintenance": "TERMINATE",
        "instanceTerminationAction": "STOP",
        "maxRunDuration": {"seconds": 12 * 3600},
    }
    assert run.outputs["experimentSlots"] == 6
    assert run.outputs["hourlyCostUsd"] == pytest.approx(
        1.1556
    )  # catalogue figure (remote_runner/cloud/price_table.py); the old table rounded it
    assert run.outputs["instanceName"] == "llamaresttest-big96"


def test_spot_without_a_run_limit_still_stops_when_reclaimed(project_dir: Path) -> None:
    run = run_program(project_dir, base_config(machineType="n1-standard-64", spot=True, maxRunHours=0))
    scheduling = run.one(INSTANCE).inputs["scheduling"]
    assert "maxRunDuration" not in scheduling
    assert scheduling["instanceTerminationAction"] == "STOP"
    assert scheduling["provisioningModel"] == "SPOT"
    assert run.outputs["experimentSlots"] == 4
    assert run.outputs["hourlyCostUsd"] == pytest.approx(
        0.7704
    )  # catalogue figure (remote_runner/cloud/price_table.py); the old table rounded it


def test_custom_buckets_and_paths(project_dir: Path) -> None:
    run = run_program(
        project_dir,
        base_config(
            modelsBucket="lab-models",
            modelsPath="/llm/gguf/",
            resultsBucket="lab-results",
            resultsPath="experiments/2026",
        ),
    )
    members = iam_members(run)
    assert {(m["bucket"], m["role"]) for m in members.values()} == {
        ("lab-models", "roles/storage.objectViewer"),
        ("lab-results", "roles/storage.objectUser"),
    }
    assert "condition" not in members["access-models-reader"]
    condition = members["access-results-writer"]["condition"]["expression"]
    assert condition == (
        'resource.name.startsWith("projects/_/buckets/lab-results/objects/experiments/2026/")'
        ' || api.getAttribute("storage.googleapis.com/objectListPrefix", "").startsWith("experiments/2026/")'
    )
    script = startup_script(run)
    assert "MODELS_BUCKET=lab-models\nMODELS_PATH=llm/gguf\n" in script
    assert run.outputs["resultsUrl"] == "gs://lab-results/experiments/2026/"


def test_no_results_access_when_results_are_not_uploaded(project_dir: Path) -> None:
    run = run_program(project_dir, base_config(uploadResults=False))
    assert list(iam_members(run)) == ["access-models-reader"]


def test_static_ip_is_reserved_and_attached(project_dir: Path) -> None:
    run = run_program(project_dir, base_config(staticIp=True))
    address = run.one(ADDRESS).inputs
    assert address["region"] == "us-central1"
    assert address["addressType"] == "EXTERNAL"
    assert run.one(INSTANCE).inputs["networkInterfaces"][0]["accessConfigs"] == [{"natIp": STATIC_IP}]
    assert run.outputs["externalIp"] == STATIC_IP


def test_invalid_config_lists_every_problem_and_declares_nothing(project_dir: Path) -> None:
    config = base_config(
        machineType="n1-standard-7",
        diskSizeGb=20,
        spot="maybe",
        sshSourceRanges=["10.0.0.300/32", "10.1.2.3/16"],
        apis=["blog", "petstore"],
        tools=["llamarestest"],
        timeBudgetMinutes=0,
        machinetype="n1-standard-64",
    )
    del config["llamaresttest:modelsBucket"]
    with pytest.raises(ConfigError) as info:
        run_program(project_dir, config)
    problems = info.value.problems
    expected = [
        ("llamaresttest:machinetype", "did you mean 'machineType'"),
        ("llamaresttest:machineType", "n1-standard-32, n1-standard-64, n1-standard-96"),
        ("llamaresttest:diskSizeGb", "at least 50"),
        ("llamaresttest:spot", "true or false"),
        ("llamaresttest:modelsBucket", "is required"),
        ("llamaresttest:sshSourceRanges", "'10.0.0.300/32' is not a CIDR"),
        ("llamaresttest:sshSourceRanges", "did you mean 10.1.0.0/16"),
        ("llamaresttest:apis", "unknown name 'petstore'"),
        ("llamaresttest:tools", "unknown name 'llamarestest' (did you mean 'llamaresttest'?)"),
        ("llamaresttest:timeBudgetMinutes", "at least 1"),
    ]
    for key, text in expected:
        assert any(p.startswith(key + ":") and text in p for p in problems), (key, text, problems)
    assert len(problems) == len(expected), problems
    assert "known apis: blog, demo-shop, features-service" in str(info.value)
    assert f"{len(expected)} problem(s); nothing was created" in str(info.value)
    assert _declared_nothing()


def _declared_nothing() -> bool:
    import pulumi.runtime.settings as settings

    monitor = settings.SETTINGS.monitor
    return not monitor.get_registered_resources()  # type: ignore[union-attr]


def test_machine_too_small_for_one_experiment(project_dir: Path) -> None:
    with pytest.raises(ConfigError) as info:
        run_program(project_dir, base_config(machineType="n1-standard-8"))
    (problem,) = info.value.problems
    assert "n1-standard-8 (8 vCPUs, 30 GB) is too small for one experiment" in problem
    assert "needs 16 vCPUs and 36 GB" in problem
    assert "choose n1-standard-16 or n1-standard-32 or n1-standard-64 or n1-standard-96" in problem
    assert _declared_nothing()
    # The same machine takes two experiments with smaller containers.
    run = run_program(
        project_dir,
        base_config(machineType="n1-standard-8", cpusPerContainer=2, memoryPerContainerGb=4, minFreeCpus=4),
    )
    assert run.outputs["experimentSlots"] == 2
    assert run.outputs["hourlyCostUsd"] == pytest.approx(0.38)


def test_ssh_from_anywhere_is_refused_unless_allowed(project_dir: Path) -> None:
    with pytest.raises(ConfigError) as info:
        run_program(project_dir, base_config(sshSourceRanges=["0.0.0.0/0"]))
    (problem,) = info.value.problems
    assert "0.0.0.0/0 opens SSH to the whole internet" in problem
    assert "allowSshFromAnywhere" in problem
    assert _declared_nothing()

    run = run_program(project_dir, base_config(sshSourceRanges=["0.0.0.0/0"], allowSshFromAnywhere=True))
    assert run.one(FIREWALL).inputs["sourceRanges"] == ["0.0.0.0/0"]


def test_dev_stack_deploys_the_runner_over_ssh(project_dir: Path, _bundles_in_tmp: Path) -> None:
    run = run_program(project_dir, base_config(autoStart=True, resultsBucket="lab-results"))
    client_private, _ = run.mocks.keys["ssh-keys-client"]
    _, host_public = run.mocks.keys["ssh-keys-host"]
    deployment = run.one(DEPLOYMENT)
    inputs = deployment.inputs
    assert inputs["host"] == EPHEMERAL_IP  # the VM's address, from the instance
    assert (inputs["user"], inputs["port"]) == ("llamaresttest", 22)
    assert inputs["host_public_key"] == host_public.strip()  # what the startup script installs
    assert inputs["client_private_key"] == client_private
    assert "client_private_key" in deployment.secret_inputs
    assert (inputs["auto_start"], inputs["upload_results"]) == (True, True)
    assert inputs["experiment"] == {
        "catalog": "/opt/llamaresttest/current",
        "results": "/opt/llamaresttest/results",
        "batch": BATCH,
        "apis": list(dev_stack_default_apis()),
        "tools": ["llamaresttest"],
        "runs": 1,
        "budget_seconds": 3600,
        "cpus_per_container": 8,
        "memory_per_container": 16 * 1024**3,  # bytes, as the runner writes sizes
        "min_free_cpus": 14,
        "models_dir": "/opt/llamaresttest/models",
        "upload": {"bucket": "lab-results", "path": "llamaresttest-results"},
        "shutdown_when_done": True,
    }
    # A new instance starts a new batch; the bundle is built from this checkout, its hash in the state.
    assert run.one(BATCH_NAME).inputs["keeper"] == INSTANCE_ID
    bundle = Path(inputs["bundle_path"])
    assert bundle.parent == _bundles_in_tmp / "llamaresttest" / "bundles"
    assert sha256_file(bundle) == inputs["bundle_hash"]
    # Only the deployment's own key input is secret; the startup script (host private key) too.
    assert "metadata" in run.one(INSTANCE).secret_inputs
    # Delete asks the Compute API about this very instance.
    assert (inputs["gcp_project"], inputs["zone"]) == (GCP_PROJECT, "us-central1-a")
    assert (inputs["instance"], inputs["instance_id"]) == (run.one(INSTANCE).inputs["name"], INSTANCE_ID)
    # `pulumi destroy` deletes in reverse dependency order: everything the final upload needs (the VM,
    # SSH's firewall rule, the bucket grants) is a direct dependency of the deployment.
    needs = run.dependencies[deployment.name]
    for resource in (run.one(INSTANCE), run.one(FIREWALL), *run.of_type(IAM_MEMBER)):
        assert resource.name in needs, (resource.name, needs)
    assert len(run.of_type(IAM_MEMBER)) == 2  # models reader and results writer


def test_with_a_static_ip_the_deployment_depends_on_the_address(
    project_dir: Path, _bundles_in_tmp: Path
) -> None:
    run = run_program(project_dir, base_config(staticIp=True))
    assert run.one(ADDRESS).name in run.dependencies[run.one(DEPLOYMENT).name]


def dev_stack_default_apis() -> tuple[str, ...]:
    from stacks.config import BENCHMARK_APIS

    return BENCHMARK_APIS


def test_dev_stack_status_and_logs_commands_extend_its_ssh_command(project_dir: Path) -> None:
    run = run_program(project_dir, base_config(uploadResults=False))
    out = run.outputs
    ssh = out["sshCommand"]
    assert out["statusCommand"].startswith(ssh + " ") and out["logsCommand"].startswith(ssh + " ")
    status = shlex.split(out["statusCommand"])[-1]
    assert status == (
        "cd /opt/llamaresttest/current && sudo /opt/llamaresttest/venv/bin/python -m remote_runner status"
        f" --results /opt/llamaresttest/results --batch {BATCH}"
    )
    assert shlex.split(out["logsCommand"])[-1].startswith("sudo journalctl -u llamaresttest-parallel.service")
    experiment = run.one(DEPLOYMENT).inputs["experiment"]
    assert "upload" not in experiment and run.one(DEPLOYMENT).inputs["upload_results"] is False
    assert run.one(DEPLOYMENT).inputs["auto_start"] is False


# --- target: local ----------------------------------------------------------------------------------


def local_stack_config(**overrides: object) -> dict[str, object]:
    """Pulumi.local.yaml, with ``overrides`` (keys without the namespace) on top."""
    config: dict[str, object] = dict(yaml.safe_load((ROOT / "Pulumi.local.yaml").read_text())["config"])
    config.update({f"llamaresttest:{k}": v for k, v in overrides.items()})
    return config


def container_settings(run: ProgramRun) -> dict[str, Any]:
    env = dict(e.split("=", 1) for e in runner_container(run).inputs["envs"])
    settings = json.loads(env[SETTINGS_ENV])
    assert isinstance(settings, dict)
    return settings


def runner_container(run: ProgramRun) -> Registered:
    found = [r for r in run.of_type(CONTAINER) if not r.name.endswith("-metadata-guard")]
    assert len(found) == 1, [r.name for r in run.of_type(CONTAINER)]
    return found[0]


def test_local_stack_declares_only_docker_resources(project_dir: Path, tmp_path: Path) -> None:
    results = tmp_path / "out" / "results"
    run = run_program(project_dir, local_stack_config(localResultsDir=str(results)), stack="local")

    types = sorted(r.type for r in run.resources if r.custom)
    assert types == sorted([BATCH_NAME, CONTAINER, CONTAINER, IMAGE])
    assert not [r for r in run.resources if r.type.startswith(("gcp:", "tls:"))]
    # Before the runner, a one-shot container in the host's network namespace keeps experiment
    # containers off the metadata server (remote_runner/experiment/metadata_guard.py).
    guard = next(r for r in run.of_type(CONTAINER) if r.name.endswith("-metadata-guard")).inputs
    assert guard["networkMode"] == "host"
    assert guard["capabilities"]["adds"] == ["NET_ADMIN", "NET_RAW"]
    assert guard["entrypoints"][-2:] == ["-m", "remote_runner.experiment.metadata_guard"]
    assert (guard["attach"], guard["mustRun"]) == (True, False)
    assert "local-metadata-guard" in run.dependencies["local-container"]
    assert results.is_dir()  # created for the container's bind mount

    settings = container_settings(run)
    assert settings == {
        "catalog": str(project_dir.resolve()),
        "results": str(results),
        "batch": BATCH,
        "apis": ["demo-shop"],
        "tools": ["schemathesis"],
        "runs": 1,
        "budget_seconds": 300,
        "cpus_per_container": 1,
        "memory_per_container": 2 * 1024**3,
        "min_free_cpus": 0,
        "shutdown_when_done": False,
    }  # no models_dir (none given), no upload (not asked for), never a shutdown
    container = runner_container(run).inputs
    assert (container["start"], container["mustRun"]) == (True, True)  # autoStart in Pulumi.local.yaml
    assert {m["source"] for m in container["mounts"]} == {
        "/var/run/docker.sock",
        str(project_dir.resolve()),
        str(results),
    }

    out = run.outputs
    assert out["resultsDir"] == str(results)
    assert out["hourlyCostUsd"] == 0
    assert out["experimentSlots"] == experiment_slots(this_machine(), 1, 2, 0)
    assert out["logsCommand"] == "docker logs -f llamaresttest-runner"
    assert out["statusCommand"].startswith("docker exec llamaresttest-runner ")
    assert out["statusCommand"].endswith(f"--results {results}")
    assert out["containerName"] == "llamaresttest-runner"
    assert not {"sshCommand", "externalIp", "resultsUrl", "sshClientPrivateKey"} & set(out)


def test_local_stack_results_default_to_the_project_and_models_are_mounted(
    project_dir: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    run = run_program(
        project_dir, local_stack_config(localModelsDir=str(models), autoStart=False), stack="l2"
    )
    settings = container_settings(run)
    assert settings["results"] == str(project_dir.resolve() / "results") == run.outputs["resultsDir"]
    assert settings["models_dir"] == str(models)
    container = runner_container(run).inputs
    assert (str(models), True) in {(m["source"], m.get("readOnly", False)) for m in container["mounts"]}
    assert (container["start"], container["mustRun"]) == (False, False)


def test_local_stack_uploads_only_when_asked_explicitly(
    project_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "adc.json"
    credentials.write_text('{"type": "authorized_user"}')
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(credentials))
    # A models bucket alone (say, copied from a gcp stack) does not turn uploads on.
    quiet = run_program(
        project_dir,
        local_stack_config(localResultsDir=str(tmp_path / "a"), modelsBucket="lab-llm-models"),
        stack="l3",
    )
    assert "upload" not in container_settings(quiet)
    asked = run_program(
        project_dir,
        local_stack_config(
            localResultsDir=str(tmp_path / "b"), uploadResults=True, resultsBucket="lab-results"
        ),
        stack="l4",
    )
    assert container_settings(asked)["upload"] == {"bucket": "lab-results", "path": "llamaresttest-results"}
    # The runner in the container uploads with the operator's credentials, mounted read-only.
    container = runner_container(asked).inputs
    assert (str(credentials), "/run/secrets/gcp-credentials.json", True) in {
        (m["source"], m["target"], m.get("readOnly", False)) for m in container["mounts"]
    }
    assert "GOOGLE_APPLICATION_CREDENTIALS=/run/secrets/gcp-credentials.json" in container["envs"]
    assert not any("gcp-credentials" in m["target"] for m in runner_container(quiet).inputs["mounts"])
    assert not [r for r in asked.resources if r.type.startswith(("gcp:", "tls:"))]


def test_invalid_local_config_lists_every_problem_and_declares_nothing(
    project_dir: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    config = local_stack_config(
        localResultsDir=str(blocker / "results"),
        localModelsDir=str(tmp_path / "no-models-here"),
        shutdownWhenDone=True,
        uploadResults=True,
    )
    # Google Cloud values, even bad ones, are neither required nor checked for a local stack.
    config.update({"gcp:project": "change-me-project", "llamaresttest:sshSourceRanges": ["0.0.0.0/0"]})
    with pytest.raises(ConfigError) as info:
        run_program(project_dir, config, stack="local")
    problems = info.value.problems
    assert problems == (
        "llamaresttest:resultsBucket: is required when uploadResults is true on the local target "
        "(fix: pulumi config set llamaresttest:resultsBucket <bucket>)",
        "llamaresttest:shutdownWhenDone: true would power off this workstation when the batch ends; "
        "it is for the VM only (fix: pulumi config rm llamaresttest:shutdownWhenDone)",
        f"llamaresttest:localResultsDir: {blocker / 'results'} cannot be created: {blocker} is not a "
        "folder (fix: pulumi config set llamaresttest:localResultsDir <a folder you can write>)",
        f"llamaresttest:localModelsDir: {tmp_path / 'no-models-here'} is not an existing folder; it "
        "must hold ex.gguf and ipd.gguf (fix: pulumi config set llamaresttest:localModelsDir <folder>, "
        "or remove the key when no tool needs the models)",
    )
    assert "4 problem(s); nothing was created" in str(info.value)
    assert _declared_nothing()


def test_local_stack_warns_when_this_machine_fits_no_experiment(
    project_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    # No workstation has 10000 CPUs: the limits fit none, which is a warning, not a refusal.
    run = run_program(
        project_dir,
        local_stack_config(localResultsDir=str(tmp_path / "r"), cpusPerContainer=10000),
        stack="tiny",
    )
    assert run.outputs["experimentSlots"] == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("cannot run one experiment with these limits" in w for w in warnings), warnings
    assert runner_container(run)  # the container is still declared


POLICY = "gcp:compute/resourcePolicy:ResourcePolicy"
INSTANCE_IAM = "gcp:compute/instanceIAMMember:InstanceIAMMember"
ATTACHMENT = "gcp:compute/resourcePolicyAttachment:ResourcePolicyAttachment"


def test_spot_with_auto_start_comes_back_by_itself_at_the_same_address_and_key(
    project_dir: Path, _bundles_in_tmp: Path
) -> None:
    """A preempted spot VM is started again by an hourly instance schedule (a no-op while it runs); it
    is the same instance with the same boot disk, so the host key the startup script installed and the
    deployment pins is the same, and with spot the address is reserved (staticIp defaults to spot)."""
    run = run_program(project_dir, base_config(spot=True, autoStart=True))
    policy = run.one(POLICY).inputs
    assert policy["region"] == "us-central1"
    assert policy["instanceSchedulePolicy"] == {
        "timeZone": "UTC",
        "vmStartSchedule": {"schedule": "0 * * * *"},
    }
    assert "vmStopSchedule" not in policy["instanceSchedulePolicy"]
    vm = run.one(INSTANCE).inputs
    grant = run.one(INSTANCE_IAM).inputs
    assert grant["role"] == "roles/compute.instanceAdmin.v1"
    assert grant["member"] == "serviceAccount:service-123456789012@compute-system.iam.gserviceaccount.com"
    assert (grant["instanceName"], grant["zone"], grant["project"]) == (
        vm["name"],
        "us-central1-a",
        GCP_PROJECT,
    )
    # After a restart the deployment still reaches it: the reserved address and the pinned stack key.
    assert vm["networkInterfaces"][0]["accessConfigs"] == [{"natIp": STATIC_IP}]
    deployment = run.one(DEPLOYMENT).inputs
    assert deployment["host"] == STATIC_IP
    _, host_public = run.mocks.keys["ssh-keys-host"]
    assert deployment["host_public_key"] == host_public.strip()
    assert host_public.strip() in vm["metadata"]["startup-script"]  # installed on the disk each boot


def test_the_restart_schedule_is_attached_after_the_service_agent_may_start_the_vm(
    project_dir: Path,
) -> None:
    """Compute refuses to attach a schedule whose service agent cannot start the VM yet (Error 412,
    terraform-provider-google#11899), and that grant is on the instance, so it cannot exist before the
    instance: the schedule is attached by its own resource, after the grant, never in the instance's
    own resource_policies."""
    run = run_program(project_dir, base_config(spot=True, autoStart=True))
    policy, grant, attachment = run.one(POLICY), run.one(INSTANCE_IAM), run.one(ATTACHMENT)
    vm = run.one(INSTANCE)
    assert "resourcePolicies" not in vm.inputs or not vm.inputs["resourcePolicies"]
    assert attachment.inputs == {
        "project": GCP_PROJECT,
        "zone": "us-central1-a",
        "instance": vm.inputs["name"],
        "name": "vm-restart-0f3a",  # the policy's own (auto-)name, read from its outputs
    }
    assert grant.name in run.dependencies[attachment.name]
    assert policy.name in run.dependencies[attachment.name] and vm.name in run.dependencies[attachment.name]
    # The grant needs the instance; nothing the instance needs waits for the attachment.
    assert vm.name in run.dependencies[grant.name]
    assert attachment.name not in run.dependencies[vm.name]
    # A refreshed state listing the attached policy must not make `pulumi up` detach it.
    assert "resourcePolicies" in run.options[vm.name].ignore_changes


def test_no_restart_schedule_without_spot_or_without_auto_start(project_dir: Path) -> None:
    for config in (base_config(), base_config(spot=True, autoStart=False)):
        run = run_program(project_dir, config)
        assert run.of_type(POLICY) == [] and run.of_type(INSTANCE_IAM) == [] and run.of_type(ATTACHMENT) == []
        assert (
            "resourcePolicies" not in run.one(INSTANCE).inputs
            or not run.one(INSTANCE).inputs["resourcePolicies"]
        )
    assert run.of_type(ADDRESS) != []  # spot: the address is reserved all the same
    assert run_program(project_dir, base_config(spot=True, staticIp=False)).of_type(ADDRESS) == []
