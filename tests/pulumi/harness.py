"""Runs ``__main__.py`` afresh under Pulumi's mocks and records what it declared.

``set_mocks`` is process-wide state, so every run resets the root stack, installs new mocks and
config, and executes the program with runpy, as the Pulumi CLI would. The mocks answer like the
providers do for the outputs the program reads (service account email, key pairs, addresses).
"""

from __future__ import annotations

import json
import runpy
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_hex
from typing import Any

import pulumi
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pulumi.runtime import rpc, settings
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.stack import wait_for_rpcs
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "llamaresttest"
GCP_PROJECT = "research-project-1"
EPHEMERAL_IP = "34.123.45.67"
INTERNAL_IP = "10.128.0.7"  # an instance's ephemeral address in its VPC
HEAD_INTERNAL_IP = "10.128.0.42"  # a reserved INTERNAL address (a cluster's head; the workers join it)
STATIC_IP = "34.99.88.77"
INSTANCE_ID = "4815162342108"
PROJECT_NUMBER = "123456789012"
COMPUTE_URL = "https://www.googleapis.com/compute/v1"
BATCH = "batch-20260101T000000Z"  # what the BatchName dynamic resource names the batch


@dataclass(frozen=True)
class Registered:
    type: str
    name: str
    inputs: dict[str, Any]  # secrets unwrapped
    secret_inputs: frozenset[str]  # top-level inputs that were secrets
    custom: bool


def _is_secret(value: object) -> bool:
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


def unwrap(value: Any) -> Any:
    """``value`` with every secret wrapper removed."""
    if _is_secret(value):
        return unwrap(value["value"])
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[Registered] = []
        self.keys: dict[str, tuple[str, str]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
        secrets = frozenset(k for k, v in args.inputs.items() if _is_secret(v))
        inputs = unwrap(dict(args.inputs))
        self.resources.append(Registered(args.typ, args.name, inputs, secrets, bool(args.custom)))
        state = dict(args.inputs)
        if args.typ == "gcp:serviceaccount/account:Account":
            state["email"] = f"{args.inputs['accountId']}@{GCP_PROJECT}.iam.gserviceaccount.com"
        elif args.typ == "tls:index/privateKey:PrivateKey":
            key = Ed25519PrivateKey.generate()
            private = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
            ).decode()
            public = (
                key.public_key()
                .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
                .decode()
            )
            self.keys[args.name] = (private, public)
            state.update(privateKeyOpenssh=private, publicKeyOpenssh=public + "\n")
        elif args.typ == "random:index/randomPassword:RandomPassword":
            # Letters and digits, as asked (special=False); distinct per run like the provider's.
            length = int(args.inputs["length"])  # numbers arrive as floats
            state["result"] = token_hex(length)[:length]
        elif args.typ.endswith(":BatchName"):
            state["name"] = BATCH
        elif args.typ == "gcp:compute/resourcePolicy:ResourcePolicy":
            state["name"] = args.inputs.get("name") or f"{args.name}-0f3a"  # the provider's auto-name
            state["selfLink"] = (
                f"projects/{GCP_PROJECT}/regions/{args.inputs['region']}/resourcePolicies/{state['name']}"
            )
        elif args.typ == "gcp:compute/instanceTemplate:InstanceTemplate":
            link = f"projects/{GCP_PROJECT}/global/instanceTemplates/{args.name}"
            state.update(selfLink=link, selfLinkUnique=f"{link}?uniqueId=7001")
        elif args.typ == "gcp:compute/instanceGroupManager:InstanceGroupManager":
            state["selfLink"] = (
                f"projects/{GCP_PROJECT}/zones/{args.inputs['zone']}/instanceGroupManagers/{args.name}"
            )
        elif args.typ == "gcp:projects/iAMCustomRole:IAMCustomRole":
            state["name"] = f"projects/{GCP_PROJECT}/roles/{args.inputs['roleId']}"
        elif args.typ == "gcp:compute/address:Address":
            internal = args.inputs.get("addressType") == "INTERNAL"
            state["address"] = HEAD_INTERNAL_IP if internal else STATIC_IP
        elif args.typ == "gcp:compute/instance:Instance":
            interfaces = json.loads(json.dumps(inputs.get("networkInterfaces", [])))
            for interface in interfaces:
                interface["networkIp"] = interface.get("networkIp") or INTERNAL_IP
                for access in interface.get("accessConfigs", []):
                    access["natIp"] = access.get("natIp") or EPHEMERAL_IP
            state["networkInterfaces"] = interfaces
            state["instanceId"] = INSTANCE_ID
            # the boot disk a baked worker image is made from (stacks/worker_image.py)
            disk = f"projects/{GCP_PROJECT}/zones/{inputs.get('zone')}/disks/{inputs.get('name')}"
            state["bootDisk"] = {**inputs.get("bootDisk", {}), "source": f"{COMPUTE_URL}/{disk}"}
        elif args.typ == "gcp:compute/image:Image":
            state["selfLink"] = f"{COMPUTE_URL}/projects/{GCP_PROJECT}/global/images/{inputs.get('name')}"
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list[tuple[str, str]] | None]:
        if args.token == "gcp:organizations/getProject:getProject":
            return {"number": PROJECT_NUMBER, "projectId": args.args.get("projectId")}, []
        return {}, None


