"""Cluster mode on Google Cloud (docs/cluster.md): what a stack with ``workers: N > 0`` adds to the head.

The head is the one VM of stacks/vm.py (on demand, the VM the deploy pushes to); this module declares
the rest, each a component:

- :class:`ImageRegistry`: an Artifact Registry Docker repository in the stack's region; the head
  builds each image once and pushes it there, the workers pull it (they never build);
- :class:`WorkerAccess`: the workers' own service account (stacks/access.py's grants: models read,
  results folder written) plus reader on that repository only, and the head's extra grants: writer
  on the repository, and a custom role holding only the permissions that resize an instance group;
- :class:`RayFirewall`: Ray's fixed ports (stacks/ray_nodes.py) between the head's and the workers'
  network tags, nothing from any address range;
- :class:`RayAuthToken`: the cluster's Ray token, random, a Pulumi secret from end to end; it
  reaches every node in its instance metadata (``ray-auth-token``), never a script or an image;
- :class:`HeadAddress`: a reserved internal address for the head, so the address baked into the
  worker template (where the workers find the GCS) outlives a recreated head;
- :class:`WorkerGroup`: an instance template (spot per ``workerSpot``, the worker startup script)
  and a zonal managed instance group of ``workers`` instances, which recreates preempted ones.

:class:`Cluster` is all of them as one component (``__main__.py`` builds it); ``workers: 0`` declares
none of this.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random

from stacks.access import VmAccess, VmAccessArgs
from stacks.bundle import runner_requirements
from stacks.config import ConfigError, StackConfig, resource_name
from stacks.ray_nodes import HEAD_PORTS, NODE_PORTS, RAY_TOKEN_METADATA_KEY, RayNode
from stacks.startup import (
    BAKE_VERSION_METADATA_KEY,
    ClusterParams,
    StartupParams,
    render_cluster_script,
    render_shutdown_script,
    worker_startup_params,
)
from stacks.vm import IMAGE
from stacks.worker_image import WorkerImage, WorkerImageArgs, WorkerImageSpec

REGISTRY_READER_ROLE = "roles/artifactregistry.reader"
REGISTRY_WRITER_ROLE = "roles/artifactregistry.writer"
# instanceGroupManagers.resize needs compute.instanceGroupManagers.update (Compute Engine's
# permissions reference); get lets the runner read the group's size back. The predefined roles that
# hold it (compute.instanceAdmin.v1, compute.admin) also create, delete and SSH into instances, and
# Compute Engine offers no IAM resource on one instance group manager. An IAM condition on the
# group's resource.name would only ever match for resource types on Google's "Resource attributes for
# IAM Conditions" list, and compute.googleapis.com/InstanceGroupManager is not on it (issue 19,
# /work/shared/REFERENCE.md): a conditioned binding would never grant, and the resize at the end of a
# batch would get 403. So the custom role with these two permissions is bound at the project without
# a condition: the head can resize (and read) any group of the project, and nothing else
# (docs/cluster.md, "Grants").
RESIZE_PERMISSIONS = ("compute.instanceGroupManagers.get", "compute.instanceGroupManagers.update")


def worker_account_id(prefix: str) -> str:
    """The workers' service account id (6-30 characters), beside the head's ``<prefix>-vm``."""
    return f"{resource_name(prefix, 27).ljust(3, 'x')}-wk"


def resize_role_id(prefix: str) -> str:
    """A custom role id ([a-zA-Z0-9_.], 3-64 characters): no dashes allowed there."""
    return re.sub(r"[^a-zA-Z0-9_.]", "_", f"{prefix}_workers_resize")[:64]


def node_requirements(pyproject_text: str) -> tuple[str, ...]:
    """The runner's requirements as every cluster node installs them; Ray must be pinned among them.

    The same list the deploy installs on the head (stacks/bundle.py): head and workers must run the
    same Ray (a worker of another version cannot join). Raises ConfigError before anything is
    declared when Ray is missing or not pinned to one version.
    """
    requirements = tuple(runner_requirements(pyproject_text))
    ray = [r for r in requirements if re.match(r"\s*ray(\[[^\]]*\])?\s*(==|$|[<>~!;])", r)]
    if not ray:
        raise ConfigError(
            [
                "llamaresttest:workers: the runner's dependencies in pyproject.toml have no Ray; a "
                'cluster needs it pinned there (e.g. "ray[default]==X.Y.Z"), or set workers to 0'
            ]
        )
    if "==" not in ray[0]:
        raise ConfigError(
            [
                f"llamaresttest:workers: the runner's Ray requirement {ray[0]!r} is not pinned to one "
                "version; head and workers must run the same Ray (pin it with ==)"
            ]
        )
    return requirements


@dataclass(frozen=True)
class ImageRegistryArgs:
    repository_id: str
    region: str
    project: str
    labels: Mapping[str, str]


class ImageRegistry(pulumi.ComponentResource):
    """The stack's Docker repository; ``pulumi destroy`` deletes it with its images."""

    repository: gcp.artifactregistry.Repository

    def __init__(
        self, name: str, args: ImageRegistryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("llamaresttest:stacks:ImageRegistry", name, None, opts)
        self.repository = gcp.artifactregistry.Repository(
            name,
            repository_id=args.repository_id,
            location=args.region,
            project=args.project,
            format="DOCKER",
            description="llamaresttest cluster images: built once on the head, pulled by the workers",
            labels=dict(args.labels),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"repositoryId": self.repository.repository_id})


