"""Deploys the runner onto the VM over SSH and starts the batch: a Pulumi dynamic resource.

``pulumi up``: wait (bounded, with progress) for SSH and the startup script's ready marker (on first
contact a host-key mismatch is taken for a VM still booting, for a short grace: see
:meth:`DeployProvider._first_contact`); upload
the bundle into ``releases/<hash>/`` unless that release is already complete; switch the ``current``
link atomically; install the runner's dependencies into the venv; install and enable the systemd
unit; start it (restart it when the release changed; the runner resumes the batch named in
``experiment.json``). ``pulumi destroy``: stop the unit (the runner interrupts its experiments
cleanly), run a final results upload, and treat a host that is already gone as done.

Only the bundle's path and content hash are inputs: the archive itself never enters the Pulumi state.
``check`` and ``diff`` are pure and touch nothing, so ``pulumi preview`` never opens a connection.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shlex
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pulumi
import pulumi.dynamic
from pulumi.runtime.rpc import UNKNOWN
from pulumi.runtime.settings import get_engine

from stacks import systemd
from stacks.bundle import REQUIREMENTS_FILE, Bundle, build_bundle, default_bundle_dir, sha256_file
from stacks.compute import (
    DOWN,
    GOING_DOWN,
    RUNNING,
    STARTING,
    ComputeClient,
    ComputeError,
    InstanceRef,
    client_from_env,
)
from stacks.remote import (
    HostKeyMismatch,
    HostUnreachable,
    PermanentSshError,
    RetryPolicy,
    Session,
    SshTarget,
    as_root,
    connect,
    load_private_key,
    parse_public_key,
    shell,
)

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = "/var/lib/llamaresttest"
DEFAULT_STARTUP_LOG = "/var/log/llamaresttest-startup.log"
DEFAULT_STARTUP_TIMEOUT = 45 * 60  # Docker install plus two ~5 GB model downloads on a fresh VM
# A new VM's sshd offers its image's own host key until the startup script (first thing it does)
# installs the stack's: seconds after boot, but the first `pulumi up` can connect inside that window.
DEFAULT_HOST_KEY_GRACE = 120.0
RELEASE_MARKER = ".bundle-sha256"

# Input properties of the resource, as stored in the Pulumi state.
HOST, PORT, USER = "host", "port", "user"
PRIVATE_KEY, HOST_KEY = "client_private_key", "host_public_key"
BUNDLE_HASH, BUNDLE_PATH, EXPERIMENT = "bundle_hash", "bundle_path", "experiment"
REMOTE_ROOT, STATE_DIR, STARTUP_LOG, UNIT_DIR = "remote_root", "state_dir", "startup_log", "unit_dir"
AUTO_START, UPLOAD_RESULTS, STARTUP_TIMEOUT = "auto_start", "upload_results", "startup_timeout_seconds"
# Which Compute Engine instance the host is (empty outside Google Cloud): delete asks the Compute API
# whether it still exists and runs, instead of taking an SSH time-out for "gone".
GCP_PROJECT, ZONE, INSTANCE, INSTANCE_ID = "gcp_project", "zone", "instance", "instance_id"

# Set to 1 (in the shell that runs `pulumi destroy`) to delete the deployment without the final
# upload: the operator accepts losing results that are only on the VM. Read by delete at run time,
# because `pulumi destroy` does not run the program and delete sees only the stored state.
DELETE_WITHOUT_UPLOAD_ENV = "LLAMARESTTEST_DESTROY_WITHOUT_UPLOAD"

# What a change of which means something must happen on the VM. The bundle's local path is left out
# on purpose: the same content at another path is the same release.
COMPARED = (
    HOST,
    PORT,
    USER,
    PRIVATE_KEY,
    HOST_KEY,
    BUNDLE_HASH,
    EXPERIMENT,
    REMOTE_ROOT,
    STATE_DIR,
    STARTUP_LOG,
    UNIT_DIR,
    AUTO_START,
    UPLOAD_RESULTS,
    GCP_PROJECT,
    ZONE,
    INSTANCE,
    INSTANCE_ID,
)
# Another machine: deploy there first, then drain the old one (Pulumi's create-before-delete). With an
# instance id, another machine is another id; a new address of the same instance (an ephemeral IP
# after a stop) is an update, never a replacement (the drain would stop the runner just deployed).
REPLACING = (HOST,)


def progress(message: str) -> None:
    """Progress for the operator, on std logging and, where someone would see it, the Pulumi log.

    A dynamic provider's process has no engine attached: ``pulumi.log`` then writes to stderr, which
    the Pulumi CLI passes through; so it is used when an engine is attached or when no logging is
    configured (the provider process). Tests capture the std logging records.
    """
    logger.info(message)
    if get_engine() is not None or not (logging.getLogger().handlers or logger.handlers):
        pulumi.log.info(message)


# ---------------------------------------------------------------------------------------------------
# Pure parts: validation, diff, paths and remote scripts


def _known(value: Any) -> bool:
    return value != UNKNOWN


def validate(props: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems with the inputs, as (property, reason); unknown values (preview) are not judged."""
    problems: list[tuple[str, str]] = []
    for key in (HOST, USER, PRIVATE_KEY, HOST_KEY, BUNDLE_HASH, BUNDLE_PATH, REMOTE_ROOT):
        if key not in props or props[key] in (None, ""):
            problems.append((key, "is required"))
    if problems:
        return problems
    port = props.get(PORT, 22)
    if _known(port) and not (isinstance(port, int | float) and 0 < int(port) < 65536):
        problems.append((PORT, f"must be a TCP port, got {port!r}"))
    digest = props[BUNDLE_HASH]
    if _known(digest) and not re.fullmatch(r"[0-9a-f]{64}", str(digest)):
        problems.append((BUNDLE_HASH, "must be a sha256 hex digest"))
    for key in (REMOTE_ROOT, STATE_DIR, STARTUP_LOG, UNIT_DIR):
        value = props.get(key)
        if value is not None and _known(value) and (not str(value).startswith("/") or " " in str(value)):
            problems.append((key, f"must be an absolute path without spaces, got {value!r}"))
    if _known(props[HOST_KEY]):
        try:
            parse_public_key(str(props[HOST_KEY]))
        except PermanentSshError as exc:
            problems.append((HOST_KEY, str(exc)))
    if _known(props[PRIVATE_KEY]):
        try:
            load_private_key(str(props[PRIVATE_KEY]))
        except PermanentSshError as exc:
            problems.append((PRIVATE_KEY, str(exc)))
    return problems


