"""llamaresttest: the experiment VM on Google Cloud, sized by the stack (docs/stacks.md).

Table of contents: the stack's config is read and validated first (nothing is declared if it has a
problem), then one component per concern, then the outputs.
"""

from pathlib import Path

import pulumi

from stacks.access import VmAccess, VmAccessArgs, service_account_id
from stacks.config import load_config, resource_name
from stacks.keys import SshKeys
from stacks.network import SshAccess, SshAccessArgs
from stacks.startup import render_startup_script, startup_params
from stacks.vm import ExperimentVm, ExperimentVmArgs

PROJECT_ROOT = Path(__file__).parent

# --- config: every problem reported at once, before any resource -------------------------------
cfg = load_config(PROJECT_ROOT)
prefix = cfg.resource_prefix

# --- SSH keys: the operator's client key and the VM's host key, secrets in the stack's state ----
keys = SshKeys("ssh-keys")

# --- access: the VM's service account, models read-only, results folder writable ----------------
access = VmAccess(
    "access",
    VmAccessArgs(
        account_id=service_account_id(prefix),
        display_name=f"llamaresttest VM ({cfg.stack})",
        models_bucket=cfg.models_bucket,
        results_bucket=cfg.results_bucket,
        results_path=cfg.results_path,
        upload_results=cfg.upload_results,
    ),
)

# --- network: SSH from the stack's source ranges only --------------------------------------------
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

# --- the VM and its startup script ---------------------------------------------------------------
startup_script = pulumi.Output.all(keys.client_public_key, keys.host_private_key, keys.host_public_key).apply(
    lambda k: render_startup_script(
        startup_params(cfg, client_public_key=k[0], host_private_key=k[1], host_public_key=k[2])
    )
)
vm = ExperimentVm(
    "vm",
    ExperimentVmArgs(
        instance_name=prefix,
        zone=cfg.zone,
        machine_type=cfg.machine_type,
        disk_size_gb=cfg.disk_size_gb,
        disk_type=cfg.disk_type,
        spot=cfg.spot,
        max_run_hours=cfg.max_run_hours,
        network=cfg.network,
        network_tags=(network.target_tag,),
        labels={"project": resource_name(cfg.project, 63), "stack": resource_name(cfg.stack, 63)},
        service_account_email=access.email,
        startup_script=startup_script,
        nat_ip=network.address.address if network.address else None,
        # Only the stack's own key opens the VM, not keys added to the whole project.
        extra_metadata={"block-project-ssh-keys": "TRUE"},
    ),
    opts=pulumi.ResourceOptions(depends_on=[access]),
)

# --- outputs -------------------------------------------------------------------------------------
key_file = f"~/.ssh/{prefix}"
pulumi.export("instanceName", vm.instance.name)
pulumi.export("zone", cfg.zone)
pulumi.export("machineType", cfg.machine_type)
pulumi.export("externalIp", vm.external_ip)
pulumi.export("sshUser", cfg.ssh_user)
pulumi.export(
    "sshCommand",
    vm.external_ip.apply(
        lambda ip: (
            f"ssh -i {key_file} -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes "
            f"-o UserKnownHostsFile={key_file}.known_hosts {cfg.ssh_user}@{ip}"
        )
    ),
)
pulumi.export("sshKnownHosts", pulumi.Output.concat(vm.external_ip, " ", keys.host_public_key))
pulumi.export("sshHostPublicKey", keys.host_public_key)
pulumi.export("sshClientPrivateKey", keys.client_private_key)
pulumi.export("serviceAccountEmail", access.email)
pulumi.export("experimentSlots", cfg.experiment_slots)
pulumi.export("hourlyCostUsd", cfg.hourly_cost_usd)
pulumi.export("resultsUrl", cfg.results_url)
