"""Cluster mode under Pulumi's mocks (docs/cluster.md): the head, the worker template and group, Ray's
firewall between the two tags only, the registry, every grant; and ``workers: 0`` declaring none of it."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest

from stacks.access import results_write_condition
from stacks.cluster import RESIZE_PERMISSIONS
from stacks.config import BENCHMARK_APIS, ConfigError
from stacks.machines import MACHINE_TYPES
from stacks.ray_nodes import GCS_PORT, HEAD_PORTS, NODE_PORTS
from tests.pulumi.harness import (
    GCP_PROJECT,
    HEAD_INTERNAL_IP,
    ROOT,
    ProgramRun,
    make_project,
    run_program,
)
from tests.pulumi.test_program import (
    ACCOUNT,
    ADDRESS,
    DEPLOYMENT,
    FIREWALL,
    IAM_MEMBER,
    INSTANCE,
    INSTANCE_IAM,
    POLICY,
    _declared_nothing,
    base_config,
)

REPOSITORY = "gcp:artifactregistry/repository:Repository"
REPOSITORY_IAM = "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember"
TEMPLATE = "gcp:compute/instanceTemplate:InstanceTemplate"
GROUP = "gcp:compute/instanceGroupManager:InstanceGroupManager"
CUSTOM_ROLE = "gcp:projects/iAMCustomRole:IAMCustomRole"
PROJECT_IAM = "gcp:projects/iAMMember:IAMMember"
PASSWORD = "random:index/randomPassword:RandomPassword"
CLUSTER_TYPES = (REPOSITORY, REPOSITORY_IAM, TEMPLATE, GROUP, CUSTOM_ROLE, PROJECT_IAM)

HEAD_SA = f"llamaresttest-dev-vm@{GCP_PROJECT}.iam.gserviceaccount.com"
WORKER_SA = f"llamaresttest-dev-wk@{GCP_PROJECT}.iam.gserviceaccount.com"
REGISTRY = f"us-central1-docker.pkg.dev/{GCP_PROJECT}/llamaresttest-dev"
# A Ray pin for projects whose pyproject.toml has none yet (the runner's Ray lands with issue 13).
RAY_PIN = "ray[default]==2.49.2"


def _pyproject(with_ray: bool) -> str:
    text = (ROOT / "pyproject.toml").read_text()
    deps = tomllib.loads(text)["project"]["dependencies"]
    has_ray = [d for d in deps if re.match(r"ray\b", d)]
    if with_ray and not has_ray:
        return text.replace("dependencies = [\n", f'dependencies = [\n  "{RAY_PIN}",\n', 1)
    for dep in [] if with_ray else has_ray:
        text = text.replace(f'"{dep}",', "")
    return text


def _project(base: Path, with_ray: bool) -> Path:
    project = make_project(base, apis=[*BENCHMARK_APIS, "demo-shop"], tools=["llamaresttest", "schemathesis"])
    (project / "pyproject.toml").write_text(_pyproject(with_ray))
    return project


@pytest.fixture(scope="module")
def cluster_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _project(tmp_path_factory.mktemp("cluster-project"), with_ray=True)


def cluster_config(**overrides: object) -> dict[str, object]:
    return base_config(**{"workers": 3, **overrides})


def ray_pin(project: Path) -> str:
    deps = tomllib.loads((project / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(d for d in deps if re.match(r"ray\b", d))


def by_name(run: ProgramRun, type_: str) -> dict[str, dict[str, Any]]:
    return {r.name: r.inputs for r in run.of_type(type_)}


def test_cluster_declares_head_registry_template_group_firewall_and_grants(cluster_project: Path) -> None:
    run = run_program(cluster_project, cluster_config())

    # The head: the one VM the deploy reaches, on demand, small, with the SSH and the Ray head tags.
    head = run.one(INSTANCE).inputs
    assert head["name"] == "llamaresttest-dev"
    assert head["machineType"] == "n1-standard-4"
    assert head["scheduling"]["provisioningModel"] == "STANDARD"
    assert head["scheduling"]["preemptible"] is False
    assert head["tags"] == ["llamaresttest-dev-ssh", "llamaresttest-dev-ray-head"]
    assert head["serviceAccount"]["email"] == HEAD_SA
    assert run.of_type(POLICY) == [] and run.of_type(INSTANCE_IAM) == []  # never a spot restart schedule

    # The registry, in the stack's region.
    repo = run.one(REPOSITORY).inputs
    assert (repo["repositoryId"], repo["location"], repo["format"], repo["project"]) == (
        "llamaresttest-dev",
        "us-central1",
        "DOCKER",
        GCP_PROJECT,
    )

    # The template: spot, deleted when reclaimed (the group recreates it), the worker script.
    template = run.one(TEMPLATE).inputs
    assert template["machineType"] == "n1-standard-32"
    assert template["scheduling"] == {
        "provisioningModel": "SPOT",
        "preemptible": True,
        "automaticRestart": False,
        "onHostMaintenance": "TERMINATE",
        "instanceTerminationAction": "DELETE",
    }
    assert template["serviceAccount"] == {"email": WORKER_SA, "scopes": ["cloud-platform"]}
    assert template["tags"] == ["llamaresttest-dev-ray-worker"]
    assert template["disks"][0]["sourceImage"] == "debian-cloud/debian-12"
    assert (template["disks"][0]["diskSizeGb"], template["disks"][0]["boot"]) == (100, True)
    assert template["metadata"]["block-project-ssh-keys"] == "TRUE"
    assert template["namePrefix"] == "llamaresttest-dev-wk-"

    # The group: zonal, `workers` instances, from that template (by its unique link).
    group = run.one(GROUP).inputs
    # created at 0 and left to the runner: no worker bills while the head builds and pushes images
    assert (group["name"], group["zone"], group["targetSize"]) == (
        "llamaresttest-dev-workers",
        "us-central1-a",
        0,
    )
    assert run.options[run.one(GROUP).name].ignore_changes == ("targetSize",)
    template_link = f"projects/{GCP_PROJECT}/global/instanceTemplates/workers-template?uniqueId=7001"
    assert group["versions"] == [{"instanceTemplate": template_link}]
    assert group["updatePolicy"]["type"] == "OPPORTUNISTIC"
    assert group["waitForInstances"] is False

    # Outputs: the head's type; slots and price of the whole cluster.
    out = run.outputs
    assert (out["workers"], out["workerGroup"], out["registry"]) == (3, "llamaresttest-dev-workers", REGISTRY)
    assert out["machineType"] == "n1-standard-4" and out["workerMachineType"] == "n1-standard-32"
    assert out["experimentSlots"] == 3 * 2
    # us-central1 catalogue figures (remote_runner/cloud/price_table.py; the old table rounded 0.3852 to
    # 0.385)
    assert out["hourlyCostUsd"] == pytest.approx(0.19 + 3 * 0.3852)


def test_ray_ports_are_open_only_between_the_head_and_worker_tags(cluster_project: Path) -> None:
    run = run_program(cluster_project, cluster_config())
    rules = by_name(run, FIREWALL)
    assert set(rules) == {"network-ssh", "ray-firewall-to-head", "ray-firewall-to-workers"}
    to_head, to_workers = rules["ray-firewall-to-head"], rules["ray-firewall-to-workers"]
    assert (to_head["sourceTags"], to_head["targetTags"]) == (
        ["llamaresttest-dev-ray-worker"],
        ["llamaresttest-dev-ray-head"],
    )
    assert (to_workers["sourceTags"], to_workers["targetTags"]) == (
        ["llamaresttest-dev-ray-head", "llamaresttest-dev-ray-worker"],
        ["llamaresttest-dev-ray-worker"],
    )
    assert to_head["allows"] == [{"protocol": "tcp", "ports": list(HEAD_PORTS)}]
    assert to_workers["allows"] == [{"protocol": "tcp", "ports": list(NODE_PORTS)}]
    assert str(GCS_PORT) in HEAD_PORTS and str(GCS_PORT) not in NODE_PORTS
    for rule in (to_head, to_workers):
        assert "sourceRanges" not in rule or not rule["sourceRanges"]  # never 0.0.0.0/0, nor any range
        assert rule["direction"] == "INGRESS"
    # SSH stays the head's only: its rule targets the SSH tag, which no worker carries.
    ssh = rules["network-ssh"]
    assert ssh["targetTags"] == ["llamaresttest-dev-ssh"]
    assert "llamaresttest-dev-ssh" not in run.one(TEMPLATE).inputs["tags"]
    assert ssh["allows"] == [{"protocol": "tcp", "ports": ["22"]}]


def test_grants_workers_read_the_head_writes_and_resizes_its_group_only(cluster_project: Path) -> None:
    run = run_program(cluster_project, cluster_config())
    accounts = {r.inputs["accountId"] for r in run.of_type(ACCOUNT)}
    assert accounts == {"llamaresttest-dev-vm", "llamaresttest-dev-wk"}

    registry = {(m["member"], m["role"]) for m in by_name(run, REPOSITORY_IAM).values()}
    assert registry == {
        (f"serviceAccount:{WORKER_SA}", "roles/artifactregistry.reader"),
        (f"serviceAccount:{HEAD_SA}", "roles/artifactregistry.writer"),
    }
    for member in by_name(run, REPOSITORY_IAM).values():
        assert (member["repository"], member["location"]) == ("llamaresttest-dev", "us-central1")

    # Buckets: each account reads the models and writes only below the results path (stacks/access.py).
    buckets = {(m["member"], m["role"], m["bucket"]) for m in by_name(run, IAM_MEMBER).values()}
    assert buckets == {
        (f"serviceAccount:{sa}", role, "lab-llm-models")
        for sa in (HEAD_SA, WORKER_SA)
        for role in ("roles/storage.objectViewer", "roles/storage.objectUser")
    }
    condition = results_write_condition("lab-llm-models", "llamaresttest-results")
    for member in by_name(run, IAM_MEMBER).values():
        if member["role"] == "roles/storage.objectUser":
            assert member["condition"]["expression"] == condition

    # The workers get nothing else: no project role, no Compute permission.
    project_grants = by_name(run, PROJECT_IAM)
    assert [g["member"] for g in project_grants.values()] == [f"serviceAccount:{HEAD_SA}"]
    # The head: a custom role of two permissions, bound WITHOUT a condition: Google evaluates no
    # resource attributes for compute InstanceGroupManager, so a condition naming the group would
    # never grant (docs/cluster.md, "Grants").
    role = run.one(CUSTOM_ROLE).inputs
    assert role["permissions"] == list(RESIZE_PERMISSIONS)
    assert set(RESIZE_PERMISSIONS) == {
        "compute.instanceGroupManagers.get",
        "compute.instanceGroupManagers.update",
    }
    assert role["roleId"] == "llamaresttest_dev_workers_resize"
    (resizer,) = project_grants.values()
    assert resizer["role"] == f"projects/{GCP_PROJECT}/roles/llamaresttest_dev_workers_resize"
    assert resizer["member"] == f"serviceAccount:{HEAD_SA}"
    assert "condition" not in resizer


def test_startup_scripts_of_head_and_workers(cluster_project: Path) -> None:
    run = run_program(cluster_project, cluster_config(workerMachineType="n1-standard-96"))
    head_script = run.one(INSTANCE).inputs["metadata"]["startup-script"]
    worker_script = run.one(TEMPLATE).inputs["metadata"]["startup-script"]
    host_private, _ = run.mocks.keys["ssh-keys-host"]

    assert "NODE_ROLE='head'\n" in head_script and "--head" in head_script
    assert "--dashboard-host=0.0.0.0" in head_script
    assert host_private.strip() in head_script
    assert "NODE_ROLE='worker'\n" in worker_script
    # Workers join the head's reserved internal address with n1-standard-96's 6 slots, no SSH key.
    assert f"--address={HEAD_INTERNAL_IP}:6379" in worker_script
    assert '--resources={"experiment_slot":6}' in worker_script
    assert "PRIVATE KEY" not in worker_script and "HOST_PRIVATE_KEY=''\n" in worker_script
    pin = ray_pin(cluster_project)
    for script in (head_script, worker_script):
        assert "REGISTRY_HOST=us-central1-docker.pkg.dev\n" in script
        assert shlex.quote(pin) in script  # the same pinned Ray on both
    assert run.outputs["experimentSlots"] == 3 * 6


def test_the_runner_settings_name_ray_the_registry_and_the_group(cluster_project: Path) -> None:
    run = run_program(cluster_project, cluster_config(workers=2))
    experiment = run.one(DEPLOYMENT).inputs["experiment"]
    assert experiment["ray"] == "auto"
    assert experiment["registry"] == REGISTRY
    assert experiment["worker_group"] == {
        "project": GCP_PROJECT,
        "zone": "us-central1-a",
        "name": "llamaresttest-dev-workers",
        "size": 2,
        "slots": 2,  # n1-standard-32 with the default limits
        "machine_type": "n1-standard-32",  # a resume on another family is refused
    }
    # `pulumi destroy` drains the driver before the group, the Ray rules and the grants go.
    needs = run.dependencies[run.one(DEPLOYMENT).name]
    for resource in (
        run.one(GROUP),
        *run.of_type(FIREWALL),
        *run.of_type(REPOSITORY_IAM),
        run.one(PROJECT_IAM),
    ):
        assert resource.name in needs, resource.name


def test_on_demand_workers(cluster_project: Path) -> None:
    run = run_program(cluster_project, cluster_config(workerSpot=False, workers=1))
    scheduling = run.one(TEMPLATE).inputs["scheduling"]
    assert scheduling["provisioningModel"] == "STANDARD" and scheduling["automaticRestart"] is True
    assert "instanceTerminationAction" not in scheduling
    # catalogue figures (remote_runner/cloud/price_table.py); the old table rounded 1.51999 to 1.52
    assert run.outputs["hourlyCostUsd"] == pytest.approx(0.19 + 1.51999)


def test_the_forecast_output_is_the_runner_model_of_the_stacks_own_batch(cluster_project: Path) -> None:
    from remote_runner.batch import forecast

    config = cluster_config(
        workers=20,
        workerMachineType="n2d-standard-32",
        headMachineType="e2-standard-4",
        tools=["llamaresttest", "schemathesis"],
        runsPerCombination=10,
        diskSizeGb=120,
    )
    config["gcp:zone"] = "us-east5-b"
    config.pop("gcp:region", None)
    run = run_program(cluster_project, config)
    out = run.outputs
    assert (out["workerFamily"], out["workerMachineType"], out["machineType"]) == (
        "n2d",
        "n2d-standard-32",
        "e2-standard-4",
    )
    # 11 APIs x 2 tools x 10 runs of 60 min, 2 per n2d-standard-32, us-east5 prices, 120 GB disks
    expected = forecast.forecast(
        forecast.Batch(220, 60.0, 2),
        forecast.Cluster(20, "n2d-standard-32", "e2-standard-4", "us-east5", True),
        forecast.Assumptions(disk_gb=120.0),
        (0.02,),
    ).results[0]
    assert out["forecast"]["runs"] == 220 and out["forecast"]["preemptionRatePerHour"] == 0.02
    assert (out["forecast"]["hoursP50"], out["forecast"]["hoursP95"]) == (
        round(expected.makespan_hours_p50, 2),
        round(expected.makespan_hours_p95, 2),
    )
    assert (out["forecast"]["usdP50"], out["forecast"]["usdP95"]) == (
        round(expected.cost_usd_p50, 2),
        round(expected.cost_usd_p95, 2),
    )
    # 220 runs / 40 slots: 6 waves of an hour and a bit, plus the head's build and the workers' boot
    assert 6 < out["forecast"]["hoursP50"] <= out["forecast"]["hoursP95"] < 9
    # at least the runs themselves: 220 slot-hours at half a worker's spot price
    assert out["forecast"]["usdP50"] > 220 * 0.19469 / 2


def test_workers_zero_declares_no_cluster_resource(cluster_project: Path) -> None:
    one_vm = run_program(cluster_project, base_config())
    explicit = run_program(cluster_project, base_config(workers=0))
    for run in (one_vm, explicit):
        assert not [r for r in run.resources if r.type in CLUSTER_TYPES]
        assert len(run.of_type(FIREWALL)) == 1 and len(run.of_type(ACCOUNT)) == 1
        assert run.one(INSTANCE).inputs["machineType"] == "n1-standard-32"
        assert "NODE_ROLE" not in run.one(INSTANCE).inputs["metadata"]["startup-script"]
        assert not {"ray", "registry", "worker_group"} & set(run.one(DEPLOYMENT).inputs["experiment"])
        assert run.outputs["workers"] == 0 and "workerGroup" not in run.outputs
        assert "forecast" not in run.outputs and "workerFamily" not in run.outputs
    assert sorted(r.type for r in one_vm.resources) == sorted(r.type for r in explicit.resources)


def test_a_runner_without_a_pinned_ray_is_refused_before_anything_is_declared(tmp_path: Path) -> None:
    project = _project(tmp_path, with_ray=False)
    with pytest.raises(ConfigError) as info:
        run_program(project, cluster_config())
    (problem,) = info.value.problems
    assert problem.startswith(
        "llamaresttest:workers: the runner's dependencies in pyproject.toml have no Ray"
    )
    assert _declared_nothing()


def test_cluster_config_problems_are_listed_together(cluster_project: Path) -> None:
    with pytest.raises(ConfigError) as info:
        run_program(
            cluster_project,
            cluster_config(
                workers=-1, workerMachineType="n1-standard-8", headMachineType="n1-tiny", workerSpot="y"
            ),
        )
    problems = info.value.problems
    expected = [
        ("llamaresttest:workers", "at least 0"),
        ("llamaresttest:workerMachineType", "n1-standard-8 (8 vCPUs, 30 GB) is too small for one experiment"),
        ("llamaresttest:headMachineType", "unknown machine type 'n1-tiny'"),
        ("llamaresttest:workerSpot", "true or false"),
    ]
    for key, text in expected:
        assert any(p.startswith(key + ":") and text in p for p in problems), (key, text, problems)
    assert len(problems) == len(expected), problems
    assert _declared_nothing()


def test_the_head_keeps_a_reserved_internal_address_that_the_worker_template_names(
    cluster_project: Path,
) -> None:
    """The workers find the GCS at the address baked into their template: a reserved INTERNAL address
    (free) that the head uses, so a recreated head comes back at the same address."""
    run = run_program(cluster_project, cluster_config())
    (internal,) = [a for a in run.of_type(ADDRESS) if a.inputs.get("addressType") == "INTERNAL"]
    assert internal.inputs == {
        "name": "llamaresttest-dev-head",
        "project": GCP_PROJECT,
        "region": "us-central1",
        "addressType": "INTERNAL",
        "subnetwork": f"projects/{GCP_PROJECT}/regions/us-central1/subnetworks/default",
        "description": internal.inputs["description"],
    }
    head = run.one(INSTANCE)
    assert head.inputs["networkInterfaces"][0]["networkIp"] == HEAD_INTERNAL_IP
    assert internal.name in run.dependencies[head.name]
    worker_script = run.one(TEMPLATE).inputs["metadata"]["startup-script"]
    assert f"--address={HEAD_INTERNAL_IP}:6379" in worker_script
    # The template follows the reserved address, not the instance's own interface.
    assert internal.name in run.dependencies[run.one(TEMPLATE).name]
    # No external address is reserved for an on-demand head (staticIp defaults to spot).
    assert [a.inputs.get("addressType") for a in run.of_type(ADDRESS)] == ["INTERNAL"]


def test_repairs_apply_the_current_template(cluster_project: Path) -> None:
    """A recreated (preempted) worker gets the group's current template, not the one it was first built
    from: the default (NO) would bring back an old script, Ray pin or head address."""
    run = run_program(cluster_project, cluster_config())
    group = run.one(GROUP).inputs
    assert group["instanceLifecyclePolicy"] == {"forceUpdateOnRepair": "YES"}


def test_a_changed_template_is_created_before_the_old_one_is_deleted(cluster_project: Path) -> None:
    """Google refuses to delete a template a group uses (resourceInUseByAnotherResource): the template
    is auto-named from a prefix (old and new exist side by side), replaced create-before-delete, and
    the group follows the new one's unique link in between."""
    run = run_program(cluster_project, cluster_config())
    template, group = run.one(TEMPLATE), run.one(GROUP)
    assert "name" not in template.inputs
    assert template.inputs["namePrefix"] == "llamaresttest-dev-wk-"
    assert run.options[template.name].delete_before_replace is False
    assert template.name in run.dependencies[group.name]
    assert group.inputs["versions"][0]["instanceTemplate"].endswith("?uniqueId=7001")
    # The head, by contrast, has a fixed name and must go first: the check above can tell them apart.
    assert run.options[run.one(INSTANCE).name].delete_before_replace is True


