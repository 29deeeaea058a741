"""The Pulumi program under mocks: what each stack configuration declares, with which inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from stacks.access import results_write_condition
from stacks.config import ConfigError
from tests.pulumi.harness import EPHEMERAL_IP, GCP_PROJECT, ROOT, STATIC_IP, ProgramRun, run_program

INSTANCE = "gcp:compute/instance:Instance"
FIREWALL = "gcp:compute/firewall:Firewall"
IAM_MEMBER = "gcp:storage/bucketIAMMember:BucketIAMMember"
ACCOUNT = "gcp:serviceaccount/account:Account"
ADDRESS = "gcp:compute/address:Address"
PRIVATE_KEY = "tls:index/privateKey:PrivateKey"

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
    assert custom == sorted([ACCOUNT, IAM_MEMBER, IAM_MEMBER, FIREWALL, INSTANCE, PRIVATE_KEY, PRIVATE_KEY])

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
    assert out["hourlyCostUsd"] == pytest.approx(1.52)
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
    assert run.outputs["hourlyCostUsd"] == pytest.approx(1.156)
    assert run.outputs["instanceName"] == "llamaresttest-big96"


def test_spot_without_a_run_limit_still_stops_when_reclaimed(project_dir: Path) -> None:
    run = run_program(project_dir, base_config(machineType="n1-standard-64", spot=True, maxRunHours=0))
    scheduling = run.one(INSTANCE).inputs["scheduling"]
    assert "maxRunDuration" not in scheduling
    assert scheduling["instanceTerminationAction"] == "STOP"
    assert scheduling["provisioningModel"] == "SPOT"
    assert run.outputs["experimentSlots"] == 4
    assert run.outputs["hourlyCostUsd"] == pytest.approx(0.770)


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


def test_local_target_is_refused_clearly(project_dir: Path) -> None:
    with pytest.raises(ConfigError) as info:
        run_program(project_dir, base_config(target="local"))
    (problem,) = info.value.problems
    assert problem.startswith("llamaresttest:target: 'local' is not available yet")
    assert _declared_nothing()
