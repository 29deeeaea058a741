"""The VM's startup script: ``templates/startup.sh.tmpl`` rendered by a pure function.

Placeholders are ``@NAME@``; every value is shell-quoted with ``shlex.quote`` where it is inserted,
so no value (a bucket name, a key with newlines) can change what the script does. Rendering fails
if the template and the values disagree, in either direction.

A cluster (docs/cluster.md) has two more scripts, each the one VM's script with
``templates/cluster.sh.tmpl`` appended in place of its last lines (the guard that runs ``main``):
the head's runs the one VM's ``main`` plus the Ray head, the workers' runs ``worker_main`` (no SSH
login, no keys: the template's SSH values are empty there).
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from remote_runner.experiment import metadata_guard
from stacks import systemd
from stacks.config import (
    MODEL_FILES,
    VM_FAILED_MARKER,
    VM_MODELS_DIR,
    VM_READY_MARKER,
    VM_RELEASES_DIR,
    VM_RESULTS_DIR,
    VM_ROOT,
    VM_STARTUP_LOG,
    VM_STATE_DIR,
    VM_VENV,
    StackConfig,
)
from stacks.ray_nodes import (
    GUARD_SCRIPT_PATH,
    RAY_TOKEN_METADATA_KEY,
    RAY_TOKEN_PATH,
    RAY_UNIT_PATH,
    RayNode,
    render_guard_script,
    render_unit,
)

TEMPLATE_PATH = Path(__file__).parent / "templates" / "startup.sh.tmpl"
CLUSTER_TEMPLATE_PATH = Path(__file__).parent / "templates" / "cluster.sh.tmpl"
SHUTDOWN_TEMPLATE_PATH = Path(__file__).parent / "templates" / "shutdown.sh.tmpl"
# The last lines of the one VM's script, replaced by the cluster part's own.
VM_GUARD = 'if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then\n  main "$@"\nfi\n'
_PLACEHOLDER = re.compile(r"@([A-Z][A-Z0-9_]*)@")


@dataclass(frozen=True)
class StartupParams:
    """Everything the startup script depends on. The host private key makes the result a secret."""

    models_bucket: str
    models_path: str
    ssh_user: str
    client_public_key: str
    host_private_key: str
    host_public_key: str
    model_files: tuple[str, ...] = MODEL_FILES


def startup_params(
    cfg: StackConfig, *, client_public_key: str, host_private_key: str, host_public_key: str
) -> StartupParams:
    return StartupParams(
        models_bucket=cfg.models_bucket,
        models_path=cfg.models_path,
        ssh_user=cfg.ssh_user,
        client_public_key=client_public_key.strip(),
        host_private_key=host_private_key.strip(),
        host_public_key=host_public_key.strip(),
    )


def _substitute(text: str, values: dict[str, str]) -> str:
    used = set(_PLACEHOLDER.findall(text))
    unknown = used - values.keys()
    unused = values.keys() - used
    if unknown or unused:
        raise ValueError(
            f"startup template and values disagree: unknown placeholders {sorted(unknown)}, "
            f"values never used {sorted(unused)}"
        )
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def render_startup_script(params: StartupParams, template: str | None = None) -> str:
    """The script text for ``params`` (from the packaged template unless ``template`` is given)."""
    text = TEMPLATE_PATH.read_text(encoding="utf-8") if template is None else template
    values = {
        "VM_STARTUP_LOG": shlex.quote(VM_STARTUP_LOG),
        "VM_STATE_DIR": shlex.quote(VM_STATE_DIR),
        "VM_READY_MARKER": shlex.quote(VM_READY_MARKER),
        "VM_FAILED_MARKER": shlex.quote(VM_FAILED_MARKER),
        "VM_ROOT": shlex.quote(VM_ROOT),
        "VM_MODELS_DIR": shlex.quote(VM_MODELS_DIR),
        "VM_RELEASES_DIR": shlex.quote(VM_RELEASES_DIR),
        "VM_RESULTS_DIR": shlex.quote(VM_RESULTS_DIR),
        "MODELS_BUCKET": shlex.quote(params.models_bucket),
        "MODELS_PATH": shlex.quote(params.models_path),
        "MODEL_FILES": " ".join(shlex.quote(f) for f in params.model_files),
        "SSH_USER": shlex.quote(params.ssh_user),
        "CLIENT_PUBLIC_KEY": shlex.quote(params.client_public_key),
        "HOST_PRIVATE_KEY": shlex.quote(params.host_private_key),
        "HOST_PUBLIC_KEY": shlex.quote(params.host_public_key),
    }
    return _substitute(text, values)


@dataclass(frozen=True)
class ClusterParams:
    """What a cluster node's script adds: its Ray role, the runner's requirements (Ray among them),
    and the registry host Docker logs in to."""

    node: RayNode
    requirements: tuple[str, ...]
    registry_host: str
    # The baked worker image (stacks/worker_image.py): its version ("" without one), the base images
    # the builder pulls, and whether this script is the builder's.
    bake_version: str = ""
    bake_images: tuple[str, ...] = ()
    image_builder: bool = False


#: the worker template's metadata key naming the version its baked image must hold
BAKE_VERSION_METADATA_KEY = "llamaresttest-bake-version"


def bake_version(requirements: Sequence[str], images: Sequence[str]) -> str:
    """What a baked worker image holds, as 16 hex digits: the requirements, the base images and the
    two templates (their packages and install steps). Any change makes a new image, and a worker
    whose image carries another version installs afresh (cluster.sh.tmpl, ``install_base``)."""
    digest = hashlib.sha256()
    for part in (
        json.dumps({"requirements": list(requirements), "images": list(images)}, sort_keys=True),
        TEMPLATE_PATH.read_text(encoding="utf-8"),
        CLUSTER_TEMPLATE_PATH.read_text(encoding="utf-8"),
    ):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def render_cluster_script(params: StartupParams, cluster: ClusterParams, template: str | None = None) -> str:
    """The head's or a worker's script: the one VM's, its final guard replaced by the cluster part."""
    base = render_startup_script(params)
    if not base.endswith(VM_GUARD):
        raise ValueError("the startup template no longer ends with the guard that runs main")
    text = CLUSTER_TEMPLATE_PATH.read_text(encoding="utf-8") if template is None else template
    values = {
        # Quoted even though it is one word: "head" is also a command's name (shellcheck SC2209).
        "NODE_ROLE": f"'{cluster.node.role}'",  # "head" or "worker", checked by RayNode
        "VM_VENV": shlex.quote(VM_VENV),
        "NODE_REQUIREMENTS": " ".join(shlex.quote(r) for r in cluster.requirements),
        "REGISTRY_HOST": shlex.quote(cluster.registry_host),
        "RAY_UNIT_PATH": shlex.quote(RAY_UNIT_PATH),
        "RAY_UNIT": shlex.quote(render_unit(cluster.node)),
        "GUARD_SCRIPT_PATH": shlex.quote(GUARD_SCRIPT_PATH),
        "GUARD_SCRIPT": shlex.quote(render_guard_script([metadata_guard.CHAIN, *metadata_guard.rule()])),
        "RAY_TOKEN_FILE": shlex.quote(RAY_TOKEN_PATH),
        "RAY_TOKEN_KEY": shlex.quote(RAY_TOKEN_METADATA_KEY),
        "BAKE_VERSION": shlex.quote(cluster.bake_version),
        "BAKE_IMAGES": " ".join(shlex.quote(i) for i in cluster.bake_images),
        "IMAGE_BUILDER": "1" if cluster.image_builder else "0",
        "BAKE_VERSION_KEY": shlex.quote(BAKE_VERSION_METADATA_KEY),
    }
    return base[: -len(VM_GUARD)] + _substitute(text, values)