@dataclass(frozen=True)
class ClusterGrantsArgs:
    project: str
    region: str
    resize_role_id: str
    repository: pulumi.Input[str]  # the repository's id (its last name part)
    head_email: pulumi.Input[str]
    worker_email: pulumi.Input[str]


class ClusterGrants(pulumi.ComponentResource):
    """The grants a cluster adds: the workers read the repository, the head writes it and may resize
    instance groups of the project (and nothing else of Compute Engine)."""

    worker_registry_reader: gcp.artifactregistry.RepositoryIamMember
    head_registry_writer: gcp.artifactregistry.RepositoryIamMember
    resize_role: gcp.projects.IAMCustomRole
    head_resizer: gcp.projects.IAMMember

    def __init__(
        self, name: str, args: ClusterGrantsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("llamaresttest:stacks:ClusterGrants", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        head = pulumi.Output.from_input(args.head_email).apply(lambda e: f"serviceAccount:{e}")
        worker = pulumi.Output.from_input(args.worker_email).apply(lambda e: f"serviceAccount:{e}")
        self.worker_registry_reader = gcp.artifactregistry.RepositoryIamMember(
            f"{name}-worker-registry-reader",
            project=args.project,
            location=args.region,
            repository=args.repository,
            role=REGISTRY_READER_ROLE,
            member=worker,
            opts=child,
        )
        self.head_registry_writer = gcp.artifactregistry.RepositoryIamMember(
            f"{name}-head-registry-writer",
            project=args.project,
            location=args.region,
            repository=args.repository,
            role=REGISTRY_WRITER_ROLE,
            member=head,
            opts=child,
        )
        self.resize_role = gcp.projects.IAMCustomRole(
            f"{name}-resize-role",
            project=args.project,
            role_id=args.resize_role_id,
            title="llamaresttest: resize the cluster's worker group",
            description="Lets the cluster head resize its worker group to 0 when the batch is done",
            permissions=list(RESIZE_PERMISSIONS),
            opts=child,
        )
        self.head_resizer = gcp.projects.IAMMember(
            f"{name}-head-resizer",
            project=args.project,
            role=self.resize_role.name,
            member=head,
            opts=child,
        )
        self.register_outputs({})

    @property
    def resources(self) -> list[pulumi.Resource]:
        return [self.worker_registry_reader, self.head_registry_writer, self.resize_role, self.head_resizer]


@dataclass(frozen=True)
class RayFirewallArgs:
    name: str  # prefix of the rules and tags, e.g. "llamaresttest-dev"
    network: str

    @property
    def head_tag(self) -> str:
        return f"{self.name}-ray-head"

    @property
    def worker_tag(self) -> str:
        return f"{self.name}-ray-worker"


class RayFirewall(pulumi.ComponentResource):
    """Two ingress rules, by network tag only: workers reach the head's GCS and node ports; the head
    and the workers reach every worker's node ports. No source range: nothing outside the cluster."""

    head_tag: str
    worker_tag: str
    to_head: gcp.compute.Firewall
    to_workers: gcp.compute.Firewall

    def __init__(self, name: str, args: RayFirewallArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llamaresttest:stacks:RayFirewall", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.head_tag, self.worker_tag = args.head_tag, args.worker_tag
        self.to_head = gcp.compute.Firewall(
            f"{name}-to-head",
            network=args.network,
            direction="INGRESS",
            allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=list(HEAD_PORTS))],
            source_tags=[self.worker_tag],
            target_tags=[self.head_tag],
            description="Ray: the llamaresttest workers to their head (GCS, raylet, agent, worker ports)",
            opts=child,
        )
        self.to_workers = gcp.compute.Firewall(
            f"{name}-to-workers",
            network=args.network,
            direction="INGRESS",
            allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=list(NODE_PORTS))],
            source_tags=[self.head_tag, self.worker_tag],
            target_tags=[self.worker_tag],
            description="Ray: llamaresttest head and workers to the workers (raylet, agent, worker ports)",
            opts=child,
        )
        self.register_outputs({"headTag": self.head_tag, "workerTag": self.worker_tag})


