"""llamaresttest: the experiment VM on Google Cloud, or this workstation's Docker engine (docs/stacks.md).

Table of contents: the stack's config is read and validated first (nothing is declared if it has a
problem), then, by ``target``, one component per concern, then the outputs.

- ``gcp``: SSH keys, the VM's access, its network, (with ``workers > 0``, docs/cluster.md) the cluster
  as one component (the workers' access, the registry, Ray's firewall and token, the head's address,
  the worker group), the VM (the cluster's head) and its startup script, then the runner deployed
  onto it over SSH (docs/deploy.md). No resource is declared here: each concern is a component of
  stacks/.
- ``local``: the runner in a container on the local Docker engine; no Google Cloud resource at all.
"""

import os
from pathlib import Path

import pulumi

from stacks.config import StackConfig, experiment_settings, load_config, resource_name

PROJECT_ROOT = Path(__file__).parent


def gcp_stack(cfg: StackConfig) -> None:
    # Imported here: a local stack loads no Google Cloud (or TLS) provider code at all.
    from stacks.access import VmAccess, VmAccessArgs, service_account_id
    from stacks.cluster import Cluster, ClusterArgs, node_requirements
    from stacks.deploy import Deployment, DeploymentArgs
    from stacks.keys import SshKeys
    from stacks.network import SshAccess, SshAccessArgs
    from stacks.startup import render_startup_script, startup_params
    from stacks.vm import ExperimentVm, ExperimentVmArgs
    from stacks.worker_image import worker_image_spec

    prefix = cfg.resource_prefix
    cluster = cfg.is_cluster
    requirements: tuple[str, ...] = ()
    if cluster:
        # Before any resource: a runner without a pinned Ray cannot run a cluster.
        requirements = node_requirements((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    if cfg.spot and not cfg.auto_start and not cluster:
        pulumi.log.warn(
            "spot without autoStart: a preempted VM is not started again by itself (it would boot "
            "without running the batch); set llamaresttest:autoStart true for unattended spot batches"
        )

    # --- SSH keys: the operator's client key and the VM's host key, secrets in the stack's state --
    keys = SshKeys("ssh-keys")

    # --- access: the VM's service account, models read-only, results folder writable --------------
    access = VmAccess(
        "access",
        VmAccessArgs(
            account_id=service_account_id(prefix),
            display_name=f"llamaresttest {'head' if cluster else 'VM'} ({cfg.stack})",
            models_bucket=cfg.models_bucket,
            results_bucket=cfg.results_bucket,
            results_path=cfg.results_path,
            upload_results=cfg.upload_results,
        ),
    )

    # --- network: SSH from the stack's source ranges only ------------------------------------------
    network = SshAccess(
        "network",
        SshAccessArgs(
            name=prefix,
            network=cfg.network,
            region=cfg.region,
            ssh_source_ranges=cfg.ssh_source_ranges,
            static_ip=cfg.static_ip,
        ),
    )

    # --- cluster mode: the workers, their access, the registry, Ray's firewall and token, the head's
    # internal address (docs/cluster.md), one component -----------------------------------------------
    cluster_component = (
        Cluster(
            "cluster",
            ClusterArgs(
                config=cfg,
                head_email=access.email,
                requirements=requirements,
                baked_image=worker_image_spec(cfg, requirements, PROJECT_ROOT),
            ),
        )
        if cluster
        else None
    )

    # --- the VM (the head, in a cluster) and its startup script -----------------------------------
    def vm_script(k: list[str]) -> str:
        params = startup_params(cfg, client_public_key=k[0], host_private_key=k[1], host_public_key=k[2])
        if cluster_component is None:
            return render_startup_script(params)
        return cluster_component.head_startup_script(params)

    startup_script = pulumi.Output.all(
        keys.client_public_key, keys.host_private_key, keys.host_public_key
    ).apply(vm_script)
    vm = ExperimentVm(
        "vm",
        ExperimentVmArgs(
            instance_name=prefix,
            zone=cfg.zone,
            machine_type=cfg.machine_type,
            disk_size_gb=cfg.disk_size_gb,
            disk_type=cfg.disk_type,
            # A cluster's head is never spot: it holds the driver, the journal and the Ray head.
            spot=cfg.spot and not cluster,
            max_run_hours=cfg.max_run_hours,
            network=cfg.network,
            network_tags=(network.target_tag, *([cluster_component.head_tag] if cluster_component else [])),
            labels={"project": resource_name(cfg.project, 63), "stack": resource_name(cfg.stack, 63)},
            service_account_email=access.email,
            startup_script=startup_script,
            nat_ip=network.address.address if network.address else None,
            network_ip=cluster_component.head_ip if cluster_component else None,
            # Only the stack's own key opens the VM, not keys added to the whole project.
            extra_metadata={
                "block-project-ssh-keys": "TRUE",
                **(cluster_component.head_metadata if cluster_component else {}),
            },
            # A preempted spot VM comes back by itself and the runner (autoStart) resumes the batch.
            spot_restart=cfg.spot and cfg.auto_start and not cluster,
            project=cfg.gcp_project,
        ),
        opts=pulumi.ResourceOptions(depends_on=[access]),
    )

    # --- the runner, pushed over SSH and started (docs/deploy.md) ----------------------------------
    key_file = f"~/.ssh/{prefix}"
    ssh_command = vm.external_ip.apply(
        lambda ip: (
            f"ssh -i {key_file} -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes "
            f"-o UserKnownHostsFile={key_file}.known_hosts {cfg.ssh_user}@{ip}"
        )
    )
    deployment = Deployment(
        "deploy",
        DeploymentArgs(
            host=vm.external_ip,
            user=cfg.ssh_user,
            client_private_key=keys.client_private_key,
            host_public_key=keys.host_public_key,
            experiment=experiment_settings(cfg),
            auto_start=cfg.auto_start,
            upload_results=cfg.upload_results,
            # A new instance (not a new address) starts a new batch.
            batch_keeper=vm.instance.instance_id,
            ssh_command=ssh_command,
            project_root=PROJECT_ROOT,
            # Delete asks the Compute API about this instance (gone? stopped? its address now?).
            gcp_project=cfg.gcp_project,
            zone=cfg.zone,
            instance=vm.instance.name,
            instance_id=vm.instance.instance_id,
            # Destroy deletes none of these before the final upload ran: SSH in, grants to write.
            needs=[
                vm.instance,
                *network.resources,
                *access.grants,
                *(cluster_component.needs if cluster_component else []),
            ],
        ),
        opts=pulumi.ResourceOptions(depends_on=[vm]),
    )

    # --- outputs -----------------------------------------------------------------------------------
    pulumi.export("instanceName", vm.instance.name)
    pulumi.export("zone", cfg.zone)
    pulumi.export("machineType", cfg.machine_type)
    pulumi.export("externalIp", vm.external_ip)
    pulumi.export("sshUser", cfg.ssh_user)
    pulumi.export("sshCommand", ssh_command)
    pulumi.export("statusCommand", deployment.status_command)
    pulumi.export("logsCommand", deployment.logs_command)
    pulumi.export("sshKnownHosts", pulumi.Output.concat(vm.external_ip, " ", keys.host_public_key))
    pulumi.export("sshHostPublicKey", keys.host_public_key)
    pulumi.export("sshClientPrivateKey", keys.client_private_key)
    pulumi.export("serviceAccountEmail", access.email)
    pulumi.export("experimentSlots", cfg.experiment_slots)
    pulumi.export("hourlyCostUsd", cfg.hourly_cost_usd)
    pulumi.export("resultsUrl", cfg.results_url)
    pulumi.export("workers", cfg.workers)
    if cluster_component is not None:
        pulumi.export("workerGroup", cluster_component.workers.group.name)
        pulumi.export("workerMachineType", cfg.worker_machine.name if cfg.worker_machine else "")
        pulumi.export("registry", cfg.registry)
        pulumi.export("workerFamily", cfg.worker_family)
        # Before anything bills: the batch's hours and dollars at 2 % preemptions per VM-hour.
        from stacks.forecast import stack_forecast

        pulumi.export("forecast", stack_forecast(cfg))


def local_stack(cfg: StackConfig) -> None:
    from stacks.local import LocalRunner, LocalRunnerArgs, gcp_credentials_file

    assert cfg.local_results_dir is not None  # build_config sets it for target local
    if not pulumi.runtime.is_dry_run():
        # The container bind-mounts it, and Docker refuses a missing source; preview changes nothing.
        cfg.local_results_dir.mkdir(parents=True, exist_ok=True)
    if cfg.experiment_slots == 0:
        pulumi.log.warn(
            f"this machine ({cfg.machine.vcpus} CPUs, {cfg.machine.memory_gb:g} GB) cannot run one "
            "experiment with these limits; the runner will admit none. Lower cpusPerContainer, "
            "memoryPerContainerGb or minFreeCpus."
        )
    credentials = gcp_credentials_file(os.environ) if cfg.upload_results else None
    if cfg.upload_results and credentials is None:
        pulumi.log.warn(
            "uploadResults is true but no Google credentials were found (GOOGLE_APPLICATION_CREDENTIALS "
            "or `gcloud auth application-default login`); the runner's uploads will fail"
        )

    # --- the runner in a container on this machine's Docker engine ---------------------------------
    runner = LocalRunner(
        "local",
        LocalRunnerArgs(
            experiment=experiment_settings(cfg, PROJECT_ROOT),
            results_dir=cfg.local_results_dir,
            models_dir=cfg.local_models_dir,
            project_root=PROJECT_ROOT,
            gcp_credentials=credentials,
            auto_start=cfg.auto_start,
        ),
    )

    # --- outputs -----------------------------------------------------------------------------------
    pulumi.export("containerName", runner.container_name)
    pulumi.export("statusCommand", runner.status_command)
    pulumi.export("logsCommand", runner.logs_command)
    pulumi.export("resultsDir", str(cfg.local_results_dir))
    pulumi.export("experimentSlots", cfg.experiment_slots)
    pulumi.export("hourlyCostUsd", 0.0)


# --- config: every problem reported at once, before any resource ---------------------------------
config = load_config(PROJECT_ROOT)
if config.is_local:
    local_stack(config)
else:
    gcp_stack(config)
