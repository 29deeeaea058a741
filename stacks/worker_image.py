"""The optional baked worker image (``bakeWorkerImage``; docs/cluster.md, "Baked worker image").

Without it every worker boots Debian 12 and its startup script installs the packages, Docker and the
runner's venv (minutes of every boot, billed). With it the program declares, beside the worker group:

1. a **builder** instance from the same Debian 12 image, whose startup script is the workers' own
   with ``IMAGE_BUILDER=1``: it runs the install part of ``worker_main`` (packages, Docker, the venv),
   pulls the base images the batch's Dockerfiles start FROM, writes the version marker
   (``/etc/llamaresttest/baked-version``), sets the guest attribute ``llamaresttest/bake`` to
   ``ok <version>`` (or ``failed <version>: ...``) and powers itself off;
2. a **wait** (:class:`BuilderWait`, a dynamic resource): polls the Compute API until the builder is
   TERMINATED and its attribute says ``ok`` with this version; fails with the reason and the serial
   console command when the script failed, the VM stopped without a verdict, or time ran out;
3. a ``gcp.compute.Image`` of the builder's disk (after the wait), in the image family
   ``<prefix>-worker``;
4. the worker template booting that image (stacks/cluster.py); each worker's script skips what the
   image holds only when the image's marker carries the script's version (a hash of what was baked:
   stacks/startup.py ``bake_version``), so a stale image installs afresh instead of running a venv
   built for other requirements.

The batch's own images are not baked: the head builds them at batch time and pushes them to the
stack's registry, so they do not exist at ``pulumi up``. Their base images do (the FROM lines under
apis/, tools/ and infrastructure/), and a worker that has them pulls only the batch images' own
layers.

The Compute API is asked with stacks/compute.py's client. Its endpoint is ``LLAMARESTTEST_COMPUTE_API``
(stacks/compute.py, no token: a local stand-in), else ``CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE``
(gcloud's variable, the API's base URL ending in ``/compute/v1/``, remote_runner/cloud/mig.py) with the
operator's Google credentials, else Google's.
"""

from __future__ import annotations

import os
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi.dynamic
import pulumi_gcp as gcp

from stacks import compute
from stacks.config import StackConfig, resource_name
from stacks.vm import IMAGE

#: the builder's boot disk: Debian (about 2 GB), Docker, the venv with Ray (about 1.5 GB), the base
#: images (about 5 GB for the 11 services and Debian); the workers' disks (diskSizeGb >= 50) are larger
BUILDER_DISK_GB = 30
#: how long ``pulumi up`` waits for the builder before failing (apt, pip and the pulls, with retries)
BUILDER_TIMEOUT_SECONDS = 45 * 60
POLL_SECONDS = 15.0
BAKE_ATTRIBUTE_NAMESPACE = "llamaresttest"
BAKE_ATTRIBUTE_KEY = "bake"
_FROM = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?\s*$", re.IGNORECASE)


def base_images(project_root: Path) -> tuple[str, ...]:
    """The public images the batch's Dockerfiles (apis/, tools/, infrastructure/) start FROM, sorted:
    not the batch's own (``llamaresttest/...``), not a stage of the same file, not one named by a
    build argument (``${...}``: its value is the build's)."""
    found: set[str] = set()
    for folder in ("apis", "tools", "infrastructure"):
        for dockerfile in sorted((project_root / folder).rglob("Dockerfile*")):
            stages: set[str] = set()
            for line in dockerfile.read_text(encoding="utf-8").splitlines():
                match = _FROM.match(line)
                if match is None:
                    continue
                image, alias = match.group(1), match.group(2)
                if alias:
                    stages.add(alias.lower())
                if "$" in image or image.lower() in stages or image == "scratch":
                    continue
                if image.startswith("llamaresttest/"):
                    continue
                found.add(image)
    return tuple(sorted(found))


@dataclass(frozen=True)
class WorkerImageSpec:
    """What the program decides for the baked image (the worker group adds zone, network, account)."""

    name_prefix: str  # e.g. "llamaresttest-dev"
    version: str  # stacks/startup.py bake_version: in the builder's and the image's names
    builder_script: str
    machine_type: str
    disk_type: str
    labels: Mapping[str, str]
    timeout_seconds: float = BUILDER_TIMEOUT_SECONDS

    @property
    def builder_name(self) -> str:
        # the version in the name: a new bake is a new instance beside the old one (create before delete)
        return f"{resource_name(self.name_prefix, 40)}-bake-{self.version[:12]}"

    @property
    def image_name(self) -> str:
        return f"{resource_name(self.name_prefix, 40)}-worker-{self.version[:12]}"

    @property
    def image_family(self) -> str:
        return f"{resource_name(self.name_prefix, 40)}-worker"