# 64 letters and digits: 381 bits of randomness, and nothing a header, a file or metadata would
# need to escape. Ray compares it as an opaque bearer string (docs.ray.io ray-security/token-auth).
RAY_TOKEN_LENGTH = 64


class RayAuthToken(pulumi.ComponentResource):
    """The token every Ray node and the driver present (``RAY_AUTH_MODE=token``). Generated once and
    kept in the stack's state as a secret; the same value goes into the head's and the worker
    template's metadata, from where each node's startup script copies it into a root-only file."""

    value: pulumi.Output[str]

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llamaresttest:stacks:RayAuthToken", name, None, opts)
        password = random.RandomPassword(
            name,
            length=RAY_TOKEN_LENGTH,
            special=False,
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["result"]),
        )
        self.value = pulumi.Output.secret(password.result)
        self.register_outputs({})


@dataclass(frozen=True)
class HeadAddressArgs:
    name: str  # the address's name, e.g. "llamaresttest-dev-head"
    project: str
    region: str
    network: str


def default_subnetwork(project: str, region: str, network: str) -> str:
    """The subnetwork an instance on ``network`` gets when only the network is named: in an auto-mode
    network (Google's ``default`` is one) each region's subnetwork carries the network's name."""
    return f"projects/{project}/regions/{region}/subnetworks/{network}"


class HeadAddress(pulumi.ComponentResource):
    """A static internal address for the head. The workers' template carries the head's address (the
    GCS they join); an ephemeral one would change when the head is recreated (a new machine type
    that needs a new instance, a replaced disk), and every worker would then look for Ray at an
    address nobody holds. Internal static addresses are free (VPC pricing: only external addresses
    are charged) and come from the subnetwork's range."""

    address: gcp.compute.Address

    def __init__(self, name: str, args: HeadAddressArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llamaresttest:stacks:HeadAddress", name, None, opts)
        self.address = gcp.compute.Address(
            name,
            name=args.name,
            project=args.project,
            region=args.region,
            address_type="INTERNAL",
            subnetwork=default_subnetwork(args.project, args.region, args.network),
            description="llamaresttest cluster head: the address the workers join (managed by Pulumi)",
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"address": self.address.address})


@dataclass(frozen=True)
class WorkerGroupArgs:
    group_name: str
    base_instance_name: str
    zone: str
    project: str
    size: int
    machine_type: str
    spot: bool
    disk_size_gb: int
    disk_type: str
    network: str
    network_tags: Sequence[str]
    labels: Mapping[str, str]
    service_account_email: pulumi.Input[str]
    startup_script: pulumi.Input[str]
    ray_token: pulumi.Input[str]  # a secret: the template's whole metadata becomes one
    # bakeWorkerImage (stacks/worker_image.py): the template boots the baked image; None: Debian 12
    baked_image: WorkerImageSpec | None = None


def worker_scheduling(spot: bool) -> gcp.compute.InstanceTemplateSchedulingArgs:
    """A reclaimed spot worker is deleted, not stopped: the group creates a fresh one when capacity
    returns (a stopped member would wait for someone to start it). Its disk holds nothing that is
    not elsewhere: run folders are uploaded per attempt, models and images come back by themselves."""
    if spot:
        return gcp.compute.InstanceTemplateSchedulingArgs(
            provisioning_model="SPOT",
            preemptible=True,
            automatic_restart=False,
            on_host_maintenance="TERMINATE",
            instance_termination_action="DELETE",
        )
    return gcp.compute.InstanceTemplateSchedulingArgs(
        provisioning_model="STANDARD",
        preemptible=False,
        automatic_restart=True,
        on_host_maintenance="MIGRATE",
    )


