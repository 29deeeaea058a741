"""SSH to the experiment VM with paramiko: pinned host key, transient failures retried, the rest at once.

- The VM's host key is known in advance (the stack generates it and the startup script installs it),
  so it is put into the client's ``HostKeys`` explicitly and any other key is refused: a key of the
  same name that differs raises paramiko's ``BadHostKeyException``, and a host for which no key is
  known is refused by :class:`RejectUnknownHostKey` (never auto-accepted).
- Errors are classified (:func:`is_transient`): a VM that is booting refuses connections, resets
  them, times out or closes them during the SSH banner; those are retried with exponential backoff
  (tenacity, waits switchable off for tests). An authentication failure or a host-key mismatch will
  not get better by waiting: they fail at once with a message that says what happened.
- Command construction is pure (:func:`shell`, :func:`as_root`); :class:`Session` executes.
"""

from __future__ import annotations

import base64
import binascii
import errno
import io
import shlex
import socket
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import paramiko
import tenacity

from remote_runner.common.process import ProcessResult

Progress = Callable[[str], None]


class SshError(Exception):
    """Base of the errors this module raises; the message is meant for the operator."""


class PermanentSshError(SshError):
    """Retrying cannot help (wrong key, wrong credentials)."""


class HostKeyMismatch(PermanentSshError):
    pass


class AuthenticationFailed(PermanentSshError):
    pass


class HostUnreachable(SshError):
    """Transient failures went on until the time budget ran out."""


