"""A real sshd on loopback plays the VM: generated host and client keys, a free port, its own PidFile,
log and remote root in temp folders. The only stand-in is ``systemctl`` (see systemctl_standin.py),
put first on the SSH sessions' PATH because systemd is not PID 1 here."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from remote_runner.common.process import execute
from stacks import deploy
from stacks.remote import RetryPolicy
from tests.services import free_port

HERE = Path(__file__).resolve().parent
SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True)
class KeyPair:
    private_openssh: str
    public_openssh: str


def make_key() -> KeyPair:
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return KeyPair(private, public.decode() + " test\n")


@pytest.fixture(scope="session")
def keys() -> dict[str, KeyPair]:
    return {"client": make_key(), "host": make_key(), "other_host": make_key(), "other_client": make_key()}


@pytest.fixture(scope="session")
def venv_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv whose interpreter sees this project's installed packages through a .pth file.

    The deploy step still runs pip on the bundle's requirements; pip finds them satisfied and needs no
    download, so the test stays fast and offline-proof while the install step itself is exercised.
    """
    venv = tmp_path_factory.mktemp("venv-template") / "venv"
    res = execute([sys.executable, "-m", "venv", str(venv)], timeout=120)
    assert res.ok, res.output
    site = next((venv / "lib").glob("python3*/site-packages"))
    project_site = next((Path(sys.prefix) / "lib").glob("python3*/site-packages"))
    (site / "project-deps.pth").write_text(f"{project_site}\n")
    return venv


@dataclass
class Vm:
    """The loopback "VM": its sshd and the folders deploy writes to."""

    port: int
    base: Path
    root: Path
    state_dir: Path
    unit_dir: Path
    standin_state: Path
    sshd_log: Path
    keys: dict[str, KeyPair]

    @property
    def startup_log(self) -> Path:
        return self.base / "startup.log"

    def props(self, bundle_path: Path, bundle_hash: str, experiment: dict, **overrides: object) -> dict:
        props = {
            deploy.HOST: "127.0.0.1",
            deploy.PORT: self.port,
            deploy.USER: "root",
            deploy.PRIVATE_KEY: self.keys["client"].private_openssh,
            deploy.HOST_KEY: self.keys["host"].public_openssh,
            deploy.BUNDLE_HASH: bundle_hash,
            deploy.BUNDLE_PATH: str(bundle_path),
            deploy.EXPERIMENT: experiment,
            deploy.REMOTE_ROOT: str(self.root),
            deploy.STATE_DIR: str(self.state_dir),
            deploy.STARTUP_LOG: str(self.startup_log),
            deploy.UNIT_DIR: str(self.unit_dir),
            deploy.AUTO_START: True,
            deploy.UPLOAD_RESULTS: True,
            deploy.STARTUP_TIMEOUT: 5,
        }
        props.update(overrides)
        return props

    def sftp_writes(self) -> list[str]:
        """Files opened for writing over SFTP, from the sftp-server's own log (it logs every open)."""
        log = self.base / "sftp.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return [line for line in text.splitlines() if "open " in line and "WRITE" in line]

    def standin_calls(self) -> list[str]:
        calls = self.standin_state / "calls.log"
        return calls.read_text().splitlines() if calls.exists() else []

    def runner_pid(self) -> int | None:
        pid_file = self.standin_state / "llamaresttest-parallel.service.pid"
        if not pid_file.exists():
            return None
        pid = int(pid_file.read_text())
        stat = Path(f"/proc/{pid}/stat")
        if not stat.exists() or stat.read_text().split(") ")[-1].startswith("Z"):
            return None  # gone, or a zombie nobody reaped
        return pid


def _write_sshd_config(
    base: Path, port: int, keys: dict[str, KeyPair], unit_dir: Path, state: Path, extra_env: dict[str, str]
) -> Path:
    host_key = base / "ssh_host_ed25519_key"
    host_key.write_text(keys["host"].private_openssh)
    host_key.chmod(0o600)
    authorized = base / "authorized_keys"
    authorized.write_text(keys["client"].public_openssh)
    authorized.chmod(0o600)
    bin_dir = base / "bin"
    bin_dir.mkdir()
    standin = bin_dir / "systemctl"
    standin.write_text(f"#!{sys.executable}\n" + (HERE / "systemctl_standin.py").read_text())
    standin.chmod(0o755)
    path = f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    config = base / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"PidFile {base / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}",
                "PermitRootLogin yes",  # the tests run as root; this sshd serves only them, on loopback
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "LogLevel INFO",
                # The real sftp-server, its log (every file opened) kept for the tests' upload counts.
                f"Subsystem sftp /usr/lib/openssh/sftp-server -e -l INFO 2>>{base / 'sftp.log'}",
                " ".join(
                    [f"SetEnv PATH={path} LLRT_UNIT_DIR={unit_dir} LLRT_STANDIN_STATE={state}"]
                    + [f"{k}={v}" for k, v in extra_env.items()]
                ),
                "",
            ]
        )
    )
    return config


@contextmanager
def running_vm(
    tmp_path: Path, keys: dict[str, KeyPair], venv_template: Path, extra_env: dict[str, str] | None = None
) -> Iterator[Vm]:
    base = tmp_path / "vm"
    base.mkdir()
    root = base / "opt-llamaresttest"
    root.mkdir()
    res = execute(["cp", "-a", str(venv_template), str(root / "venv")], timeout=60)
    assert res.ok, res.output
    state_dir = base / "var-lib-llamaresttest"
    state_dir.mkdir()
    (state_dir / "startup.ready").write_text("ok\n")
    unit_dir = base / "etc-systemd-system"
    unit_dir.mkdir()
    standin_state = base / "standin"
    port = free_port()
    config = _write_sshd_config(base, port, keys, unit_dir, standin_state, extra_env or {})
    os.makedirs("/run/sshd", exist_ok=True)
    log = base / "sshd.log"
    res = execute([SSHD, "-f", str(config), "-E", str(log)], timeout=30)
    assert res.ok, f"sshd did not start: {res.output}\n{log.read_text() if log.exists() else ''}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    machine = Vm(port, base, root, state_dir, unit_dir, standin_state, log, keys)
    try:
        yield machine
    finally:
        runner = machine.runner_pid()
        if runner is not None:
            os.kill(runner, 9)
        pid_file = base / "sshd.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), 15)


@pytest.fixture
def vm(tmp_path: Path, keys: dict[str, KeyPair], venv_template: Path) -> Iterator[Vm]:
    with running_vm(tmp_path, keys, venv_template) as machine:
        yield machine


FAST = deploy.Timing(
    connect=RetryPolicy(timeout_seconds=20, max_attempts=3, waits=False),
    connect_on_delete=RetryPolicy(timeout_seconds=10, max_attempts=2, waits=False),
    poll_seconds=0.0,
    command_timeout=120,
)


@pytest.fixture
def provider() -> deploy.DeployProvider:
    return deploy.DeployProvider(FAST)


@pytest.fixture(scope="session")
def project_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkout's bundled folders, copied once: the tests change files without touching the tree."""
    from stacks.bundle import BUNDLED_DIRS, BUNDLED_FILES

    src = Path(__file__).resolve().parents[2]
    dst = tmp_path_factory.mktemp("checkout")
    for name in BUNDLED_DIRS:
        if (src / name).is_dir():
            shutil.copytree(src / name, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in BUNDLED_FILES:
        shutil.copy2(src / name, dst / name)
    return dst