def test_the_ray_token_is_a_secret_in_the_head_and_worker_metadata_only(cluster_project: Path) -> None:
    """One random token, kept secret end to end: generated by pulumi-random, handed to the head and
    the worker template in their metadata (each node's startup script copies it into a root-only
    file), in no startup script, no runner setting and no stack output."""
    run = run_program(cluster_project, cluster_config())
    (password,) = run.of_type(PASSWORD)
    assert password.inputs["length"] == 64 and password.inputs["special"] is False
    head, template = run.one(INSTANCE), run.one(TEMPLATE)
    token = head.inputs["metadata"]["ray-auth-token"]
    assert len(token) == 64 and token.isalnum()
    assert template.inputs["metadata"]["ray-auth-token"] == token
    for resource in (head, template):
        assert "metadata" in resource.secret_inputs, resource.name
        assert token not in resource.inputs["metadata"]["startup-script"]
    assert password.name in run.dependencies[template.name]
    assert token not in repr(run.one(DEPLOYMENT).inputs)
    assert token not in repr(run.outputs)
    # The one VM has no Ray and no token.
    one_vm = run_program(cluster_project, base_config())
    assert one_vm.of_type(PASSWORD) == []
    assert "ray-auth-token" not in one_vm.one(INSTANCE).inputs["metadata"]