def changed_keys(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
    return [key for key in COMPARED if olds.get(key) != news.get(key)]


def replaced_keys(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
    """What makes the change another machine: the instance id where both sides know it, else the host."""
    old_id, new_id = olds.get(INSTANCE_ID), news.get(INSTANCE_ID)
    if old_id and new_id:
        return [INSTANCE_ID] if old_id != new_id else []
    return [key for key in REPLACING if olds.get(key) != news.get(key)]


def keep_host_of_stopped_vm(olds: Mapping[str, Any], news: dict[str, Any]) -> dict[str, Any]:
    """A stopped VM has no external address, and ``pulumi refresh`` then stores ``""`` for it: the same
    instance keeps the deployment's last host instead (an empty host would mean a replacement whose
    create fails, and a delete that connects to localhost)."""
    same_instance = not news.get(INSTANCE_ID) or olds.get(INSTANCE_ID) == news.get(INSTANCE_ID)
    if news.get(HOST) == "" and olds.get(HOST) and same_instance:
        return {**news, HOST: olds[HOST]}
    return news


def instance_ref(props: Mapping[str, Any]) -> InstanceRef | None:
    values = [str(props.get(k) or "") for k in (GCP_PROJECT, ZONE, INSTANCE)]
    return InstanceRef(*values) if all(values) else None


def delete_override(environ: Mapping[str, str]) -> bool:
    return environ.get(DELETE_WITHOUT_UPLOAD_ENV, "").strip().lower() in ("1", "true", "yes")


def unusable_host(host: str) -> bool:
    """No address at all, or a name that means this machine: a delete must never connect there."""
    name = host.strip().lower().rstrip(".")
    return not name or name == "localhost" or name.endswith(".localhost")


@dataclass(frozen=True)
class Paths:
    """Where things live on the VM (docs/contracts.md)."""

    root: str = systemd.DEFAULT_REMOTE_ROOT
    state_dir: str = DEFAULT_STATE_DIR
    startup_log: str = DEFAULT_STARTUP_LOG
    unit_dir: str = systemd.DEFAULT_UNIT_DIR

    @classmethod
    def of(cls, props: Mapping[str, Any]) -> Paths:
        return cls(
            root=str(props.get(REMOTE_ROOT) or cls.root),
            state_dir=str(props.get(STATE_DIR) or cls.state_dir),
            startup_log=str(props.get(STARTUP_LOG) or cls.startup_log),
            unit_dir=str(props.get(UNIT_DIR) or cls.unit_dir),
        )

    def release(self, digest: str) -> str:
        return f"{self.root}/releases/{digest}"

    @property
    def current(self) -> str:
        return f"{self.root}/current"

    @property
    def venv(self) -> str:
        return f"{self.root}/venv"

    @property
    def ready_marker(self) -> str:
        return f"{self.state_dir}/startup.ready"

    @property
    def failed_marker(self) -> str:
        return f"{self.state_dir}/startup.failed"

    @property
    def unit_file(self) -> str:
        return systemd.unit_path(self.unit_dir)


def startup_state_script(paths: Paths, tail_lines: int = 40) -> str:
    """Prints READY, or FAILED followed by the reason and the startup log's tail, or WAITING."""
    ready, failed, log = (shell([p]) for p in (paths.ready_marker, paths.failed_marker, paths.startup_log))
    return (
        f"if [ -f {failed} ]; then echo FAILED; cat {failed}; echo '--- startup log (tail) ---'; "
        f"tail -n {tail_lines} {log} 2>/dev/null; "
        f"elif [ -f {ready} ]; then echo READY; else echo WAITING; fi"
    )


def release_state_script(paths: Paths, digest: str) -> str:
    marker = shell([f"{paths.release(digest)}/{RELEASE_MARKER}"])
    return f"cat {marker} 2>/dev/null || true"


def install_release_script(paths: Paths, digest: str, staged: str) -> str:
    """Verifies the staged archive, unpacks it beside the release, then renames it into place."""
    release = paths.release(digest)
    partial = f"{paths.root}/releases/.{digest}.partial"
    q = shell
    return " && ".join(
        [
            "set -e",
            f'test "$(sha256sum {q([staged])} | cut -d" " -f1)" = {q([digest])}',
            f"mkdir -p {q([paths.root + '/releases'])}",
            f"rm -rf {q([partial])}",
            f"mkdir {q([partial])}",
            f"tar -xzf {q([staged])} -C {q([partial])} --no-same-owner",
            f"printf %s {q([digest])} > {q([partial + '/' + RELEASE_MARKER])}",
            f"rm -rf {q([release])}",
            f"mv -T {q([partial])} {q([release])}",
            f"rm -f {q([staged])}",
        ]
    )


def current_target_script(paths: Paths) -> str:
    return f"readlink {shell([paths.current])} || true"


def switch_current_script(paths: Paths, digest: str) -> str:
    """``ln -s`` beside the link then ``mv -T`` over it: rename(2) is atomic, so there is always a link."""
    tmp = f"{paths.root}/.current.new"
    link, current = shell(["releases/" + digest]), shell([paths.current])
    return f"ln -sfn {link} {shell([tmp])} && mv -T {shell([tmp])} {current}"


def install_deps_script(paths: Paths, digest: str, requirements_sha: str) -> str:
    """Creates the venv once, then installs the release's requirements unless that exact list is in."""
    venv, stamp = paths.venv, f"{paths.venv}/.requirements-{requirements_sha}"
    reqs = f"{paths.release(digest)}/{REQUIREMENTS_FILE}"
    pip = shell(
        [f"{venv}/bin/python", "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", reqs]
    )
    return (
        f"set -e; test -x {shell([venv + '/bin/python'])} || python3 -m venv {shell([venv])}; "
        f"if [ ! -f {shell([stamp])} ]; then {pip} && touch {shell([stamp])}; echo INSTALLED; "
        "else echo UP-TO-DATE; fi"
    )


def write_file_script(path: str, mode: str = "0644") -> str:
    """Writes stdin to ``path`` through a temporary name (readers never see half a file)."""
    tmp = f"{path}.new"
    return f"cat > {shell([tmp])} && chmod {mode} {shell([tmp])} && mv -f {shell([tmp])} {shell([path])}"


def stop_script(paths: Paths) -> str:
    """Stops the unit if it was ever installed (a failed first deploy may have left none)."""
    return f"if [ -f {shell([paths.unit_file])} ]; then {shell(systemd.stop())}; fi"


def results_dir(paths: Paths, experiment: Mapping[str, Any]) -> str:
    """The results folder as the runner resolves it (relative to the config file's folder)."""
    results = str(experiment.get("results") or "./results")
    return results if results.startswith("/") else f"{paths.current}/{results}"


# The runner's sync command, as an operator would type it (BATCH_DIR --bucket B --path P; exit 1 while
# something is pending).
UPLOAD_COMMAND = ("-m", "remote_runner", "upload")
# How much of the final upload's output `pulumi destroy` shows (what was uploaded, what is pending).
UPLOAD_REPORT_LINES = 40


def final_upload_script(paths: Paths, experiment: Mapping[str, Any]) -> str | None:
    """Syncs the deployed batch (or, without a batch name, the newest one) with the runner's ``upload``.

    None when the settings configure no upload. The runner's upload exits 1 when something is still
    pending, which fails the delete: the VM is kept so nothing is lost.
    """
    upload = experiment.get("upload") or {}
    if not isinstance(upload, Mapping) or not upload.get("bucket"):
        return None
    results = results_dir(paths, experiment)
    batch = experiment.get("batch")
    pick = (
        f"batch_dir={shell([results + '/' + str(batch)])}"
        if batch
        else f"batch_dir=$(ls -1d {shell([results])}/batch-* 2>/dev/null | sort | tail -n 1)"
    )
    runner = shell([systemd.venv_python(paths.root), *UPLOAD_COMMAND])
    target = shell(["--bucket", str(upload["bucket"]), "--path", str(upload.get("path") or "")])
    return (
        f"cd {shell([paths.current])} && {pick}; "
        'if [ -z "$batch_dir" ] || [ ! -d "$batch_dir" ]; then echo "no batch folder to upload"; exit 0; fi; '
        f'{runner} "$batch_dir" {target}'
    )


def requirements_sha(bundle_path: Path) -> str | None:
    with tarfile.open(bundle_path, "r:gz") as tar:
        try:
            member = tar.extractfile(REQUIREMENTS_FILE)
        except KeyError:
            return None
        if member is None:
            return None
        return hashlib.sha256(member.read()).hexdigest()


def target_of(props: Mapping[str, Any]) -> SshTarget:
    return SshTarget(
        host=str(props[HOST]),
        port=int(props.get(PORT) or 22),
        user=str(props[USER]),
        host_public_key=str(props[HOST_KEY]),
        private_key=str(props[PRIVATE_KEY]),
    )


# ---------------------------------------------------------------------------------------------------
# The provider


class DeployError(Exception):
    pass


@dataclass(frozen=True)
class Timing:
    """Waits of the provider; tests make them short and switch backoff off."""

    connect: RetryPolicy = field(default_factory=lambda: RetryPolicy(timeout_seconds=600))
    # A destroyed or stopped VM should not hold `pulumi destroy` for long.
    connect_on_delete: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(timeout_seconds=90, max_wait=10)
    )
    poll_seconds: float = 10.0
    # A stopped VM started for the final upload: how long it may take to be RUNNING again.
    start_timeout: float = 600.0
    # First contact of a create/update only: how long a host-key mismatch counts as "still booting",
    # and the pause between tries. 0: a mismatch fails at once there too.
    host_key_grace: float = DEFAULT_HOST_KEY_GRACE
    host_key_retry_seconds: float = 10.0
    command_timeout: float = 1800.0
    sleep: Callable[[float], None] = field(default=time.sleep)
    clock: Callable[[], float] = field(default=time.monotonic)


class DeployProvider(pulumi.dynamic.ResourceProvider):
    def __init__(
        self,
        timing: Timing | None = None,
        compute: ComputeClient | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.timing = timing or Timing()
        # None: read at the time of the operation, in the provider's own process (its environment is
        # the one `pulumi destroy` was started with).
        self.compute = compute
        self.environ = environ

    def _environ(self) -> Mapping[str, str]:
        return os.environ if self.environ is None else self.environ

    def _compute(self) -> ComputeClient:
        return self.compute or client_from_env(self._environ())

    # -- pure ---------------------------------------------------------------------------------------
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.CheckResult:
        inputs = keep_host_of_stopped_vm(olds or {}, news)
        failures = [pulumi.dynamic.CheckFailure(key, reason) for key, reason in validate(inputs)]
        return pulumi.dynamic.CheckResult(inputs, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        news = keep_host_of_stopped_vm(olds, news)
        changed = changed_keys(olds, news)
        return pulumi.dynamic.DiffResult(
            changes=bool(changed),
            replaces=replaced_keys(olds, news) if changed else [],
            delete_before_replace=False,
        )

    # -- effects ------------------------------------------------------------------------------------
    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        outs = self._deploy(props)
        return pulumi.dynamic.CreateResult(f"{props[HOST]}:{Paths.of(props).root}", outs)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(self._deploy(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        """Stops the runner and runs the final upload; succeeds only when that upload succeeded, the
        Compute API says the VM is gone, or the operator set ``LLAMARESTTEST_DESTROY_WITHOUT_UPLOAD``.

        A VM that is down (spot preemption, maxRunHours, shutdownWhenDone) is started for the upload,
        and the address to connect to is the one the Compute API reports now (an ephemeral address
        changes across a stop). "Unreachable" is an error that says what to do, never "gone".
        """
        override = delete_override(self._environ())
        paths = Paths.of(props)
        host = str(props.get(HOST) or "")
        ref = instance_ref(props)
        connect_policy = self.timing.connect_on_delete
        if ref is not None:
            current = self._instance_for_delete(ref, override)
            if current is None:
                return
            host, started = current
            if started:
                connect_policy = self.timing.connect
        if unusable_host(host):
            raise DeployError(
                f"the deployment has no usable address ({host!r}) to reach the VM for its final upload; "
                "refusing to connect to this machine instead. Start the VM and run `pulumi refresh` and "
                f"`pulumi destroy` again, or set {DELETE_WITHOUT_UPLOAD_ENV}=1 to delete it without the "
                "final upload (results not yet uploaded are lost)"
            )
        target = replace(target_of(props), host=host)
        progress(f"stopping the runner on {target.label}")
        try:
            session = connect(target, connect_policy, progress)
        except (HostUnreachable, HostKeyMismatch) as exc:
            if override:
                progress(f"{exc}; {DELETE_WITHOUT_UPLOAD_ENV} is set: deleting without the final upload")
                return
            raise DeployError(self._unreachable_message(target, ref, exc)) from exc
        with session:
            res = session.run(
                as_root(stop_script(paths), target.user), timeout=systemd.DEFAULT_TIMEOUT_STOP_SEC + 60
            )
            if not res.ok:
                raise DeployError(f"stopping {systemd.UNIT_NAME} failed:\n{res.tail()}")
            progress(f"{systemd.UNIT_NAME} stopped")
            remove = f"rm -f {shell([paths.unit_file])}"
            self._run_root(
                session,
                f"{shell(systemd.disable())} && {remove} && {shell(systemd.daemon_reload())}",
                "removing the unit",
            )
            upload = final_upload_script(paths, props.get(EXPERIMENT) or {})
            if props.get(UPLOAD_RESULTS) and upload is not None:
                progress("final upload of the results")
                res = session.run(as_root(upload, target.user), timeout=self.timing.command_timeout)
                for line in res.output.strip().splitlines()[-UPLOAD_REPORT_LINES:]:
                    progress(f"final upload: {line}")
                if not res.ok:
                    reason = "timed out" if res.timed_out else f"exit code {res.returncode}"
                    if not override:
                        raise DeployError(
                            f"the final results upload failed on {target.label} ({reason}); the VM is "
                            "kept with its results. Fix the cause shown above and run `pulumi destroy` "
                            f"again, or set {DELETE_WITHOUT_UPLOAD_ENV}=1 to delete it anyway"
                        )
                    progress(f"final upload failed ({reason}); {DELETE_WITHOUT_UPLOAD_ENV} is set: deleting")
            progress("runner stopped; releases and results are left on the VM")

    def _instance_for_delete(self, ref: InstanceRef, override: bool) -> tuple[str, bool] | None:
        """(address to connect to, whether delete started the VM), or None when there is nothing to do."""
        compute = self._compute()
        try:
            state = compute.get(ref)
            if state is not None and state.status in GOING_DOWN:
                progress(f"instance {ref.label} is {state.status}; waiting for it to stop")
                state = compute.wait_while(ref, GOING_DOWN, self.timing.start_timeout)
            if state is None:
                progress(f"the Compute API says instance {ref.label} does not exist: nothing left to upload")
                return None
            started = False
            if state.status in DOWN:
                if override:
                    progress(
                        f"instance {ref.label} is {state.status}; {DELETE_WITHOUT_UPLOAD_ENV} is set: "
                        "deleting without starting it for a final upload"
                    )
                    return None
                progress(
                    f"instance {ref.label} is {state.status}: starting it for the final upload of the "
                    "results on its disk (it is deleted afterwards)"
                )
                compute.start(ref)
                started = True
                state = compute.wait_while(ref, DOWN | STARTING, self.timing.start_timeout)
                if state is None:
                    raise ComputeError(f"{ref.label} disappeared while starting")
            if state.status in STARTING:
                state = compute.wait_while(ref, STARTING, self.timing.start_timeout) or state
            if state.status != RUNNING:
                raise ComputeError(f"{ref.label} is {state.status}, not RUNNING")
            progress(f"instance {ref.label} is RUNNING at {state.nat_ip or 'no external address'}")
            return state.nat_ip, started
        except ComputeError as exc:
            raise DeployError(
                f"{exc}. The VM's results may not all be uploaded, so it is not deleted. Start it with "
                f"`{ref.gcloud('start')}` and run `pulumi destroy` again, or set "
                f"{DELETE_WITHOUT_UPLOAD_ENV}=1 to delete it without the final upload"
            ) from exc

    @staticmethod
    def _unreachable_message(target: SshTarget, ref: InstanceRef | None, exc: Exception) -> str:
        if ref is None:
            where = "the VM may still be there with results not yet uploaded"
            check = f"Check that port {target.port} of {target.host} is open from this machine"
        else:
            where = f"the Compute API says {ref.label} is RUNNING, so SSH is blocked or broken"
            check = (
                f"Check that port {target.port} is open from this machine (the stack's firewall rule and "
                "llamaresttest:sshSourceRanges, which must contain your current address) and that sshd "
                f"runs (`{ref.gcloud('get-serial-port-output')}`)"
            )
        return (
            f"{exc}: {where}; the deployment is not deleted. {check}, then run `pulumi destroy` again; "
            f"or set {DELETE_WITHOUT_UPLOAD_ENV}=1 to delete it without the final upload "
            "(results not yet uploaded are lost)"
        )

    # -- steps ----------------------------------------------------------------------------------------
    def _deploy(self, props: dict[str, Any]) -> dict[str, Any]:
        problems = validate(props)
        if problems:
            raise DeployError("; ".join(f"{key} {reason}" for key, reason in problems))
        target, paths = target_of(props), Paths.of(props)
        digest = str(props[BUNDLE_HASH])
        bundle_path = Path(str(props[BUNDLE_PATH]))
        if not bundle_path.is_file():
            raise DeployError(f"bundle {bundle_path} is missing; run `pulumi up` again to rebuild it")
        actual = sha256_file(bundle_path)
        if actual != digest:
            raise DeployError(
                f"bundle {bundle_path} has sha256 {actual}, expected {digest}; refusing to deploy"
            )

        progress(f"connecting to {target.label}")
        with self._first_contact(target) as session:
            self._wait_for_startup(
                session, paths, float(props.get(STARTUP_TIMEOUT) or DEFAULT_STARTUP_TIMEOUT)
            )
            uploaded = self._ensure_release(session, paths, digest, bundle_path)
            previous = session.run(as_root(current_target_script(paths), target.user)).output.strip()
            switched = previous != f"releases/{digest}"
            if switched:
                self._run_root(session, switch_current_script(paths, digest), "switching the current link")
                progress(f"current -> releases/{digest} (was {previous or 'absent'})")
            req_sha = requirements_sha(bundle_path)
            if req_sha is not None:
                out = self._run_root(
                    session, install_deps_script(paths, digest, req_sha), "installing runner deps"
                )
                progress(f"runner dependencies: {out.strip().splitlines()[-1] if out.strip() else 'done'}")
            # A cluster's settings name Ray ("ray"): the runner's unit then carries the token variables.
            self._install_unit(session, paths, cluster=bool(dict(props.get(EXPERIMENT) or {}).get("ray")))
            self._start(session, bool(props.get(AUTO_START)), switched)
        return {**props, "release_dir": paths.release(digest), "uploaded": uploaded}

    def _first_contact(self, target: SshTarget) -> Session:
        """Connects for a create/update, taking a host-key mismatch for a VM still booting, for a while.

        Before its startup script's first step, a new VM's sshd offers the image's own host key. So
        here, and only here (before this operation has reached the VM with the pinned key), a mismatch
        is retried for ``host_key_grace`` seconds, logged each time, then fails with the mismatch
        message. Nothing secret is exposed meanwhile: paramiko checks the host key during the key
        exchange, before any authentication, so the client key is never offered to that server.
        Everywhere else (delete; a grace of 0) a mismatch fails at once.
        """
        started = self.timing.clock()
        grace = self.timing.host_key_grace
        while True:
            try:
                return connect(target, self.timing.connect, progress)
            except HostKeyMismatch as exc:
                waited = self.timing.clock() - started
                if waited >= grace:
                    if grace <= 0:
                        raise
                    raise HostKeyMismatch(
                        f"{exc} (still the wrong key after the {grace:.0f}s first-contact grace)"
                    ) from exc
                progress(
                    f"host key mismatch on first contact with {target.label}: taking it for a VM still "
                    "booting with its image's key (no credentials were sent); retrying "
                    f"({waited:.0f}s of {grace:.0f}s)"
                )
                self.timing.sleep(self.timing.host_key_retry_seconds)

    def _run_root(self, session: Session, script: str, what: str) -> str:
        res = session.run(as_root(script, session.target.user), timeout=self.timing.command_timeout)
        if not res.ok:
            reason = "timed out" if res.timed_out else f"exit code {res.returncode}"
            raise DeployError(f"{what} failed on {session.target.label} ({reason}):\n{res.tail()}")
        return res.output

    def _wait_for_startup(self, session: Session, paths: Paths, timeout: float) -> None:
        started = self.timing.clock()
        script = startup_state_script(paths)
        while True:
            res = session.run(as_root(script, session.target.user), timeout=60)
            state = res.output.strip().splitlines()[0] if res.output.strip() else "WAITING"
            if state == "READY":
                progress("VM startup finished (ready marker present)")
                return
            if state == "FAILED":
                raise DeployError(
                    f"the VM's startup script failed ({paths.failed_marker}):\n"
                    + "\n".join(res.output.strip().splitlines()[1:])
                )
            waited = self.timing.clock() - started
            if waited >= timeout:
                raise DeployError(
                    f"the VM's startup script did not finish within {timeout:.0f}s "
                    f"(no {paths.ready_marker}); see {paths.startup_log} on the VM"
                )
            progress(f"waiting for the VM's startup script ({waited:.0f}s of {timeout:.0f}s)")
            self.timing.sleep(self.timing.poll_seconds)

    def _ensure_release(self, session: Session, paths: Paths, digest: str, bundle_path: Path) -> bool:
        user = session.target.user
        present = session.run(as_root(release_state_script(paths, digest), user)).output.strip()
        if present == digest:
            progress(f"release {digest[:12]} already on the VM; nothing to upload")
            return False
        staged = f"{session.home()}/.llamaresttest-{digest}.tar.gz"
        size = bundle_path.stat().st_size
        progress(f"uploading bundle {digest[:12]} ({size / 1024:.0f} KiB)")
        session.put(str(bundle_path), staged)
        self._run_root(session, install_release_script(paths, digest, staged), "unpacking the release")
        progress(f"release {paths.release(digest)} in place")
        return True

    def _install_unit(self, session: Session, paths: Paths, *, cluster: bool = False) -> None:
        text = systemd.render_unit(paths.root, cluster=cluster)
        existing = session.run(
            as_root(f"cat {shell([paths.unit_file])} 2>/dev/null || true", session.target.user)
        )
        if existing.output != text:
            res = session.run(
                as_root(write_file_script(paths.unit_file), session.target.user), input_text=text, timeout=60
            )
            if not res.ok:
                raise DeployError(f"installing {paths.unit_file} failed:\n{res.tail()}")
            self._run_root(session, shell(systemd.daemon_reload()), "systemctl daemon-reload")
            progress(f"installed {paths.unit_file}")

    def _start(self, session: Session, auto_start: bool, switched: bool) -> None:
        if auto_start:
            self._run_root(session, shell(systemd.enable()), "enabling the unit")
            command = systemd.restart() if switched else systemd.start()
            self._run_root(session, shell(command), f"{command[1]} {systemd.UNIT_NAME}")
            progress(f"{systemd.UNIT_NAME} enabled and {'restarted' if switched else 'running'}")
        else:
            # Not enabled: a reboot must not start a batch the operator has not started. A batch the
            # operator did start picks up the new release.
            self._run_root(session, shell(systemd.disable()), "disabling the unit")
            if switched:
                self._run_root(session, shell(systemd.try_restart()), "try-restart")
            progress(f"{systemd.UNIT_NAME} installed, not started (autoStart is false)")


# ---------------------------------------------------------------------------------------------------
# The Pulumi resource and the component the program uses


def batch_name(now: datetime) -> str:
    """A batch folder name as the runner writes them: ``batch-<UTC YYYYmmddTHHMMSSZ>``."""
    return "batch-" + now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


class BatchNameProvider(pulumi.dynamic.ResourceProvider):
    """Names the batch once and keeps the name in the state (like a random id): every redeploy, reboot
    or spot restart then resumes the same batch; a new ``keeper`` (another machine) starts a new one."""

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        changed = olds.get("keeper") != news.get("keeper")
        return pulumi.dynamic.DiffResult(changes=changed, replaces=["keeper"] if changed else [])

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        name = batch_name(datetime.now(UTC))
        return pulumi.dynamic.CreateResult(name, {**props, "name": name})


class BatchName(pulumi.dynamic.Resource, module="llamaresttest", name="BatchName"):
    name: pulumi.Output[str]

    def __init__(
        self, name: str, keeper: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(BatchNameProvider(), name, {"keeper": keeper, "name": None}, opts)


class DeploymentResource(pulumi.dynamic.Resource, module="llamaresttest", name="Deployment"):
    release_dir: pulumi.Output[str]
    bundle_hash: pulumi.Output[str]
    uploaded: pulumi.Output[bool]

    def __init__(
        self,
        name: str,
        props: Mapping[str, Any],
        opts: pulumi.ResourceOptions | None = None,
        provider: DeployProvider | None = None,
    ) -> None:
        secret_opts = pulumi.ResourceOptions(additional_secret_outputs=[PRIVATE_KEY])
        super().__init__(
            provider or DeployProvider(),
            name,
            {**props, "release_dir": None, "uploaded": None},
            pulumi.ResourceOptions.merge(secret_opts, opts),
        )


@dataclass
class DeploymentArgs:
    """Inputs of :class:`Deployment`; ``experiment`` is ``stacks.config.experiment_settings(cfg)``."""

    host: pulumi.Input[str]
    user: pulumi.Input[str]
    client_private_key: pulumi.Input[str]  # OpenSSH text (pulumi_tls ``private_key_openssh``), secret
    host_public_key: pulumi.Input[str]  # OpenSSH line (pulumi_tls ``public_key_openssh``)
    experiment: pulumi.Input[Mapping[str, Any]]
    # The batch to create or resume. Default: experiment["batch"] if set, else a name chosen on the first
    # deploy and kept in the state (BatchName) until ``batch_keeper`` changes.
    batch: pulumi.Input[str] | None = None
    # Identifies the machine (e.g. the instance id); a new one starts a new batch. Default: the host.
    batch_keeper: pulumi.Input[str] | None = None
    # The operator's ssh command up to user@host (the stack's sshCommand); statusCommand and
    # logsCommand append the remote command to it. Default: ssh -i llamaresttest-key [-p PORT] user@host.
    ssh_command: pulumi.Input[str] | None = None
    # The Compute Engine instance behind ``host`` (all three, or none outside Google Cloud): delete asks
    # the Compute API whether it exists and runs, starts it for the final upload, and connects to the
    # address it has now. ``instance_id`` decides what counts as another machine (a replacement).
    gcp_project: pulumi.Input[str] | None = None
    zone: pulumi.Input[str] | None = None
    instance: pulumi.Input[str] | None = None
    instance_id: pulumi.Input[str] | None = None
    # What the deployment needs to reach the VM and upload from it (the VM, its firewall rule and
    # address, the service account's grants): the deploy resource depends on each directly, so
    # `pulumi destroy` deletes none of them before the final upload has run.
    needs: Sequence[pulumi.Resource] = ()
    port: int = 22
    auto_start: bool = False
    upload_results: bool = True
    remote_root: str = systemd.DEFAULT_REMOTE_ROOT
    state_dir: str = DEFAULT_STATE_DIR
    startup_log: str = DEFAULT_STARTUP_LOG
    unit_dir: str = systemd.DEFAULT_UNIT_DIR
    startup_timeout_seconds: int = DEFAULT_STARTUP_TIMEOUT
    project_root: Path = PROJECT_ROOT
    bundle_dir: Path | None = None


def _with_batch(experiment: Mapping[str, Any], batch: str | None) -> dict[str, Any]:
    settings = dict(experiment)
    if batch:
        settings["batch"] = batch
    return settings


class Deployment(pulumi.ComponentResource):
    """The runner on one VM: bundle built locally, pushed and started over SSH."""

    def __init__(self, name: str, args: DeploymentArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llamaresttest:deploy:Deployment", name, None, opts)
        bundle_dir = args.bundle_dir or default_bundle_dir()
        batch = args.batch
        named_in_settings = isinstance(args.experiment, Mapping) and bool(args.experiment.get("batch"))
        if batch is None and not named_in_settings:
            named = pulumi.Output.from_input(args.experiment).apply(lambda e: bool(dict(e).get("batch")))
            self.batch_name = BatchName(
                f"{name}-batch", args.batch_keeper or args.host, pulumi.ResourceOptions(parent=self)
            )
            batch = pulumi.Output.all(named, self.batch_name.name).apply(
                lambda nb: "" if nb[0] else str(nb[1])
            )
        settings = pulumi.Output.all(args.experiment, batch).apply(lambda pair: _with_batch(pair[0], pair[1]))
        bundle: pulumi.Output[Bundle] = settings.apply(
            lambda s: build_bundle(args.project_root, s, bundle_dir)
        )
        props: dict[str, Any] = {
            HOST: args.host,
            PORT: args.port,
            USER: args.user,
            PRIVATE_KEY: pulumi.Output.secret(args.client_private_key),
            HOST_KEY: args.host_public_key,
            BUNDLE_HASH: bundle.apply(lambda b: b.sha256),
            BUNDLE_PATH: bundle.apply(lambda b: str(b.path)),
            EXPERIMENT: settings,
            REMOTE_ROOT: args.remote_root,
            STATE_DIR: args.state_dir,
            STARTUP_LOG: args.startup_log,
            UNIT_DIR: args.unit_dir,
            AUTO_START: args.auto_start,
            UPLOAD_RESULTS: args.upload_results,
            STARTUP_TIMEOUT: args.startup_timeout_seconds,
            GCP_PROJECT: args.gcp_project or "",
            ZONE: args.zone or "",
            INSTANCE: args.instance or "",
            INSTANCE_ID: args.instance_id or "",
        }
        self.resource = DeploymentResource(
            name, props, pulumi.ResourceOptions(parent=self, depends_on=list(args.needs))
        )
        self.bundle_hash: pulumi.Output[str] = self.resource.bundle_hash
        self.release_dir: pulumi.Output[str] = self.resource.release_dir
        ssh: pulumi.Output[str] = (
            pulumi.Output.from_input(args.ssh_command)
            if args.ssh_command is not None
            else pulumi.Output.all(args.user, args.host).apply(
                lambda uh: ssh_command(str(uh[0]), str(uh[1]), args.port)
            )
        )
        self.ssh_command: pulumi.Output[str] = ssh
        self.status_command: pulumi.Output[str] = pulumi.Output.all(ssh, settings).apply(
            lambda pair: over_ssh(pair[0], remote_status_command(args.remote_root, pair[1]))
        )
        self.logs_command: pulumi.Output[str] = ssh.apply(lambda base: over_ssh(base, remote_logs_command()))
        self.register_outputs(
            {
                "bundleHash": self.bundle_hash,
                "releaseDir": self.release_dir,
                "statusCommand": self.status_command,
                "logsCommand": self.logs_command,
            }
        )


def ssh_command(user: str, host: str, port: int = 22, key_file: str = "llamaresttest-key") -> str:
    """How the operator logs in (client key from `pulumi stack output --show-secrets`; see docs/deploy.md)."""
    port_part = [] if port == 22 else ["-p", str(port)]
    return shell(["ssh", "-i", key_file, *port_part, f"{user}@{host}"])


def over_ssh(ssh_base: str, remote: str) -> str:
    """``ssh ... user@host 'remote shell command'``: one quoted argument, run by the login shell."""
    return f"{ssh_base} {shlex.quote(remote)}"


def remote_status_command(
    remote_root: str = systemd.DEFAULT_REMOTE_ROOT, experiment: Mapping[str, Any] | None = None
) -> str:
    """The runner's own ``status`` of the deployed batch (the newest one when the settings name none)."""
    settings = experiment or {}
    paths = Paths(root=remote_root)
    argv = ["sudo", systemd.venv_python(remote_root), "-m", "remote_runner", "status"]
    argv += ["--results", results_dir(paths, settings)]
    if settings.get("batch"):
        argv += ["--batch", str(settings["batch"])]
    return f"cd {shell([paths.current])} && {shell(argv)}"


def remote_logs_command() -> str:
    """Follows the runner's log (the unit's journal)."""
    return shell(["sudo", *systemd.logs_command()])
