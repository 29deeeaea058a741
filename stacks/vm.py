"""The experiment VM: one Compute Engine instance running the startup script.

The script goes in ``metadata["startup-script"]`` rather than ``metadata_startup_script``: changing
the latter replaces the VM (and its disk, models and results), the former is updated in place and
runs at the next boot. It carries the host private key, so the whole metadata value is a secret.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

IMAGE = "debian-cloud/debian-12"


def scheduling_args(*, spot: bool, max_run_hours: float) -> gcp.compute.InstanceSchedulingArgs:
    """Spot VMs are stopped (not deleted) when reclaimed, keeping disk, models and results; a
    maximum run duration, when set, stops the VM after that long as a backstop against a
    forgotten machine (``pulumi up`` or a start in the console brings it back)."""
    max_run = (
        gcp.compute.InstanceSchedulingMaxRunDurationArgs(seconds=round(max_run_hours * 3600))
        if max_run_hours > 0
        else None
    )
    stop = "STOP" if spot or max_run is not None else None
    if spot:
        return gcp.compute.InstanceSchedulingArgs(
            provisioning_model="SPOT",
            preemptible=True,
            automatic_restart=False,
            on_host_maintenance="TERMINATE",
            instance_termination_action=stop,
            max_run_duration=max_run,
        )
    return gcp.compute.InstanceSchedulingArgs(
        provisioning_model="STANDARD",
        preemptible=False,
        automatic_restart=True,
        on_host_maintenance="MIGRATE",
        instance_termination_action=stop,
        max_run_duration=max_run,
    )


@dataclass(frozen=True)
class ExperimentVmArgs:
    instance_name: str
    zone: str
    machine_type: str
    disk_size_gb: int
    disk_type: str
    spot: bool
    max_run_hours: float
    network: str
    network_tags: tuple[str, ...]
    labels: Mapping[str, str]
    service_account_email: pulumi.Input[str]
    startup_script: pulumi.Input[str]
    nat_ip: pulumi.Input[str] | None = None
    # A reserved internal address (a cluster's head: the workers' template names it); None: ephemeral.
    network_ip: pulumi.Input[str] | None = None
    extra_metadata: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    # Spot recovery (docs/stacks.md, "Spot without a babysitter"): attaches an instance schedule that
    # starts the VM every hour (a no-op while it runs), so a preempted VM comes back by itself when
    # capacity returns; ``project`` is needed to grant the schedule's service agent.
    spot_restart: bool = False
    project: str = ""


RESTART_ROLE = "roles/compute.instanceAdmin.v1"
# Hourly, at minute 0 UTC. Google's page on instance schedules
# (cloud.google.com/compute/docs/instances/schedule-instance-start-stop, "Limitations") names no
# minimum interval between operations (same region, one schedule per VM, no capacity guarantee);
# a third-party source says a schedule may start a VM once an hour, and the schedule is unix-cron
# (gcloud compute resource-policies create instance-schedule). An hourly start stays inside both, so
# `pulumi up` cannot be refused for a schedule more frequent than Google allows; a */15 schedule was
# never confirmed. The cost of that choice is in docs/stacks.md: up to 60 min (not 15) of waiting
# after a preemption, during which the stopped VM bills only its disk and reserved address.
RESTART_SCHEDULE = "0 * * * *"


def schedule_agent(project_number: str) -> str:
    """Instance schedules act as the project's Compute Engine Service Agent, which needs permission to
    start the instance (cloud.google.com/compute/docs/instances/schedule-instance-start-stop)."""
    return f"serviceAccount:service-{project_number}@compute-system.iam.gserviceaccount.com"


class ExperimentVm(pulumi.ComponentResource):
    """The instance; ``external_ip`` is its address on the internet (ephemeral unless reserved)."""

    instance: gcp.compute.Instance
    external_ip: pulumi.Output[str]

    def __init__(self, name: str, args: ExperimentVmArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llamaresttest:stacks:ExperimentVm", name, None, opts)
        self.restart_policy: gcp.compute.ResourcePolicy | None = None
        self.restart_grant: gcp.compute.InstanceIAMMember | None = None
        self.restart_attachment: gcp.compute.ResourcePolicyAttachment | None = None
        if args.spot_restart:
            self.restart_policy = gcp.compute.ResourcePolicy(
                f"{name}-restart",
                region=args.zone.rsplit("-", 1)[0],
                description="Starts the llamaresttest spot VM again after a preemption (no-op while it runs)",
                instance_schedule_policy=gcp.compute.ResourcePolicyInstanceSchedulePolicyArgs(
                    time_zone="UTC",
                    vm_start_schedule=gcp.compute.ResourcePolicyInstanceSchedulePolicyVmStartScheduleArgs(
                        schedule=RESTART_SCHEDULE
                    ),
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
        metadata: dict[str, pulumi.Input[str]] = {
            **args.extra_metadata,
            "startup-script": pulumi.Output.secret(args.startup_script),
        }
        self.instance = gcp.compute.Instance(
            name,
            name=args.instance_name,
            zone=args.zone,
            machine_type=args.machine_type,
            boot_disk=gcp.compute.InstanceBootDiskArgs(
                auto_delete=True,
                initialize_params=gcp.compute.InstanceBootDiskInitializeParamsArgs(
                    image=IMAGE, size=args.disk_size_gb, type=args.disk_type
                ),
            ),
            network_interfaces=[
                gcp.compute.InstanceNetworkInterfaceArgs(
                    network=args.network,
                    network_ip=args.network_ip,
                    access_configs=[gcp.compute.InstanceNetworkInterfaceAccessConfigArgs(nat_ip=args.nat_ip)],
                )
            ],
            scheduling=scheduling_args(spot=args.spot, max_run_hours=args.max_run_hours),
            service_account=gcp.compute.InstanceServiceAccountArgs(
                email=args.service_account_email,
                # Access is limited by the service account's IAM grants (access.py), not by scopes.
                scopes=["cloud-platform"],
            ),
            shielded_instance_config=gcp.compute.InstanceShieldedInstanceConfigArgs(
                enable_secure_boot=True, enable_vtpm=True, enable_integrity_monitoring=True
            ),
            metadata=metadata,
            tags=list(args.network_tags),
            labels=dict(args.labels),
            # A new machine type or service account only needs a stop/start, not a new VM.
            allow_stopping_for_update=True,
            description="llamaresttest experiment VM (managed by Pulumi)",
            opts=pulumi.ResourceOptions(
                parent=self,
                # The explicit name is taken until the old VM is gone.
                delete_before_replace=True,
                # The restart schedule is attached by its own resource (below), not in this list: a
                # refreshed state that lists it must not make `pulumi up` detach it.
                ignore_changes=["resourcePolicies"],
            ),
        )
        if self.restart_policy is not None:
            number = gcp.organizations.get_project_output(project_id=args.project).number
            self.restart_grant = gcp.compute.InstanceIAMMember(
                f"{name}-restart-agent",
                project=args.project,
                zone=args.zone,
                instance_name=self.instance.name,
                role=RESTART_ROLE,
                member=number.apply(lambda n: schedule_agent(str(n))),
                opts=pulumi.ResourceOptions(parent=self),
            )
            # Attached only once the service agent may start this instance: Compute checks the grant
            # when the schedule is attached, and attaching it in the instance's own resource_policies
            # (before any grant on the instance can exist) fails with Error 412
            # (hashicorp/terraform-provider-google#11899).
            self.restart_attachment = gcp.compute.ResourcePolicyAttachment(
                f"{name}-restart-attachment",
                project=args.project,
                zone=args.zone,
                instance=self.instance.name,
                name=self.restart_policy.name,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.restart_grant]),
            )
        self.external_ip = self.instance.network_interfaces.apply(_external_ip)
        self.register_outputs({"externalIp": self.external_ip})


def _external_ip(interfaces: Sequence[gcp.compute.outputs.InstanceNetworkInterface]) -> str:
    for interface in interfaces or []:
        for access in interface.access_configs or []:
            if access.nat_ip:
                return access.nat_ip
    return ""