class WorkerGroup(pulumi.ComponentResource):
    """The workers' instance template and their zonal managed instance group."""

    template: gcp.compute.InstanceTemplate
    group: gcp.compute.InstanceGroupManager

    def __init__(self, name: str, args: WorkerGroupArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llamaresttest:stacks:WorkerGroup", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        source_image: pulumi.Input[str] = IMAGE
        bake_metadata: dict[str, pulumi.Input[str]] = {}
        self.worker_image: WorkerImage | None = None
        if args.baked_image is not None:
            # builder -> wait -> image, then this template on the image (a new bake: a new template)
            self.worker_image = WorkerImage(
                f"{name}-image",
                WorkerImageArgs(
                    spec=args.baked_image,
                    project=args.project,
                    zone=args.zone,
                    network=args.network,
                    service_account_email=args.service_account_email,
                ),
                opts=child,
            )
            source_image = self.worker_image.self_link
            # the version each worker checks the image's marker against (cluster.sh.tmpl install_base)
            bake_metadata[BAKE_VERSION_METADATA_KEY] = args.baked_image.version
        # Templates cannot change: a new script or size is a new template. Pulumi replaces it the
        # default way, create before delete: the new template (a name prefix, so both can exist at
        # once), then the group updated to it (it depends on the template's link), then the old one
        # deleted, which Google allows only once no group uses it (resourceInUseByAnotherResource).
        # delete_before_replace would delete a template the group still uses: never set it here.
        self.template = gcp.compute.InstanceTemplate(
            f"{name}-template",
            name_prefix=f"{args.base_instance_name}-",
            project=args.project,
            machine_type=args.machine_type,
            disks=[
                gcp.compute.InstanceTemplateDiskArgs(
                    source_image=source_image,
                    boot=True,
                    auto_delete=True,
                    disk_size_gb=args.disk_size_gb,
                    disk_type=args.disk_type,
                )
            ],
            # An ephemeral external address, for apt, PyPI, the registry and the bucket: cheaper than
            # Cloud NAT here (docs/cluster.md, "Network"); no firewall rule lets anything in by it.
            network_interfaces=[
                gcp.compute.InstanceTemplateNetworkInterfaceArgs(
                    network=args.network,
                    access_configs=[gcp.compute.InstanceTemplateNetworkInterfaceAccessConfigArgs()],
                )
            ],
            scheduling=worker_scheduling(args.spot),
            service_account=gcp.compute.InstanceTemplateServiceAccountArgs(
                email=args.service_account_email, scopes=["cloud-platform"]
            ),
            shielded_instance_config=gcp.compute.InstanceTemplateShieldedInstanceConfigArgs(
                enable_secure_boot=True, enable_vtpm=True, enable_integrity_monitoring=True
            ),
            metadata={
                "startup-script": pulumi.Output.from_input(args.startup_script),
                # Nobody logs in to a worker: not with the project's keys either.
                "block-project-ssh-keys": "TRUE",
                RAY_TOKEN_METADATA_KEY: pulumi.Output.secret(args.ray_token),
                **bake_metadata,
            },
            tags=list(args.network_tags),
            labels=dict(args.labels),
            description="llamaresttest Ray worker (managed by Pulumi)",
            opts=child,
        )
        self.group = gcp.compute.InstanceGroupManager(
            f"{name}-group",
            name=args.group_name,
            project=args.project,
            zone=args.zone,
            base_instance_name=args.base_instance_name,
            versions=[
                gcp.compute.InstanceGroupManagerVersionArgs(instance_template=self.template.self_link_unique)
            ],
            # Created at 0: the runner on the head asks for the workers (up to `workers`, what the
            # batch can use) once its images are pushed, and releases them as soon as nothing is
            # pending (remote_runner/placement/workers.py). The size is the runner's from then on, so Pulumi
            # ignores it: a later `pulumi up` must not resize a group in the middle of a batch.
            target_size=0,
            # A new template reaches workers as they are recreated (preemption, resize), never by
            # replacing a worker in the middle of its runs.
            update_policy=gcp.compute.InstanceGroupManagerUpdatePolicyArgs(
                type="OPPORTUNISTIC", minimal_action="REPLACE"
            ),
            # A preempted (deleted) spot worker is recreated by a repair, which by default uses the
            # template the instance was first built from; YES applies the group's current template
            # instead ("Apply configuration updates during repairs", Google's MIG docs), so a new
            # script, Ray pin or head address reaches every recreated worker.
            instance_lifecycle_policy=gcp.compute.InstanceGroupManagerInstanceLifecyclePolicyArgs(
                force_update_on_repair="YES"
            ),
            # Spot capacity may take a while: `pulumi up` does not wait for the instances.
            wait_for_instances=False,
            description="llamaresttest Ray workers (managed by Pulumi; recreates preempted spot VMs)",
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(ignore_changes=["targetSize"])),
        )
        self.register_outputs({"group": self.group.name})


