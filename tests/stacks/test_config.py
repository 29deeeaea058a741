"""The stack config, built from raw values without Pulumi."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from remote_runner.batch.settings import merge
from stacks.config import (
    BENCHMARK_APIS,
    ConfigError,
    StackConfig,
    build_config,
    discover_catalog,
    experiment_settings,
    memory_bytes,
    resource_name,
)
from stacks.machines import MachineType

KNOWN_APIS = (*BENCHMARK_APIS, "demo-shop")
KNOWN_TOOLS = ("llamaresttest", "schemathesis")
GCP = {"project": "research-project-1", "region": "us-central1", "zone": "us-central1-a"}
REQUIRED = {"modelsBucket": "lab-llm-models", "sshSourceRanges": '["198.18.7.0/24"]'}


def build(stack: str = "dev", gcp: dict[str, Any] | None = None, **raw: object) -> StackConfig:
    return build_config(
        {**REQUIRED, **raw},
        stack=stack,
        gcp=GCP if gcp is None else gcp,
        known_apis=KNOWN_APIS,
        known_tools=KNOWN_TOOLS,
    )


def problems_of(**raw: object) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        build(**raw)
    return info.value.problems


def test_defaults() -> None:
    cfg = build()
    assert cfg.machine_type == "n1-standard-32"
    assert (cfg.disk_size_gb, cfg.disk_type, cfg.spot, cfg.max_run_hours) == (100, "pd-balanced", False, 24)
    assert (cfg.models_path, cfg.results_bucket, cfg.results_path) == (
        "LlamaRestTest",
        "lab-llm-models",
        "llamaresttest-results",
    )
    assert cfg.apis == BENCHMARK_APIS and len(cfg.apis) == 11
    assert cfg.tools == ("llamaresttest",)
    assert (cfg.runs_per_combination, cfg.time_budget_minutes) == (1, 60)
    assert (cfg.cpus_per_container, cfg.memory_per_container_gb, cfg.min_free_cpus) == (8, 16, 14)
    assert (cfg.auto_start, cfg.upload_results, cfg.shutdown_when_done) == (False, True, True)
    assert (cfg.allow_ssh_from_anywhere, cfg.static_ip, cfg.network, cfg.ssh_user) == (
        False,
        False,
        "default",
        "llamaresttest",
    )
    assert cfg.target == "gcp"
    assert (cfg.zone, cfg.region, cfg.gcp_project) == ("us-central1-a", "us-central1", "research-project-1")
    # the catalogue's us-central1 price (remote_runner/cloud/price_table.py); the old hand-kept table said
    # 1.52
    assert (cfg.experiment_slots, cfg.hourly_cost_usd) == (2, 1.51999)
    assert cfg.results_url == "gs://lab-llm-models/llamaresttest-results/"
    assert cfg.models_url == "gs://lab-llm-models/LlamaRestTest/"


def test_typed_and_string_values_mean_the_same() -> None:
    as_strings = build(spot="true", diskSizeGb="200", cpusPerContainer="4.5", apis='["blog", "ncs"]')
    as_values = build(spot=True, diskSizeGb=200, cpusPerContainer=4.5, apis=["blog", "ncs"])
    comma_list = build(spot="True", diskSizeGb=" 200 ", cpusPerContainer=4.5, apis="blog, ncs")
    assert as_strings == as_values == comma_list
    assert as_values.apis == ("blog", "ncs")


def test_region_follows_zone_and_must_agree_with_it() -> None:
    cfg = build(gcp={"project": "research-project-1", "zone": "europe-west4-b"})
    assert cfg.region == "europe-west4"
    with pytest.raises(ConfigError) as info:
        build(gcp={"project": "research-project-1", "zone": "europe-west4-b", "region": "us-central1"})
    assert info.value.problems == (
        "gcp:region: 'us-central1' does not contain the zone europe-west4-b; set them to agree",
    )


def test_every_problem_is_reported_at_once() -> None:
    problems = problems_of(
        machineType="e2-micro",
        diskType="ssd",
        maxRunHours=-1,
        modelsBucket="Bad_Bucket",
        modelsPath="a//b",
        sshSourceRanges="[]",
        sshUser="root",
        apis=[],
        tools=["llamaresttest", "llamaresttest"],
        runsPerCombination="two",
        memoryPerContainerGb=0,
        autoStart="yes",
    )
    keys = [p.split(": ", 1)[0] for p in problems]
    assert keys == [
        "llamaresttest:machineType",
        "llamaresttest:diskType",
        "llamaresttest:maxRunHours",
        "llamaresttest:modelsBucket",
        "llamaresttest:modelsPath",
        "llamaresttest:sshSourceRanges",
        "llamaresttest:sshUser",
        "llamaresttest:apis",
        "llamaresttest:tools",
        "llamaresttest:runsPerCombination",
        "llamaresttest:memoryPerContainerGb",
        "llamaresttest:autoStart",
    ]
    text = "\n".join(problems)
    assert "unknown machine type 'e2-micro'; e2 sizes: e2-standard-4, e2-standard-8, e2-standard-16" in text
    assert "listed twice: llamaresttest" in text
    assert "is required: the CIDRs allowed to reach SSH" in text


def test_missing_project_and_placeholders() -> None:
    problems = problems_of(gcp={}, modelsBucket="change-me-models-bucket", resultsBucket="change-me-results")
    assert problems == (
        "gcp:project is required (fix: pulumi config set gcp:project <your project id>)",
        "llamaresttest:modelsBucket: 'change-me-models-bucket' is the example value; set your bucket's name",
        "llamaresttest:resultsBucket: 'change-me-results' is the example value; set your bucket's name",
    )


def test_unknown_key_is_a_problem_with_a_suggestion() -> None:
    (problem,) = problems_of(timeBudgetMinute=30)
    assert problem.startswith(
        "llamaresttest:timeBudgetMinute: unknown key (did you mean 'timeBudgetMinutes'?)"
    )


def test_unknown_targets_are_refused() -> None:
    (other,) = problems_of(target="aws")
    assert other == "llamaresttest:target: 'aws' is not a target; choose one of gcp, local"


WORKSTATION = MachineType("this machine", 12, 31.0, 0.0, 0.0)


def build_local(project_root: Path, **raw: object) -> StackConfig:
    return build_config(
        {"target": "local", **raw},
        stack="local",
        gcp={},
        known_apis=KNOWN_APIS,
        known_tools=KNOWN_TOOLS,
        project_root=project_root,
        local_machine=WORKSTATION,
    )


def test_local_target_needs_no_google_cloud_values_and_checks_none(tmp_path: Path) -> None:
    cfg = build_local(
        tmp_path,
        modelsBucket="Not_A_Bucket",  # neither required nor checked locally
        sshSourceRanges='["0.0.0.0/0"]',
        machineType="e2-micro",
        cpusPerContainer=2,
        memoryPerContainerGb=4,
        minFreeCpus=0,
    )
    assert cfg.is_local and cfg.gcp_project == ""
    assert cfg.local_results_dir == tmp_path / "results" and cfg.local_models_dir is None
    assert (cfg.upload_results, cfg.shutdown_when_done) == (False, False)
    # This machine, not a machine type: 12 CPUs allow 3 experiments of 4, 31-4 GB allow 3 of 8 GB.
    assert (cfg.machine, cfg.experiment_slots, cfg.hourly_cost_usd) == (WORKSTATION, 3, 0.0)


def test_local_folders_are_resolved_and_checked(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    cfg = build_local(tmp_path, localResultsDir="out/../runs", localModelsDir="models")
    assert cfg.local_results_dir == tmp_path / "runs"
    assert cfg.local_models_dir == tmp_path / "models"
    absolute = build_local(tmp_path, localResultsDir=str(tmp_path / "elsewhere" / "deep"))
    assert absolute.local_results_dir == tmp_path / "elsewhere" / "deep"
    assert not (tmp_path / "elsewhere").exists()  # checking creates nothing

    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError) as info:
        build_local(tmp_path, localResultsDir="file", localModelsDir="missing", apis=["nope"])
    keys = [p.split(": ", 1)[0] for p in info.value.problems]
    assert keys == ["llamaresttest:apis", "llamaresttest:localResultsDir", "llamaresttest:localModelsDir"]
    assert f"{tmp_path / 'file'} exists but is not a folder" in info.value.problems[1]
    assert f"{tmp_path / 'missing'} is not an existing folder" in info.value.problems[2]


def test_local_upload_is_opt_in_and_then_needs_a_bucket(tmp_path: Path) -> None:
    assert not build_local(tmp_path, modelsBucket="lab-llm-models").upload_results
    assert not build_local(tmp_path, uploadResults="false").upload_results
    cfg = build_local(tmp_path, uploadResults="true", modelsBucket="lab-llm-models")
    assert (cfg.upload_results, cfg.results_bucket, cfg.results_path) == (
        True,
        "lab-llm-models",
        "llamaresttest-results",
    )
    settings = experiment_settings(cfg, tmp_path)
    assert settings["upload"] == {"bucket": "lab-llm-models", "path": "llamaresttest-results"}
    with pytest.raises(ConfigError) as info:
        build_local(tmp_path, uploadResults=True, resultsBucket="Bad_Bucket")
    assert info.value.problems == (
        "llamaresttest:resultsBucket: 'Bad_Bucket' is not a Cloud Storage bucket name "
        "(lower case, 3-63 characters)",
    )


def test_local_experiment_settings_use_this_machines_folders(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    cfg = build_local(tmp_path, apis=["demo-shop"], tools=["schemathesis"], timeBudgetMinutes=5)
    settings = experiment_settings(cfg, tmp_path)
    assert (settings["catalog"], settings["results"]) == (str(tmp_path), str(tmp_path / "results"))
    assert "models_dir" not in settings and "upload" not in settings
    assert settings["shutdown_when_done"] is False and settings["budget_seconds"] == 300
    with_models = experiment_settings(build_local(tmp_path, localModelsDir="models"), tmp_path)
    assert with_models["models_dir"] == str(tmp_path / "models")
    with pytest.raises(ConfigError) as info:
        build_local(tmp_path, shutdownWhenDone=True)
    assert info.value.problems == (
        "llamaresttest:shutdownWhenDone: true would power off this workstation when the batch ends; "
        "it is for the VM only (fix: pulumi config rm llamaresttest:shutdownWhenDone)",
    )


def test_local_keys_are_ignored_on_gcp(tmp_path: Path) -> None:
    cfg = build(localResultsDir=str(tmp_path / "file-does-not-matter"), localModelsDir="/nowhere")
    assert (cfg.local_results_dir, cfg.local_models_dir) == (None, None)
    assert experiment_settings(cfg)["results"] == "/opt/llamaresttest/results"


def test_no_catalog_on_disk_is_explained() -> None:
    with pytest.raises(ConfigError) as info:
        build_config(REQUIRED, stack="dev", gcp=GCP, known_apis=(), known_tools=())
    assert info.value.problems == (
        "llamaresttest:apis: no apis found: each needs apis/<name>/Dockerfile in the project",
        "llamaresttest:tools: no tools found: each needs tools/<name>/Dockerfile in the project",
    )


def test_experiment_settings_follow_the_runner_contract() -> None:
    cfg = build(
        apis=["blog", "market"],
        tools=["llamaresttest", "schemathesis"],
        runsPerCombination=10,
        timeBudgetMinutes=90,
        cpusPerContainer=4,
        memoryPerContainerGb=12,
        minFreeCpus=8,
        resultsBucket="lab-results",
        resultsPath="runs/",
        shutdownWhenDone=False,
    )
    assert experiment_settings(cfg) == {
        "catalog": "/opt/llamaresttest/current",
        "results": "/opt/llamaresttest/results",
        "batch": None,
        "apis": ["blog", "market"],
        "tools": ["llamaresttest", "schemathesis"],
        "runs": 10,
        "budget_seconds": 5400,
        "cpus_per_container": 4,
        "memory_per_container": 12 * 1024**3,  # bytes, as the runner writes sizes
        "min_free_cpus": 8,
        "models_dir": "/opt/llamaresttest/models",
        "upload": {"bucket": "lab-results", "path": "runs"},
        "shutdown_when_done": False,
    }
    small = build(uploadResults=False, cpusPerContainer=0.5, memoryPerContainerGb=0.5)
    no_upload = experiment_settings(small)
    assert "upload" not in no_upload
    assert (no_upload["cpus_per_container"], no_upload["memory_per_container"]) == (0.5, 512 * 1024**2)


def test_runner_settings_the_runner_would_refuse_fail_the_stack() -> None:
    """The stack's own checks are looser than the runner's (any positive size, any positive CPUs):
    the runner's schema decides, at ``pulumi up``, before anything is declared."""
    assert problems_of(memoryPerContainerGb=0.001, cpusPerContainer=0.005) == (
        "llamaresttest:cpusPerContainer: the runner refuses the setting it gives, cpus_per_container: "
        "must be positive, got 0.005 (fix: pulumi config set llamaresttest:cpusPerContainer <at least 0.01>)",
        "llamaresttest:memoryPerContainerGb: the runner refuses the setting it gives, memory_per_container: "
        "memory size 1073742 is below Docker's minimum of 6m "
        "(fix: pulumi config set llamaresttest:memoryPerContainerGb "
        "<at least 0.006 (6 MiB, Docker's minimum)>)",
    )
    # a value the stack's own check refused is reported once, by the stack
    assert problems_of(cpusPerContainer=-1) == (
        "llamaresttest:cpusPerContainer: -1 is out of range; it must be more than 0",
    )
    # every problem at once: an unknown machine type does not hide the runner's
    keys = [p.split(": ", 1)[0] for p in problems_of(machineType="n9-huge", memoryPerContainerGb=0.001)]
    assert keys == ["llamaresttest:machineType", "llamaresttest:memoryPerContainerGb"]