def worker_image_spec(
    cfg: StackConfig, requirements: Sequence[str], project_root: Path
) -> WorkerImageSpec | None:
    """The stack's baked image, or None without ``bakeWorkerImage``."""
    if not cfg.bake_worker_image:
        return None
    from stacks.ray_nodes import RayNode
    from stacks.startup import ClusterParams, bake_version, render_cluster_script, worker_startup_params

    images = base_images(project_root)
    version = bake_version(requirements, images)
    # The builder never starts Ray: its unit's head address is a stand-in, and it gets no token.
    params = ClusterParams(
        RayNode("worker", "127.0.0.1", max(1, cfg.worker_slots)),
        tuple(requirements),
        cfg.registry_host,
        bake_version=version,
        bake_images=images,
        image_builder=True,
    )
    assert cfg.head_machine is not None  # build_config sets it for a cluster
    return WorkerImageSpec(
        name_prefix=cfg.resource_prefix,
        version=version,
        builder_script=render_cluster_script(worker_startup_params(cfg), params),
        machine_type=cfg.head_machine.name,
        disk_type=cfg.disk_type,
        labels={
            "project": resource_name(cfg.project, 63),
            "stack": resource_name(cfg.stack, 63),
            "role": "worker-image-builder",
        },
    )


# --- the wait: the builder's verdict through the Compute API -------------------------------------


class BakeFailed(Exception):
    """The builder failed, stopped without a verdict, or did not finish in time."""


def compute_client(environ: Mapping[str, str]) -> compute.ComputeClient:
    """stacks/compute.py's client at the endpoint the environment names (module docstring)."""
    if environ.get(compute.ENDPOINT_ENV, "").strip():
        return compute.client_from_env(environ)
    override = environ.get("CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE", "").strip().rstrip("/")
    if override:
        base = override.removesuffix("/compute/v1")
        return compute.ComputeClient(base, compute.google_token(environ))
    return compute.client_from_env(environ)


def bake_attribute(client: compute.ComputeClient, ref: compute.InstanceRef) -> str | None:
    """The builder's ``llamaresttest/bake`` guest attribute; None while it has none (404)."""
    key = urllib.parse.quote(f"{BAKE_ATTRIBUTE_NAMESPACE}/{BAKE_ATTRIBUTE_KEY}", safe="")
    code, body = client._request("GET", f"{ref.path}/getGuestAttributes?variableKey={key}")
    if code == 404:
        return None
    if code != 200:
        raise compute.ComputeError(
            f"instances.getGuestAttributes of {ref.label} answered {code}: {compute.api_message(body)}"
        )
    value = body.get("variableValue")
    return str(value) if value is not None else None


def serial_hint(ref: compute.InstanceRef) -> str:
    return (
        f"its log is on the serial console: gcloud compute instances get-serial-port-output {ref.name} "
        f"--zone {ref.zone} --project {ref.project}"
    )