def worker_startup_params(cfg: StackConfig) -> StartupParams:
    """A worker's values: the models as on the head; no SSH user's keys (nobody logs in there)."""
    return StartupParams(
        models_bucket=cfg.models_bucket,
        models_path=cfg.models_path,
        ssh_user=cfg.ssh_user,
        client_public_key="",
        host_private_key="",
        host_public_key="",
    )


def render_shutdown_script(
    remote_root: str = systemd.DEFAULT_REMOTE_ROOT, template: str | None = None
) -> str:
    """A cluster head's ``shutdown-script``: unless the head is rebooting, the runner's
    ``release-workers`` resizes the worker group to 0, within Google's shutdown window."""
    if not remote_root.startswith("/") or any(ch.isspace() for ch in remote_root):
        raise ValueError(f"remote root must be an absolute path without spaces, got {remote_root!r}")
    text = SHUTDOWN_TEMPLATE_PATH.read_text(encoding="utf-8") if template is None else template
    values = {
        "VM_STARTUP_LOG": shlex.quote(VM_STARTUP_LOG),
        "REMOTE_ROOT": shlex.quote(remote_root),
        "RUNNER_PYTHON": shlex.quote(systemd.venv_python(remote_root)),
        "RUNNER_CONFIG": shlex.quote(systemd.config_path(remote_root)),
    }
    return _substitute(text, values)