def test_experiment_settings_round_trip_through_the_runners_schema(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    for cfg, root in (
        (build(memoryPerContainerGb=1.5, cpusPerContainer=0.5, resultsPath="/runs/x/"), None),
        (build(uploadResults=False, shutdownWhenDone=False), None),
        (build_local(tmp_path, localModelsDir="models", uploadResults=True, resultsBucket="lab-r"), tmp_path),
    ):
        written = experiment_settings(cfg, root)
        settings, problems = merge(written, {})
        assert problems == []
        again = settings.to_json()
        assert {key: again[key] for key in written} == written
    assert (
        written["memory_per_container"] == 16 * 1024**3
        and written["upload"]["path"] == "llamaresttest-results"
    )


def test_names_and_memory_notation() -> None:
    assert resource_name("llamaresttest-My_Stack.96", 40) == "llamaresttest-my-stack-96"
    assert resource_name("9lives", 63) == "x-9lives"
    long_a, long_b = resource_name("a" * 50 + "-b", 40), resource_name("a" * 50 + "-c", 40)
    assert len(long_a) == len(long_b) == 40 and long_a.startswith("a" * 33 + "-") and long_a != long_b
    assert build(stack="Big.Stack").resource_prefix == "llamaresttest-big-stack"
    assert (memory_bytes(16), memory_bytes(1.5), memory_bytes(0.25)) == (16 << 30, 1536 << 20, 256 << 20)


def test_discover_catalog_counts_only_folders_with_a_dockerfile(tmp_path: Path) -> None:
    for folder in ("apis/blog", "apis/ncs", "apis/notes", "tools/llamaresttest"):
        (tmp_path / folder).mkdir(parents=True)
    for dockerfile in ("apis/blog", "apis/ncs", "tools/llamaresttest"):
        (tmp_path / dockerfile / "Dockerfile").write_text("FROM scratch\n")
    assert discover_catalog(tmp_path) == (("blog", "ncs"), ("llamaresttest",))
    assert discover_catalog(tmp_path / "missing") == ((), ())


def test_shutdown_when_done_defaults_on_for_gcp_and_can_be_turned_off() -> None:
    assert build().shutdown_when_done is True
    assert build(shutdownWhenDone="false").shutdown_when_done is False
    assert problems_of(shutdownWhenDone="sometimes") == (
        "llamaresttest:shutdownWhenDone: 'sometimes' is not true or false "
        "(fix: pulumi config set llamaresttest:shutdownWhenDone <true or false>)",
    )


# --- cluster mode (docs/cluster.md) -----------------------------------------------------------------


def test_cluster_keys_default_to_the_one_vm_stack() -> None:
    cfg = build()
    assert (cfg.workers, cfg.is_cluster, cfg.worker_spot) == (0, False, True)
    assert cfg.worker_machine is not None and cfg.worker_machine.name == "n1-standard-32"
    assert cfg.head_machine is not None and cfg.head_machine.name == "n1-standard-4"
    # The one VM is what it was: its machine, its price, its slots; the settings have no Ray.
    assert (cfg.machine_type, cfg.experiment_slots, cfg.hourly_cost_usd) == ("n1-standard-32", 2, 1.51999)
    assert not {"ray", "registry", "worker_group"} & set(experiment_settings(cfg))


def test_a_cluster_is_a_small_on_demand_head_and_n_workers() -> None:
    cfg = build(workers="4", workerMachineType="n1-standard-96", spot="true")
    assert cfg.is_cluster and cfg.workers == 4
    # machineType and spot apply to nothing: the head is headMachineType, on demand.
    assert cfg.machine_type == "n1-standard-4"
    assert (cfg.worker_slots, cfg.experiment_slots) == (6, 24)
    # us-central1 catalogue figures (remote_runner/cloud/price_table.py; the old table rounded 1.1556 to
    # 1.156)
    assert cfg.hourly_cost_usd == pytest.approx(0.19 + 4 * 1.1556)
    assert build(workers=4, workerMachineType="n1-standard-96", workerSpot=False).hourly_cost_usd == (
        pytest.approx(0.19 + 4 * 4.55998)
    )
    assert cfg.worker_family == "n1"
    assert cfg.registry == "us-central1-docker.pkg.dev/research-project-1/llamaresttest-dev"
    settings = experiment_settings(cfg)
    assert (settings["ray"], settings["registry"]) == ("auto", cfg.registry)
    assert settings["worker_group"] == {
        "project": "research-project-1",
        "zone": "us-central1-a",
        "name": "llamaresttest-dev-workers",
        "size": cfg.workers,
        "slots": max(1, cfg.worker_slots),
        # the batch's worker family is checked on resume (remote_runner/batch/family_check.py)
        "machine_type": "n1-standard-96",
    }


def test_with_workers_the_experiment_must_fit_a_worker_not_machine_type() -> None:
    # machineType too small is no problem once it applies to nothing...
    assert build(workers=2, machineType="n1-standard-8").experiment_slots == 4
    # ...but a worker too small is, with the same message and fix as the one VM.
    (problem,) = problems_of(workers=2, workerMachineType="n1-standard-16", cpusPerContainer=10)
    assert problem.startswith(
        "llamaresttest:workerMachineType: n1-standard-16 (16 vCPUs, 60 GB) is too small for one experiment"
    )
    assert "choose n1-standard-32 or n1-standard-64 or n1-standard-96" in problem


def test_cluster_key_problems_are_all_listed() -> None:
    problems = problems_of(
        workers="many", workerMachineType="m5-standard-32", headMachineType="n1-standard4", workerSpot=3
    )
    known = (
        "n1 sizes: n1-standard-4, n1-standard-8, n1-standard-16, "
        "n1-standard-32, n1-standard-64, n1-standard-96"
    )
    assert problems == (
        "llamaresttest:workers: 'many' is not a whole number "
        "(fix: pulumi config set llamaresttest:workers <a whole number>)",
        "llamaresttest:workerMachineType: unknown machine family 'm5' in 'm5-standard-32'; the families are "
        'n1, e2, n2, n2d, c3 (docs/cluster.md, "Which family and region")',
        "llamaresttest:headMachineType: unknown machine type 'n1-standard4' "
        f"(did you mean 'n1-standard-4'?); {known}",
        "llamaresttest:workerSpot: 3 is not true or false "
        "(fix: pulumi config set llamaresttest:workerSpot <true or false>)",
    )
    (negative,) = problems_of(workers=-2)
    assert negative == "llamaresttest:workers: -2 is too small; it must be at least 0"


def test_a_local_stack_has_no_workers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        build_local(tmp_path, workers=2, cpusPerContainer=2, memoryPerContainerGb=4, minFreeCpus=0)
    (problem,) = info.value.problems
    assert problem.startswith("llamaresttest:workers: is for the gcp target")
    assert "docs/cluster.md" in problem and "pulumi config rm llamaresttest:workers" in problem
    cfg = build_local(tmp_path, cpusPerContainer=2, memoryPerContainerGb=4, minFreeCpus=0)
    assert not cfg.is_cluster and "ray" not in experiment_settings(cfg, tmp_path)


def test_max_cost_usd_caps_a_cluster_with_the_stack_s_prices() -> None:
    cfg = build(workers=4, workerMachineType="n1-standard-96", maxCostUsd="150")
    settings = experiment_settings(cfg)
    assert settings["max_cost_usd"] == 150.0
    assert settings["cost_rates"] == {
        "head_usd_per_hour": pytest.approx(0.19, abs=1e-4),
        "worker_usd_per_hour": pytest.approx(1.1556),  # n1-standard-96 spot in us-central1
    }
    assert "max_cost_usd" not in experiment_settings(build(workers=4))  # 0: no cap
    (problem,) = problems_of(maxCostUsd="50")  # one VM: nothing to cap
    assert (
        problem.startswith("llamaresttest:maxCostUsd: caps a cluster's spend")
        and "pulumi config rm" in problem
    )
    (problem,) = problems_of(workers=2, maxCostUsd="-1")
    assert problem.startswith("llamaresttest:maxCostUsd")


def test_worker_wait_minutes_is_the_head_s_patience_for_its_first_worker() -> None:
    assert experiment_settings(build(workers=2))["worker_wait_seconds"] == 1800  # the runner's default
    assert experiment_settings(build(workers=2, workerWaitMinutes="0.75"))["worker_wait_seconds"] == 45
    assert "worker_wait_seconds" not in experiment_settings(build())  # one VM: no workers to wait for
    (problem,) = problems_of(workerWaitMinutes="10")
    assert problem.startswith("llamaresttest:workerWaitMinutes: is how long a cluster's head waits")
    assert "pulumi config rm llamaresttest:workerWaitMinutes" in problem
    (problem,) = problems_of(workers=2, workerWaitMinutes="0")
    assert problem.startswith("llamaresttest:workerWaitMinutes: 0 is out of range")


def test_a_preset_gives_the_runner_its_protocol_and_explicit_keys_override_it() -> None:
    """The stack key ``preset`` goes to the runner, checked by the runner's own schema; the stack's
    defaults (runsPerCombination 1, timeBudgetMinutes 60, ...) give way to the preset's values, and a
    key the stack sets explicitly overrides the preset's, as a flag does on the command line."""
    written = experiment_settings(build(preset="restgym"))
    assert written["preset"] == "restgym" and "runs" not in written and "budget_seconds" not in written
    settings, problems = merge(written, {})
    assert problems == [] and (settings.runs, settings.budget_seconds, settings.shuffle) == (10, 3600.0, True)
    assert settings.memory_per_container == memory_bytes(16)
    explicit = experiment_settings(build(preset="restgym", runsPerCombination=2))
    assert explicit["runs"] == 2 and "budget_seconds" not in explicit
    assert "preset" not in experiment_settings(build())  # no preset: the stack's values, as before
    (problem,) = problems_of(preset="nope")
    assert problem.startswith(
        "llamaresttest:preset: the runner refuses the setting it gives, preset: unknown preset"
    )
    assert "known: llamaresttest-fse25, restgym" in problem


# --- machine families and regions (docs/cluster.md, "Which family and region") ----------------------


def test_the_recommended_cluster_n2d_workers_and_an_e2_head_in_us_east5() -> None:
    cfg = build(
        gcp={"project": "research-project-1", "zone": "us-east5-b"},
        workers=55,
        workerMachineType="n2d-standard-32",
        headMachineType="e2-standard-4",
    )
    assert (cfg.region, cfg.worker_family, cfg.worker_slots, cfg.experiment_slots) == (
        "us-east5",
        "n2d",
        2,
        110,
    )
    # us-east5's own prices, not us-central1's: e2-standard-4 on demand + 55 x n2d-standard-32 spot
    assert cfg.hourly_cost_usd == pytest.approx(0.13403 + 55 * 0.19469)


def test_a_region_without_a_price_for_the_machines_is_refused() -> None:
    # Google offers no n1 in us-east5 (the catalogue has no row): the stack says so, for each machine.
    problems = problems_of(gcp={"project": "research-project-1", "zone": "us-east5-a"}, workers=2)
    assert problems == (
        "gcp:region: 'us-east5' has no price for n1-standard-32 (llamaresttest:workerMachineType); the price "
        "table has it in europe-west4, us-central1 (choose one, or refresh the table: "
        "scripts/refresh_prices.py, docs/cluster.md)",
        "gcp:region: 'us-east5' has no price for n1-standard-4 (llamaresttest:headMachineType); the price "
        "table has it in europe-west4, us-central1 (choose one, or refresh the table: "
        "scripts/refresh_prices.py, docs/cluster.md)",
    )
    (one_vm,) = problems_of(gcp={"project": "research-project-1", "zone": "asia-east1-a"})
    assert one_vm.startswith(
        "gcp:region: 'asia-east1' has no price for n1-standard-32 (llamaresttest:machineType)"
    )


def test_a_zone_that_does_not_offer_the_family_is_refused() -> None:
    # c3 is listed in us-east5-b and -c only
    (problem,) = problems_of(
        gcp={"project": "research-project-1", "zone": "us-east5-a"},
        workers=3,
        workerMachineType="c3-standard-88",
        headMachineType="e2-standard-4",
    )
    assert problem == (
        "gcp:zone: c3-standard-88 (llamaresttest:workerMachineType) is not offered in us-east5-a; "
        "choose one of us-east5-b, us-east5-c"
    )


@pytest.mark.parametrize(
    ("worker", "family", "slots"),
    [
        ("n1-standard-96", "n1", 6),
        ("n2-standard-64", "n2", 4),
        ("n2d-standard-96", "n2d", 6),
        ("c3-standard-88", "c3", 5),
        ("e2-standard-32", "e2", 2),
    ],
)
def test_every_family_can_be_a_worker(worker: str, family: str, slots: int) -> None:
    cfg = build(workers=2, workerMachineType=worker, headMachineType="e2-standard-4")
    assert (cfg.worker_family, cfg.worker_slots) == (family, slots)


def test_a_batch_that_cannot_fit_the_disk_is_refused_with_its_numbers() -> None:
    # the papers' 660 runs of 1 h on one VM: 660 x (0.0864 GB of traffic at 40 requests/s x 0.6 KB,
    # + 0.05 GB) + 40 GB of system and images + 11 GB of models = 141 GB: more than 100
    (problem,) = problems_of(runsPerCombination="60")
    assert problem == (
        "llamaresttest:diskSizeGb: 100 GB cannot hold the batch, which needs about 142 GB: 660 runs x "
        "(0.09 GB of traffic at 40 requests/s x 0.6 KB per request over 60 min + 0.05 GB) + 40 GB of "
        "system and images + 11 GB of models (assumed; docs/stacks.md). Fix: pulumi config set "
        "llamaresttest:diskSizeGb 156, or fewer runs or a shorter budget"
    )
    assert build(runsPerCombination="60", diskSizeGb="160").disk_size_gb == 160  # room enough: accepted
    assert build().disk_size_gb == 100  # the default batch (11 runs of 1 h) fits the default disk
    # a cluster's head keeps summaries only and a worker one run per slot: the same batch fits 100 GB
    assert build(runsPerCombination="60", workers="8").disk_size_gb == 100