def test_the_head_releases_its_workers_when_it_stops(cluster_project: Path) -> None:
    """The head's metadata carries the shutdown script (any stop but a reboot resizes the group to 0);
    workers and the one VM have none."""
    from stacks.startup import render_shutdown_script

    run = run_program(cluster_project, cluster_config())
    assert run.one(INSTANCE).inputs["metadata"]["shutdown-script"] == render_shutdown_script()
    assert "release-workers" in run.one(INSTANCE).inputs["metadata"]["shutdown-script"]
    assert "shutdown-script" not in run.one(TEMPLATE).inputs["metadata"]
    one_vm = run_program(cluster_project, base_config())
    assert "shutdown-script" not in one_vm.one(INSTANCE).inputs["metadata"]


# Which Google API serves each resource type the cluster declares (the provider's module names).
API_OF_MODULE = {
    "compute": "compute.googleapis.com",
    "artifactregistry": "artifactregistry.googleapis.com",
    "serviceaccount": "iam.googleapis.com",
    # Project-level IAM bindings read and write the project's policy through Resource Manager.
    "projects/iAMMember": "cloudresourcemanager.googleapis.com",
    "projects/iAMCustomRole": "iam.googleapis.com",
    "storage": "storage.googleapis.com",  # bucket IAM: the Cloud Storage API, on in every project
}