# --- the cluster as one component -----------------------------------------------------------------
#: the components below were declared at the stack's root before the cluster became one component;
#: the alias keeps their URNs (and so their children's), so ``pulumi up`` on an existing stack moves
#: them under the cluster instead of replacing the worker group and the grants
WAS_AT_ROOT = pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE)


@dataclass(frozen=True)
class ClusterArgs:
    #: the stack's config (``workers > 0``)
    config: StackConfig
    #: the head's service account (stacks/access.py), granted the registry's writer and the resize role
    head_email: pulumi.Input[str]
    #: the pinned runner requirements every node installs (:func:`node_requirements`)
    requirements: tuple[str, ...]
    #: ``bakeWorkerImage``: the image the workers boot (:func:`stacks.worker_image.worker_image_spec`)
    baked_image: WorkerImageSpec | None = None


class Cluster(pulumi.ComponentResource):
    """Everything a stack with workers adds to its head: the workers' access, the registry, the grants,
    Ray's firewall and token, the head's reserved internal address and the worker group. The head VM
    (stacks/vm.py) takes :attr:`head_tag`, :attr:`head_ip` and :attr:`head_metadata`; the deployment
    keeps :attr:`needs` until its final upload ran."""

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llamaresttest:stacks:Cluster", name, None, opts)
        cfg = args.config
        prefix = cfg.resource_prefix
        moved = pulumi.ResourceOptions(parent=self, aliases=[WAS_AT_ROOT])
        labels = {"project": resource_name(cfg.project, 63), "stack": resource_name(cfg.stack, 63)}
        self.requirements = args.requirements
        self.registry_host = cfg.registry_host

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
            opts=moved,
        )
        registry = ImageRegistry(
            "registry",
            ImageRegistryArgs(
                repository_id=cfg.registry_repository,
                region=cfg.region,
                project=cfg.gcp_project,
                labels=labels,
            ),
            opts=moved,
        )
        grants = ClusterGrants(
            "cluster-grants",
            ClusterGrantsArgs(
                project=cfg.gcp_project,
                region=cfg.region,
                resize_role_id=resize_role_id(prefix),
                repository=registry.repository.repository_id,
                head_email=args.head_email,
                worker_email=worker_access.email,
            ),
            opts=moved,
        )
        ray_firewall = RayFirewall(
            "ray-firewall", RayFirewallArgs(name=prefix, network=cfg.network), opts=moved
        )
        # Ray's token: a Pulumi secret, in the head's and the workers' metadata only.
        ray_token = RayAuthToken("ray-token", opts=moved)
        # The head's internal address, reserved: the workers' template names it.
        head_address = HeadAddress(
            "head-address",
            HeadAddressArgs(
                name=f"{resource_name(prefix, 58)}-head",
                project=cfg.gcp_project,
                region=cfg.region,
                network=cfg.network,
            ),
            opts=moved,
        )
        # The reserved address, not the instance's: a recreated head keeps it, the template stays valid.
        self.head_ip = head_address.address.address
        self.head_tag = ray_firewall.head_tag
        self.head_metadata: dict[str, pulumi.Input[str]] = {
            RAY_TOKEN_METADATA_KEY: ray_token.value,
            # Any stop that is not a reboot (maxRunHours, a manual stop, a crash followed by a stop, the
            # runner's own power-off) resizes the worker group to 0 (docs/cluster.md, "Stopping billing").
            "shutdown-script": render_shutdown_script(),
        }
        self.workers = WorkerGroup(
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
                labels={**labels, "role": "ray-worker"},
                service_account_email=worker_access.email,
                ray_token=ray_token.value,
                baked_image=args.baked_image,
                startup_script=self.head_ip.apply(
                    lambda ip: render_cluster_script(
                        worker_startup_params(cfg),
                        ClusterParams(
                            RayNode("worker", ip, cfg.worker_slots), args.requirements, cfg.registry_host
                        ),
                    )
                ),
            ),
            opts=pulumi.ResourceOptions.merge(
                moved, pulumi.ResourceOptions(depends_on=[worker_access, grants])
            ),
        )
        # Destroy drains the driver first (it stops the runs on the workers), then these go.
        self.needs: list[pulumi.Resource] = [
            *worker_access.grants,
            *grants.resources,
            ray_firewall.to_head,
            ray_firewall.to_workers,
            self.workers.group,
        ]
        self.register_outputs({"workerGroup": self.workers.group.name})

    def head_startup_script(self, params: StartupParams) -> str:
        """The head's startup script: the one-VM script's steps plus the Ray head (stacks/startup.py)."""
        return render_cluster_script(
            params, ClusterParams(RayNode("head"), self.requirements, self.registry_host)
        )