@dataclass(frozen=True)
class Options:
    """The resource options the engine gets with a registration (those the tests look at)."""

    delete_before_replace: bool
    ignore_changes: tuple[str, ...]
    replace_on_changes: tuple[str, ...]


@dataclass
class ProgramRun:
    mocks: RecordingMocks
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    # resource name -> names of the resources it depends on (as the engine would store them)
    dependencies: dict[str, set[str]] = field(default_factory=dict)
    # resource name -> its options (deleteBeforeReplace, ignoreChanges, ...)
    options: dict[str, Options] = field(default_factory=dict)

    @property
    def resources(self) -> list[Registered]:
        return self.mocks.resources

    def of_type(self, type_: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str) -> Registered:
        found = self.of_type(type_)
        assert len(found) == 1, f"expected one {type_}, got {[r.name for r in found]}"
        return found[0]


def make_project(base: Path, apis: list[str], tools: list[str]) -> Path:
    """A project checkout: the real __main__.py and pyproject.toml (the runner's requirements come from
    it) and a catalog with the given API and tool folders."""
    shutil.copy(ROOT / "__main__.py", base / "__main__.py")
    shutil.copy(ROOT / "pyproject.toml", base / "pyproject.toml")
    for kind, names in (("apis", apis), ("tools", tools)):
        for name in names:
            folder = base / kind / name
            folder.mkdir(parents=True)
            (folder / "Dockerfile").write_text("FROM debian:bookworm-slim\n")
    return base


def _config_text(value: object) -> str:
    # What the CLI hands a program: strings as they are, everything else as JSON.
    return value if isinstance(value, str) else json.dumps(value)


def run_program(project_dir: Path, config: Mapping[str, object], *, stack: str = "dev") -> ProgramRun:
    """Run the program with ``config`` (full keys, e.g. "llamaresttest:spot", "gcp:project")."""
    settings.ROOT.set(None)
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False)
    pulumi.runtime.set_all_config({k: _config_text(v) for k, v in config.items()}, [])
    run = ProgramRun(mocks)
    # The mocks' new_resource does not see a registration's dependencies; the monitor's request does.
    original = MockMonitor.RegisterResource

    def register(monitor: MockMonitor, request: Any) -> Any:
        run.dependencies[request.name] = {urn.rsplit("::", 1)[-1] for urn in request.dependencies}
        run.options[request.name] = Options(
            delete_before_replace=bool(request.deleteBeforeReplace),
            ignore_changes=tuple(request.ignoreChanges),
            replace_on_changes=tuple(request.replaceOnChanges),
        )
        return original(monitor, request)

    MockMonitor.RegisterResource = register  # type: ignore[method-assign]
    try:
        runpy.run_path(str(project_dir / "__main__.py"), run_name="__main__")
    finally:
        _sync_await(wait_for_rpcs())
        MockMonitor.RegisterResource = original  # type: ignore[method-assign]
    root = settings.get_root_resource()
    assert root is not None
    for name, value in root.outputs.items():  # type: ignore[attr-defined]
        output = pulumi.Output.from_input(value)
        run.outputs[name] = _sync_await(output.future())
        if _sync_await(output.is_secret()):
            run.secret_outputs.add(name)
    _sync_await(wait_for_rpcs())
    return run
