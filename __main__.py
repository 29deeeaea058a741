"""llamaresttest: the experiment VM on Google Cloud, or this workstation's Docker engine (docs/stacks.md).

Table of contents: the stack's config is read and validated first (nothing is declared if it has a
problem), then, by ``target``, one component per concern, then the outputs.

- ``gcp``: SSH keys, the VM's access, its network, the VM and its startup script, then the runner
  deployed onto it over SSH (docs/deploy.md). With ``workers > 0`` (docs/cluster.md) that VM is the
  cluster's head, and the workers' access, the registry, Ray's firewall and the worker group are
  declared besides it.
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
    from stacks.deploy import Deployment, DeploymentArgs
    from stacks.keys import SshKeys
    from stacks.network import SshAccess, SshAccessArgs
    from stacks.startup import render_startup_script, startup_params
    from stacks.vm import ExperimentVm, ExperimentVmArgs

    prefix = cfg.resource_prefix
    cluster = cfg.is_cluster
    if cluster:
        from stacks.cluster import node_requirements

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

    # --- cluster mode: the workers' access, the registry, Ray's firewall (docs/cluster.md) ---------
    cluster_needs: list[pulumi.Resource] = []
    if cluster:
        from stacks.cluster import (
            ClusterGrants,
            ClusterGrantsArgs,
            HeadAddress,
            HeadAddressArgs,
            ImageRegistry,
            ImageRegistryArgs,
            RayAuthToken,
            RayFirewall,
            RayFirewallArgs,
            resize_role_id,
            worker_account_id,
        )
        from stacks.ray_nodes import RayNode
        from stacks.startup import ClusterParams, render_cluster_script, worker_startup_params

        worker_access = VmAccess(
            "worker-access",
            VmAccessArgs(
                account_id=worker_account_id(prefix),
                display_name=f"llamaresttest workers ({cfg.stack})",
                models_bucket=cfg.models_bucket,
                results_bucket=cfg.results_bucket,
                results_path=cfg.results_path,
                upload_results=cfg.upload_results,
                description="Runs the llamaresttest Ray workers: reads the models and images, writes results",
            ),
        )
        registry = ImageRegistry(
            "registry",
            ImageRegistryArgs(
                repository_id=cfg.registry_repository,
                region=cfg.region,
                project=cfg.gcp_project,
                labels={"project": resource_name(cfg.project, 63), "stack": resource_name(cfg.stack, 63)},
            ),
        )
        grants = ClusterGrants(
            "cluster-grants",
            ClusterGrantsArgs(
                project=cfg.gcp_project,
                region=cfg.region,
                resize_role_id=resize_role_id(prefix),
                repository=registry.repository.repository_id,
                head_email=access.email,
                worker_email=worker_access.email,
            ),
        )
        ray_firewall = RayFirewall("ray-firewall", RayFirewallArgs(name=prefix, network=cfg.network))
        # Ray's token: a Pulumi secret, in the head's and the workers' metadata only.
        ray_token = RayAuthToken("ray-token")
        # The head's internal address, reserved: the workers' template names it.
        head_address = HeadAddress(
            "head-address",
            HeadAddressArgs(
                name=f"{resource_name(prefix, 58)}-head",
                project=cfg.gcp_project,
                region=cfg.region,
                network=cfg.network,
            ),
        )
        cluster_needs = [
            *worker_access.grants,
            *grants.resources,
            ray_firewall.to_head,
            ray_firewall.to_workers,
        ]

    # --- the VM (the head, in a cluster) and its startup script -----------------------------------
    head_metadata: dict[str, pulumi.Input[str]] = {}
    if cluster:
        from stacks.ray_nodes import RAY_TOKEN_METADATA_KEY
        from stacks.startup import render_shutdown_script

        head_metadata[RAY_TOKEN_METADATA_KEY] = ray_token.value
        # Any stop that is not a reboot (maxRunHours, a manual stop, a crash followed by a stop, the
        # runner's own power-off) resizes the worker group to 0 (docs/cluster.md, "Stopping billing").
        head_metadata["shutdown-script"] = render_shutdown_script()

    def vm_script(k: list[str]) -> str:
        params = startup_params(cfg, client_public_key=k[0], host_private_key=k[1], host_public_key=k[2])
        if not cluster:
            return render_startup_script(params)
        return render_cluster_script(params, ClusterParams(RayNode("head"), requirements, cfg.registry_host))

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
            network_tags=(network.target_tag, *([ray_firewall.head_tag] if cluster else [])),
            labels={"project": resource_name(cfg.project, 63), "stack": resource_name(cfg.stack, 63)},
            service_account_email=access.email,
            startup_script=startup_script,
            nat_ip=network.address.address if network.address else None,
            network_ip=head_address.address.address if cluster else None,
            # Only the stack's own key opens the VM, not keys added to the whole project.
            extra_metadata={"block-project-ssh-keys": "TRUE", **head_metadata},
            # A preempted spot VM comes back by itself and the runner (autoStart) resumes the batch.
            spot_restart=cfg.spot and cfg.auto_start and not cluster,
            project=cfg.gcp_project,
        ),
        opts=pulumi.ResourceOptions(depends_on=[access]),
    )

    # --- cluster mode: the spot workers, joining the head's internal address -----------------------
    if cluster:
        from stacks.cluster import WorkerGroup, WorkerGroupArgs, worker_image_spec

        # The reserved address, not the instance's: a recreated head keeps it, the template stays valid.
        head_ip = head_address.address.address
        workers = WorkerGroup(
            "workers",
            WorkerGroupArgs(
                group_name=cfg.worker_group,
                base_instance_name=f"{resource_name(prefix, 54)}-wk",
                zone=cfg.zone,
                project=cfg.gcp_project,
                size=cfg.workers,
                machine_type=cfg.worker_machine.name if cfg.worker_machine else "",
                spot=cfg.worker_spot,
                disk_size_gb=cfg.disk_size_gb,
                disk_type=cfg.disk_type,
                network=cfg.network,
                network_tags=(ray_firewall.worker_tag,),
                labels={
                    "project": resource_name(cfg.project, 63),
                    "stack": resource_name(cfg.stack, 63),
                    "role": "ray-worker",
                },
                service_account_email=worker_access.email,
                ray_token=ray_token.value,
                baked_image=worker_image_spec(cfg, requirements, PROJECT_ROOT),
                startup_script=head_ip.apply(
                    lambda ip: render_cluster_script(
                        worker_startup_params(cfg),
                        ClusterParams(
                            RayNode("worker", ip, cfg.worker_slots), requirements, cfg.registry_host
                        ),
                    )
                ),
            ),
            opts=pulumi.ResourceOptions(depends_on=[worker_access, grants]),
        )
        # Destroy drains the driver first (it stops the runs on the workers), then the group goes.
        cluster_needs += [workers.group]

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
            needs=[vm.instance, *network.resources, *access.grants, *cluster_needs],
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
    if cluster:
        pulumi.export("workerGroup", workers.group.name)
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