@dataclass(frozen=True)
class SshTarget:
    host: str
    port: int
    user: str
    host_public_key: str  # OpenSSH public key line: "<type> <base64> [comment]"
    private_key: str = field(repr=False)  # OpenSSH or PEM private key text; never logged

    @property
    def label(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying transient failures. ``waits=False`` retries without sleeping (tests)."""

    timeout_seconds: float = 600.0
    max_attempts: int | None = None
    initial_wait: float = 2.0
    max_wait: float = 30.0
    waits: bool = True


# ---------------------------------------------------------------------------------------------------
# Keys


def parse_public_key(line: str) -> paramiko.PKey:
    """The pinned host key from an OpenSSH public key line (as pulumi_tls's ``public_key_openssh``)."""
    parts = line.strip().split()
    if len(parts) < 2:
        raise PermanentSshError("host public key must be an OpenSSH line '<type> <base64> [comment]'")
    try:
        blob = base64.b64decode(parts[1], validate=True)
        return paramiko.PKey.from_type_string(parts[0], blob)
    except (binascii.Error, paramiko.SSHException, ValueError) as exc:
        raise PermanentSshError(f"host public key of type {parts[0]!r} could not be read: {exc}") from exc


def load_private_key(text: str) -> paramiko.PKey:
    """The client key (OpenSSH format for every type; PEM also for RSA/ECDSA)."""
    errors = []
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError) as exc:
            errors.append(f"{cls.__name__}: {type(exc).__name__}")
    # The key itself is never part of the message.
    raise PermanentSshError(f"client private key could not be read ({'; '.join(errors)})")


def fingerprint(key: paramiko.PKey) -> str:
    return key.fingerprint  # "SHA256:..." as ssh-keygen prints it


def host_key_entry(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


class RejectUnknownHostKey(paramiko.MissingHostKeyPolicy):
    """Refuses any host whose key was not pinned: the opposite of ``AutoAddPolicy``."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise HostKeyMismatch(
            f"host key mismatch: {hostname} presented a {key.get_name()} key {fingerprint(key)} "
            "that is not the pinned host key; refusing to connect"
        )


# ---------------------------------------------------------------------------------------------------
# Error classification

_TRANSIENT_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.ENETDOWN,
        errno.EPIPE,
    }
)


def is_transient(exc: BaseException) -> bool:
    """True for failures a booting or briefly unreachable VM produces, worth retrying."""
    if isinstance(exc, PermanentSshError | paramiko.AuthenticationException | paramiko.BadHostKeyException):
        return False
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return all(is_transient(inner) for inner in exc.errors.values())
    if isinstance(exc, TimeoutError | ConnectionError | EOFError):
        return True
    if isinstance(exc, socket.gaierror):
        return exc.errno == socket.EAI_AGAIN  # temporary resolver failure; a bad name stays bad
    if isinstance(exc, OSError):
        return exc.errno in _TRANSIENT_ERRNOS
    if isinstance(exc, paramiko.SSHException):
        text = str(exc).lower()
        # sshd accepted TCP but is not serving yet (booting) or dropped us during the key exchange.
        return any(
            marker in text for marker in ("protocol banner", "connection reset", "timed out", "eof during")
        )
    return False


def explain(exc: BaseException, target: SshTarget) -> SshError:
    """The operator-facing error for a failure to connect to ``target``."""
    if isinstance(exc, SshError):
        return exc
    if isinstance(exc, paramiko.BadHostKeyException):
        return HostKeyMismatch(
            f"host key mismatch for {target.label}: the server presented {exc.key.get_name()} "
            f"{fingerprint(exc.key)} but the pinned host key is {exc.expected_key.get_name()} "
            f"{fingerprint(exc.expected_key)}. Either this is not the stack's VM, or its host key was "
            "changed outside Pulumi; refusing to connect. (A VM created moments ago still offers its "
            "image's own key until its startup script installs the stack's: then run `pulumi up` again.)"
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return AuthenticationFailed(
            f"SSH authentication failed for {target.label}: the server refused the stack's client key "
            f"({type(exc).__name__}: {exc}). Check sshUser and that the VM has the stack's public key."
        )
    if is_transient(exc):
        return HostUnreachable(f"{target.label} is unreachable: {type(exc).__name__}: {exc}")
    return PermanentSshError(f"SSH to {target.label} failed: {type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------------------------------
# Pure command construction


def shell(argv: Sequence[str]) -> str:
    return shlex.join(argv)


def as_root(script: str, user: str) -> str:
    """Runs a shell script with root rights: directly for root, else through non-interactive sudo."""
    if user == "root":
        return script
    return shell(["sudo", "-n", "sh", "-c", script])


def retrying(policy: RetryPolicy, progress: Progress, what: str) -> tenacity.Retrying:
    stop: tenacity.stop.stop_base = tenacity.stop_after_delay(policy.timeout_seconds)
    if policy.max_attempts is not None:
        stop = stop | tenacity.stop_after_attempt(policy.max_attempts)
    wait: tenacity.wait.wait_base = (
        tenacity.wait_exponential(multiplier=policy.initial_wait, max=policy.max_wait)
        if policy.waits
        else tenacity.wait_none()
    )

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        waited = state.seconds_since_start or 0.0
        progress(
            f"{what}: attempt {state.attempt_number} failed ({type(exc).__name__}: {exc}); "
            f"retrying ({waited:.0f}s of {policy.timeout_seconds:.0f}s)"
        )

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient),
        stop=stop,
        wait=wait,
        before_sleep=before_sleep,
        reraise=True,
    )


# ---------------------------------------------------------------------------------------------------
# Execution


def connect_once(target: SshTarget, timeout: float = 20.0) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.get_host_keys().add(
        host_key_entry(target.host, target.port),
        parse_public_key(target.host_public_key).get_name(),
        parse_public_key(target.host_public_key),
    )
    client.set_missing_host_key_policy(RejectUnknownHostKey())
    try:
        client.connect(
            target.host,
            port=target.port,
            username=target.user,
            pkey=load_private_key(target.private_key),
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            allow_agent=False,
            look_for_keys=False,
        )
    except BaseException:
        client.close()
        raise
    return client


def connect(target: SshTarget, policy: RetryPolicy, progress: Progress) -> Session:
    """Connects, retrying transient failures within ``policy``; raises an :class:`SshError`."""
    try:
        for attempt in retrying(policy, progress, f"SSH to {target.label}"):
            with attempt:
                client = connect_once(target)
    except Exception as exc:
        raise explain(exc, target) from exc
    return Session(client, target)


class Session:
    """One SSH connection: run shell commands, move files over SFTP."""

    def __init__(self, client: paramiko.SSHClient, target: SshTarget) -> None:
        self.client = client
        self.target = target
        self._sftp: paramiko.SFTPClient | None = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
        self.client.close()

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            self._sftp = self.client.open_sftp()
        return self._sftp

    def run(self, command: str, *, timeout: float = 600.0, input_text: str | None = None) -> ProcessResult:
        """Runs ``command`` in the login user's shell; combined output, like ``process.execute``."""
        channel = self.client.get_transport().open_session()  # type: ignore[union-attr]
        try:
            channel.settimeout(timeout)
            channel.set_combine_stderr(True)
            channel.exec_command(command)
            if input_text is not None:
                channel.sendall(input_text.encode())
            channel.shutdown_write()
            chunks: list[bytes] = []
            try:
                while True:
                    data = channel.recv(65536)
                    if not data:
                        break
                    chunks.append(data)
            except TimeoutError:
                return ProcessResult(-1, b"".join(chunks).decode("utf-8", "replace"), timed_out=True)
            code = channel.recv_exit_status()
            return ProcessResult(code, b"".join(chunks).decode("utf-8", "replace"), timed_out=False)
        finally:
            channel.close()

    def home(self) -> str:
        return self.sftp.normalize(".")

    def put(self, local_path: str, remote_path: str) -> None:
        """Uploads to ``remote_path`` via a temporary name, so a broken transfer never looks complete."""
        partial = f"{remote_path}.partial"
        self.sftp.put(local_path, partial, confirm=True)
        self.sftp.posix_rename(partial, remote_path)

    def is_file(self, remote_path: str) -> bool:
        try:
            mode = self.sftp.stat(remote_path).st_mode
        except FileNotFoundError:
            return False
        return mode is not None and stat.S_ISREG(mode)