def test_docs_name_every_api_the_cluster_calls_and_the_quotas_it_needs(cluster_project: Path) -> None:
    run = run_program(cluster_project, cluster_config())
    used = set()
    for resource in run.resources:
        if not resource.type.startswith("gcp:"):
            continue
        module_path = resource.type.split(":")[1]
        api = API_OF_MODULE.get(module_path) or API_OF_MODULE[module_path.split("/")[0]]
        used.add(api)
    assert {"compute.googleapis.com", "cloudresourcemanager.googleapis.com"} <= used
    text = (ROOT / "docs" / "cluster.md").read_text()
    running = text[text.index("## Running it on Google Cloud") : text.index("## On an existing Ray cluster")]
    apis = running[running.index("### APIs to enable") : running.index("### Quotas a cluster needs")]
    command = apis.index("gcloud services enable")
    enable = apis[command : apis.index("```", command)]
    for api in used - {"storage.googleapis.com"}:
        assert f"`{api}`" in apis and api in enable, api
    quotas = running[running.index("### Quotas a cluster needs") :]
    named = set(re.findall(r"^\| `([A-Z0-9_]+)`", quotas, flags=re.MULTILINE))
    assert {"CPUS", "PREEMPTIBLE_CPUS", "IN_USE_ADDRESSES", "SSD_TOTAL_GB"} <= named
    # The worked example's figures follow from the stack's own sizes: 8 n1-standard-96 spot workers
    # and a head, each with an external address and a 100 GB pd-balanced disk (the default).
    worker_cpus = 8 * MACHINE_TYPES["n1-standard-96"].vcpus
    head_cpus = MACHINE_TYPES["n1-standard-4"].vcpus
    example = {
        "CPUS": f"{head_cpus} ({head_cpus + worker_cpus} without",
        "PREEMPTIBLE_CPUS": str(worker_cpus),
    }
    example |= {"IN_USE_ADDRESSES": "9", "SSD_TOTAL_GB": str(9 * 100)}
    for metric, figure in example.items():
        row = next(line for line in quotas.splitlines() if line.startswith(f"| `{metric}` |"))
        assert row.rsplit("|", 2)[1].strip().startswith(figure), (metric, row)


