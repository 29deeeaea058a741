"""Pure parts: which SSH failures are retried, how the retry behaves, and check/diff of the provider."""

from __future__ import annotations

import errno
import socket

import paramiko
import pytest

from stacks import deploy
from stacks.remote import (
    RetryPolicy,
    as_root,
    is_transient,
    parse_public_key,
    retrying,
)

from .conftest import make_key

KEY = parse_public_key(make_key().public_openssh)
OTHER = parse_public_key(make_key().public_openssh)


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
        ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
        TimeoutError("timed out"),
        TimeoutError("timed out"),
        OSError(errno.EHOSTUNREACH, "No route to host"),
        OSError(errno.ENETUNREACH, "Network is unreachable"),
        paramiko.ssh_exception.NoValidConnectionsError(
            {("34.1.2.3", 22): ConnectionRefusedError(errno.ECONNREFUSED, "refused")}
        ),
        paramiko.SSHException("Error reading SSH protocol banner[Errno 104] Connection reset by peer"),
        EOFError(),
        socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transient_failures_are_retried(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        paramiko.AuthenticationException("Authentication failed."),
        paramiko.BadAuthenticationType("Bad authentication type", ["password"]),
        paramiko.BadHostKeyException("34.1.2.3", KEY, OTHER),
        paramiko.SSHException("Incompatible ssh peer (no acceptable host key)"),
        socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
        OSError(errno.EACCES, "Permission denied"),
        ValueError("bug"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_permanent_failures_are_not_retried(exc: BaseException) -> None:
    assert not is_transient(exc)


def flaky(failures: list[BaseException]):  # type: ignore[no-untyped-def]
    calls = []

    def call() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "connected"

    return call, calls


def test_retry_goes_on_through_transient_failures_without_waiting_in_tests() -> None:
    call, calls = flaky([ConnectionRefusedError(errno.ECONNREFUSED, "x"), TimeoutError("y")])
    messages: list[str] = []
    result = retrying(RetryPolicy(timeout_seconds=5, waits=False), messages.append, "SSH")(call)
    assert result == "connected" and len(calls) == 3
    assert len(messages) == 2 and "attempt 1 failed" in messages[0]


def test_retry_stops_at_once_on_a_permanent_failure() -> None:
    call, calls = flaky([paramiko.AuthenticationException("no")])
    with pytest.raises(paramiko.AuthenticationException):
        retrying(RetryPolicy(timeout_seconds=5, waits=False), lambda _m: None, "SSH")(call)
    assert len(calls) == 1


def test_retry_gives_up_after_its_attempts() -> None:
    call, calls = flaky([ConnectionRefusedError(errno.ECONNREFUSED, "x")] * 10)
    with pytest.raises(ConnectionRefusedError):
        retrying(RetryPolicy(timeout_seconds=60, max_attempts=4, waits=False), lambda _m: None, "SSH")(call)
    assert len(calls) == 4


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(initial_wait=2, max_wait=30)
    wait = retrying(policy, lambda _m: None, "SSH").wait
    import tenacity

    waits = []
    for attempt in range(1, 8):
        state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = attempt
        waits.append(wait(state))
    assert waits[0] < waits[2] < waits[4] and max(waits) == 30


def test_root_commands_use_sudo_unless_root() -> None:
    assert as_root("systemctl daemon-reload", "root") == "systemctl daemon-reload"
    assert as_root("systemctl daemon-reload", "llrt") == "sudo -n sh -c 'systemctl daemon-reload'"


PROPS = {
    deploy.HOST: "34.1.2.3",
    deploy.PORT: 22,
    deploy.USER: "llrt",
    deploy.PRIVATE_KEY: make_key().private_openssh,
    deploy.HOST_KEY: make_key().public_openssh,
    deploy.BUNDLE_HASH: "a" * 64,
    deploy.BUNDLE_PATH: "/tmp/bundle.tar.gz",
    deploy.EXPERIMENT: {"runs": 1, "upload": {"bucket": "b", "path": "p"}},
    deploy.REMOTE_ROOT: "/opt/llamaresttest",
    deploy.AUTO_START: False,
    deploy.UPLOAD_RESULTS: True,
}


def test_check_accepts_good_inputs_without_touching_the_network() -> None:
    # 34.1.2.3 is nobody we could reach: check must not try.
    assert deploy.DeployProvider().check({}, dict(PROPS)).failures == []


def test_check_reports_every_bad_input() -> None:
    bad = {**PROPS, deploy.PORT: 70000, deploy.BUNDLE_HASH: "nothex", deploy.REMOTE_ROOT: "opt/x"}
    bad[deploy.HOST_KEY] = "ssh-ed25519 !!!"
    failures = {f.property for f in deploy.DeployProvider().check({}, bad).failures}
    assert failures == {deploy.PORT, deploy.BUNDLE_HASH, deploy.REMOTE_ROOT, deploy.HOST_KEY}


def test_check_leaves_unknown_values_alone_during_preview() -> None:
    from pulumi.runtime.rpc import UNKNOWN

    props = {**PROPS, deploy.HOST: UNKNOWN, deploy.BUNDLE_HASH: UNKNOWN, deploy.HOST_KEY: UNKNOWN}
    assert deploy.DeployProvider().check({}, props).failures == []


@pytest.mark.parametrize(
    ("change", "changes", "replaces"),
    [
        ({deploy.BUNDLE_PATH: "/elsewhere/same-content.tar.gz"}, False, []),
        ({deploy.BUNDLE_HASH: "b" * 64}, True, []),
        ({deploy.EXPERIMENT: {"runs": 2}}, True, []),
        ({deploy.AUTO_START: True}, True, []),
        ({deploy.PRIVATE_KEY: make_key().private_openssh}, True, []),
        ({deploy.HOST: "34.9.9.9"}, True, [deploy.HOST]),
    ],
    ids=["bundle-moved", "bundle-changed", "settings", "auto-start", "client-key", "new-host"],
)
def test_diff(change: dict, changes: bool, replaces: list[str]) -> None:
    diff = deploy.DeployProvider().diff("id", dict(PROPS), {**PROPS, **change})
    assert diff.changes is changes
    assert (diff.replaces or []) == replaces
    assert diff.delete_before_replace is False  # deploy on the new VM first, then drain the old one


def test_a_server_that_drops_the_connection_before_the_banner_is_retried_then_unreachable() -> None:
    """A real socket that accepts and closes at once, like a VM whose sshd is still starting."""
    import threading

    from stacks.remote import HostUnreachable, SshTarget, connect

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _addr = server.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    client, host = make_key(), make_key()
    target = SshTarget(
        "127.0.0.1", server.getsockname()[1], "root", host.public_openssh, client.private_openssh
    )
    messages: list[str] = []
    try:
        with pytest.raises(HostUnreachable, match="unreachable"):
            connect(target, RetryPolicy(timeout_seconds=20, max_attempts=3, waits=False), messages.append)
    finally:
        server.close()
    assert len(accepted) == 3  # every attempt reached the server: retried, not given up on at once
    assert len(messages) == 2 and all("retrying" in m for m in messages)
