"""The VM's startup script: ``templates/startup.sh.tmpl`` rendered by a pure function.

Placeholders are ``@NAME@``; every value is shell-quoted with ``shlex.quote`` where it is inserted,
so no value (a bucket name, a key with newlines) can change what the script does. Rendering fails
if the template and the values disagree, in either direction.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

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
    StackConfig,
)

TEMPLATE_PATH = Path(__file__).parent / "templates" / "startup.sh.tmpl"
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
    used = set(_PLACEHOLDER.findall(text))
    unknown = used - values.keys()
    unused = values.keys() - used
    if unknown or unused:
        raise ValueError(
            f"startup template and values disagree: unknown placeholders {sorted(unknown)}, "
            f"values never used {sorted(unused)}"
        )
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)