def wait_for_builder(
    client: compute.ComputeClient,
    ref: compute.InstanceRef,
    version: str,
    timeout: float,
    *,
    poll: float = POLL_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Waits until the builder is TERMINATED with ``ok <version>``; returns that verdict. The attribute
    is read while the builder runs too (it waits a minute between writing it and powering off), so a
    stopped VM whose guest attributes cannot be read still counts with the last one seen."""
    started = clock()
    seen: str | None = None
    while True:
        state = client.get(ref)
        if state is None:
            raise BakeFailed(f"the image builder {ref.label} does not exist (deleted while it baked?)")
        try:
            seen = bake_attribute(client, ref) or seen
        except compute.ComputeError:
            if state.status not in compute.DOWN:
                raise
        if seen is not None and seen.startswith("failed"):
            raise BakeFailed(f"the image builder {ref.label} says: {seen}; {serial_hint(ref)}")
        if state.status in compute.DOWN:
            if seen == f"ok {version}":
                return seen
            said = f"its last word was {seen!r}" if seen else "it recorded no verdict"
            raise BakeFailed(
                f"the image builder {ref.label} is {state.status} but {said} (expected 'ok {version}'); "
                f"{serial_hint(ref)}"
            )
        if clock() - started >= timeout:
            raise BakeFailed(
                f"the image builder {ref.label} is still {state.status} after {timeout / 60:.0f} min; "
                f"{serial_hint(ref)}"
            )
        sleep(poll)


class BuilderWaitProvider(pulumi.dynamic.ResourceProvider):
    """Created once per builder (its id and the version replace it); deleting it deletes nothing."""

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        keys = ("project", "zone", "instance", "instance_id", "version")
        changed = [k for k in keys if olds.get(k) != news.get(k)]
        return pulumi.dynamic.DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        ref = compute.InstanceRef(str(props["project"]), str(props["zone"]), str(props["instance"]))
        try:
            verdict = wait_for_builder(
                compute_client(os.environ),
                ref,
                str(props["version"]),
                float(props["timeout_seconds"]),
                poll=float(props.get("poll_seconds", POLL_SECONDS)),
            )
        except (BakeFailed, compute.ComputeError) as exc:
            raise Exception(f"baking the worker image failed: {exc}") from exc
        return pulumi.dynamic.CreateResult(f"{ref.name}:{props['version']}", {**props, "verdict": verdict})


class BuilderWait(pulumi.dynamic.Resource, module="llamaresttest", name="BuilderWait"):
    verdict: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        project: pulumi.Input[str],
        zone: pulumi.Input[str],
        instance: pulumi.Input[str],
        instance_id: pulumi.Input[str],
        version: str,
        timeout_seconds: float,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "project": project,
            "zone": zone,
            "instance": instance,
            "instance_id": instance_id,
            "version": version,
            "timeout_seconds": timeout_seconds,
            "poll_seconds": POLL_SECONDS,
            "verdict": None,
        }
        super().__init__(BuilderWaitProvider(), name, props, opts)


# --- the resources --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerImageArgs:
    spec: WorkerImageSpec
    project: str
    zone: str
    network: str
    service_account_email: pulumi.Input[str]


class WorkerImage(pulumi.ComponentResource):
    """Builder, wait, image: ``self_link`` is what the worker template boots."""

    builder: gcp.compute.Instance
    wait: BuilderWait
    image: gcp.compute.Image
    self_link: pulumi.Output[str]

    def __init__(self, name: str, args: WorkerImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llamaresttest:stacks:WorkerImage", name, None, opts)
        spec = args.spec
        child = pulumi.ResourceOptions(parent=self)
        self.builder = gcp.compute.Instance(
            f"{name}-builder",
            name=spec.builder_name,
            project=args.project,
            zone=args.zone,
            machine_type=spec.machine_type,
            boot_disk=gcp.compute.InstanceBootDiskArgs(
                # the disk becomes the image: kept when the instance goes (the image is made first)
                auto_delete=True,
                initialize_params=gcp.compute.InstanceBootDiskInitializeParamsArgs(
                    image=IMAGE, size=BUILDER_DISK_GB, type=spec.disk_type
                ),
            ),
            # apt, PyPI and Docker Hub: an ephemeral address, as the workers have; nothing comes in
            network_interfaces=[
                gcp.compute.InstanceNetworkInterfaceArgs(
                    network=args.network,
                    access_configs=[gcp.compute.InstanceNetworkInterfaceAccessConfigArgs()],
                )
            ],
            # on demand, never restarted: it powers itself off when done (a spot reclaim would fail
            # the wait with "no verdict", and the next `pulumi up` would try again)
            scheduling=gcp.compute.InstanceSchedulingArgs(
                provisioning_model="STANDARD", automatic_restart=False, on_host_maintenance="MIGRATE"
            ),
            service_account=gcp.compute.InstanceServiceAccountArgs(
                email=args.service_account_email, scopes=["cloud-platform"]
            ),
            shielded_instance_config=gcp.compute.InstanceShieldedInstanceConfigArgs(
                enable_secure_boot=True, enable_vtpm=True, enable_integrity_monitoring=True
            ),
            metadata={
                "startup-script": spec.builder_script,
                "enable-guest-attributes": "TRUE",
                "block-project-ssh-keys": "TRUE",
            },
            labels=dict(spec.labels),
            description=f"llamaresttest worker image builder, version {spec.version} (powers itself off)",
            opts=child,
        )
        self.wait = BuilderWait(
            f"{name}-wait",
            project=args.project,
            zone=args.zone,
            instance=self.builder.name,
            instance_id=self.builder.instance_id,
            version=spec.version,
            timeout_seconds=spec.timeout_seconds,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.builder]),
        )
        self.image = gcp.compute.Image(
            f"{name}-image",
            name=spec.image_name,
            project=args.project,
            family=spec.image_family,
            source_disk=self.builder.boot_disk.source,
            labels={**spec.labels, "role": "ray-worker-image", "version": spec.version},
            description=f"llamaresttest Ray worker: Docker, the venv, base images (version {spec.version})",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.wait]),
        )
        self.self_link = self.image.self_link
        self.register_outputs({"image": self.image.name, "version": spec.version})