def test_cluster_components_keep_their_urns_from_before_they_were_one_component(
    cluster_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cluster's components were declared at the stack's root before the Cluster component held
    them: each now under it carries an alias to its old root parent, so `pulumi up` on an existing
    stack moves them (and, through the engine, their children) instead of replacing them."""
    from pulumi.runtime.mocks import MockMonitor

    seen: dict[str, Any] = {}
    original = MockMonitor.RegisterResource

    def register(monitor: MockMonitor, request: Any) -> Any:
        seen.setdefault(request.name, request)  # the component, before its children of the same name
        return original(monitor, request)

    monkeypatch.setattr(MockMonitor, "RegisterResource", register)
    run_program(cluster_project, cluster_config())
    cluster = seen["cluster"]
    assert cluster.type == "llamaresttest:stacks:Cluster"
    moved = (
        "worker-access",
        "registry",
        "cluster-grants",
        "ray-firewall",
        "ray-token",
        "head-address",
        "workers",
    )
    for name in moved:
        request = seen[name]
        assert request.parent.endswith("llamaresttest:stacks:Cluster::cluster"), name
        # the SDK sends aliases as specs (aliasSpecs) or, to an older monitor, as computed URNs
        specs = [a.spec for a in request.aliases if a.HasField("spec")]
        old_urns = [*request.aliasURNs, *(a.urn for a in request.aliases if a.urn)]
        at_root = any(spec.noParent for spec in specs) or any(
            urn.endswith(f"::{request.type}::{name}") and "stacks:Cluster$" not in urn for urn in old_urns
        )
        assert at_root, (name, old_urns, specs)
    # the head's components stay where they were: no alias needed, none given
    for name in ("ssh-keys", "access", "network", "vm", "deploy"):
        assert not seen[name].parent.endswith("::cluster"), name
        assert not list(seen[name].aliases) and not list(seen[name].aliasURNs), name
