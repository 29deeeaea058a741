"""The dynamic provider's create/update/delete against a real sshd on loopback (this machine is the VM).

systemctl on that "VM" is the stand-in from systemctl_standin.py (systemd is not PID 1 here); it runs
the installed unit's ExecStart, which starts the real runner from the deployed release.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import signal
import socket
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko
import pytest

from stacks import deploy, systemd
from stacks.bundle import Bundle, build_bundle, experiment_json
from stacks.compute import ComputeClient, InstanceRef
from stacks.remote import AuthenticationFailed, HostKeyMismatch
from tests.services import free_port, gcs_emulator

from .compute_standin import ComputeStandin, compute_standin
from .conftest import FAST, KeyPair, Vm, running_vm

UNIT = systemd.UNIT_NAME


def settings(vm: Vm, **extra: object) -> dict:
    """Runner settings that make the real runner start, read them and stop at its input check: an API
    name that exists nowhere keeps the test away from Docker while proving which settings it read."""
    return {
        "catalog": ".",
        "results": str(vm.base / "results"),
        "apis": ["no-such-api-in-the-test"],
        "tools": ["schemathesis"],
        "runs": 1,
        "budget_seconds": 30,
        "cpus_per_container": 0.5,
        "memory_per_container": "256m",
        "min_free_cpus": 0,
        "batch": "batch-20260101T000000Z",
        **extra,
    }


def bundle_for(project_copy: Path, tmp_path: Path, experiment: dict, out: str = "bundles") -> Bundle:
    return build_bundle(project_copy, experiment, tmp_path / out)


def release_files(release: Path) -> list[str]:
    return sorted(p.relative_to(release).as_posix() for p in release.rglob("*") if p.is_file())


def wait_for(predicate, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_first_deploy_uploads_switches_installs_and_starts_the_runner(
    vm: Vm, provider: deploy.DeployProvider, project_copy: Path, tmp_path: Path
) -> None:
    experiment = settings(vm)
    bundle = bundle_for(project_copy, tmp_path, experiment)
    props = vm.props(bundle.path, bundle.sha256, experiment)
    assert provider.check({}, props).failures == []

    result = provider.create(props)

    release = vm.root / "releases" / bundle.sha256
    assert result.outs is not None and result.outs["release_dir"] == str(release)
    assert result.outs["uploaded"] is True
    assert release_files(release) == sorted([*bundle.files, deploy.RELEASE_MARKER])
    assert (release / "experiment.json").read_bytes() == experiment_json(experiment)
    with tarfile.open(bundle.path) as tar:
        assert (release / "remote_runner/cli.py").read_bytes() == tar.extractfile(
            "remote_runner/cli.py"
        ).read()  # type: ignore[union-attr]
    assert os.readlink(vm.root / "current") == f"releases/{bundle.sha256}"
    assert len(vm.sftp_writes()) == 1, vm.sftp_writes()  # the bundle, and nothing else
    assert not list(Path.home().glob(".llamaresttest-*.tar.gz*")), "staged archive left behind"
    # runner dependencies installed once into the venv
    assert list((vm.root / "venv").glob(".requirements-*"))
    # the unit: installed as rendered, enabled the way systemd enables it, (re)started
    unit_file = vm.unit_dir / UNIT
    assert unit_file.read_text() == systemd.render_unit(str(vm.root))
    assert (vm.unit_dir / "multi-user.target.wants" / UNIT).resolve() == unit_file
    calls = vm.standin_calls()
    assert calls[:3] == ["daemon-reload", f"enable {UNIT}", f"restart {UNIT}"], calls
    # the stand-in ran exactly the unit's ExecStart: the real runner, from the new release, with its settings
    execstart = (vm.standin_state / f"{UNIT}.execstart").read_text().strip()
    assert execstart == shlex.join(systemd.runner_command(str(vm.root)))
    log = vm.standin_state / f"{UNIT}.log"
    assert wait_for(lambda: "no-such-api-in-the-test" in log.read_text()), log.read_text()
    # the unit's environment keeps the release pristine: the runner wrote no byte code into it
    assert release_files(release) == sorted([*bundle.files, deploy.RELEASE_MARKER])


def test_noop_redeploy_uploads_nothing(
    vm: Vm, provider: deploy.DeployProvider, project_copy: Path, tmp_path: Path
) -> None:
    experiment = settings(vm)
    bundle = bundle_for(project_copy, tmp_path, experiment)
    olds = provider.create(vm.props(bundle.path, bundle.sha256, experiment)).outs
    assert olds is not None
    release = vm.root / "releases" / bundle.sha256
    marker_mtime = (release / deploy.RELEASE_MARKER).stat().st_mtime_ns
    cli_mtime = (release / "remote_runner/cli.py").stat().st_mtime_ns
    unit_mtime = (vm.unit_dir / UNIT).stat().st_mtime_ns
    writes = vm.sftp_writes()
    calls_before = len(vm.standin_calls())

    # The next `pulumi up` rebuilds the same bundle (at another path): Pulumi sees no change.
    again = bundle_for(project_copy, tmp_path, experiment, out="bundles-again")
    news = vm.props(again.path, again.sha256, experiment)
    assert again.sha256 == bundle.sha256 and again.path != bundle.path
    diff = provider.diff("id", olds, news)
    assert diff.changes is False and not diff.replaces

    # Even when asked to update anyway, nothing is uploaded, unpacked, rewritten or restarted.
    outs = provider.update("id", olds, news).outs
    assert outs is not None and outs["uploaded"] is False
    assert vm.sftp_writes() == writes
    assert (release / deploy.RELEASE_MARKER).stat().st_mtime_ns == marker_mtime
    assert (release / "remote_runner/cli.py").stat().st_mtime_ns == cli_mtime
    assert (vm.unit_dir / UNIT).stat().st_mtime_ns == unit_mtime
    new_calls = vm.standin_calls()[calls_before:]
    assert f"restart {UNIT}" not in new_calls and "daemon-reload" not in new_calls
    assert f"start {UNIT}" in new_calls


def test_redeploy_after_a_change_makes_a_new_release_and_restarts(
    vm: Vm, provider: deploy.DeployProvider, project_copy: Path, tmp_path: Path
) -> None:
    first_settings = settings(vm)
    first = bundle_for(project_copy, tmp_path, first_settings)
    olds = provider.create(vm.props(first.path, first.sha256, first_settings)).outs
    assert olds is not None
    calls_before = len(vm.standin_calls())

    changed = settings(vm, runs=2)
    second = bundle_for(project_copy, tmp_path, changed)
    news = vm.props(second.path, second.sha256, changed)
    diff = provider.diff("id", olds, news)
    assert diff.changes is True and diff.replaces == []

    outs = provider.update("id", olds, news).outs
    assert outs is not None and outs["uploaded"] is True
    assert os.readlink(vm.root / "current") == f"releases/{second.sha256}"
    assert (vm.root / "releases" / first.sha256 / deploy.RELEASE_MARKER).read_text() == first.sha256
    assert (vm.root / "current/experiment.json").read_bytes() == experiment_json(changed)
    assert len(vm.sftp_writes()) == 2
    assert f"restart {UNIT}" in vm.standin_calls()[calls_before:]


def test_delete_stops_the_unit_and_keeps_releases(
    vm: Vm, provider: deploy.DeployProvider, project_copy: Path, tmp_path: Path
) -> None:
    experiment = settings(vm, upload={"bucket": "results-bucket", "path": "llamaresttest-results"})
    bundle = bundle_for(project_copy, tmp_path, experiment)
    outs = provider.create(vm.props(bundle.path, bundle.sha256, experiment))
    assert outs.outs is not None
    calls_before = len(vm.standin_calls())

    provider.delete("id", outs.outs)

    calls = vm.standin_calls()[calls_before:]
    assert calls[:2] == [f"stop {UNIT}", f"disable {UNIT}"], calls
    assert vm.runner_pid() is None
    assert not (vm.unit_dir / UNIT).exists()
    assert not (vm.unit_dir / "multi-user.target.wants" / UNIT).exists()
    assert (vm.root / "releases" / bundle.sha256).is_dir()


REF = InstanceRef("research-project-1", "us-central1-a", "llamaresttest-dev")
GCP = {
    deploy.GCP_PROJECT: REF.project,
    deploy.ZONE: REF.zone,
    deploy.INSTANCE: REF.name,
    deploy.INSTANCE_ID: "42",
}


def on_gcp(standin: ComputeStandin, environ: dict[str, str] | None = None) -> deploy.DeployProvider:
    """A provider whose Compute API is the stand-in (no waits)."""
    client = ComputeClient(standin.url, sleep=lambda _s: None)
    return deploy.DeployProvider(dataclasses.replace(FAST, start_timeout=5), client, environ or {})


def test_delete_of_a_host_that_does_not_answer_fails_with_what_to_do_unless_overridden(
    vm: Vm,
    provider: deploy.DeployProvider,
    project_copy: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """ "Unreachable" is not "gone": without a Compute API answer, the delete fails and says what to do;
    the operator's explicit override (read from the provider's environment) lets it through."""
    experiment = settings(vm)
    bundle = bundle_for(project_copy, tmp_path, experiment)
    props = vm.props(bundle.path, bundle.sha256, experiment, port=free_port())  # nothing listens there
    caplog.set_level(logging.INFO, logger="stacks")
    started = time.monotonic()
    with pytest.raises(deploy.DeployError, match="the deployment is not deleted") as info:
        deploy.DeployProvider(FAST, environ={}).delete("id", props)
    assert time.monotonic() - started < 10
    assert deploy.DELETE_WITHOUT_UPLOAD_ENV + "=1" in str(info.value)
    assert "retrying" in caplog.text  # connection refused was treated as transient first

    override = {deploy.DELETE_WITHOUT_UPLOAD_ENV: "1"}
    deploy.DeployProvider(FAST, environ=override).delete("id", props)  # no exception
    assert "deleting without the final upload" in caplog.text


def test_delete_never_connects_to_an_empty_host(vm: Vm, project_copy: Path, tmp_path: Path) -> None:
    experiment = settings(vm)
    bundle = bundle_for(project_copy, tmp_path, experiment)
    for host in ("", "localhost"):
        with pytest.raises(deploy.DeployError, match="no usable address"):
            deploy.DeployProvider(FAST, environ={}).delete(
                "id", vm.props(bundle.path, bundle.sha256, experiment, host=host)
            )
    assert "Accepted publickey" not in vm.sshd_log.read_text()


def test_delete_of_a_vm_the_compute_api_says_is_gone_succeeds_without_ssh(
    vm: Vm, project_copy: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    experiment = settings(vm)
    bundle = bundle_for(project_copy, tmp_path, experiment)
    caplog.set_level(logging.INFO, logger="stacks")
    with compute_standin() as api:  # knows no instance: 404
        on_gcp(api).delete("id", vm.props(bundle.path, bundle.sha256, experiment, **GCP))
    assert api.requests == [("GET", REF.path)]
    assert "does not exist" in caplog.text
    assert "Accepted publickey" not in vm.sshd_log.read_text()


def test_delete_starts_a_stopped_vm_for_the_final_upload_and_uses_its_new_address(
    vm: Vm,
    provider: deploy.DeployProvider,
    project_copy: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stopped VM (spot preemption, maxRunHours) has no address; the state holds its old one (here
    an address nobody answers on). Delete starts it, says so, and reaches it at the address the
    Compute API reports after the start."""
    experiment = settings(vm)
    bundle = bundle_for(project_copy, tmp_path, experiment)
    outs = provider.create(vm.props(bundle.path, bundle.sha256, experiment, **GCP)).outs
    assert outs is not None
    caplog.set_level(logging.INFO, logger="stacks")
    with compute_standin() as api:
        api.add(REF, "TERMINATED")
        api.address_after_start[REF.path] = "127.0.0.1"
        stale = {**outs, deploy.HOST: "192.0.2.10"}  # TEST-NET-1: nothing would ever answer
        on_gcp(api).delete("id", stale)
    assert ("POST", REF.path + "/start") in api.requests
    assert "starting it for the final upload" in caplog.text
    assert "RUNNING at 127.0.0.1" in caplog.text
    assert f"stop {UNIT}" in vm.standin_calls()
    assert not (vm.unit_dir / UNIT).exists()


def test_delete_of_a_stopped_vm_that_cannot_start_fails_with_the_command_to_run(
    vm: Vm, project_copy: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    experiment = settings(vm)
    bundle = bundle_for(project_copy, tmp_path, experiment)
    props = vm.props(bundle.path, bundle.sha256, experiment, **GCP)
    caplog.set_level(logging.INFO, logger="stacks")
    with compute_standin() as api:
        api.add(REF, "TERMINATED").start_error = 503
        with pytest.raises(deploy.DeployError, match="not deleted") as info:
            on_gcp(api).delete("id", props)
        assert REF.gcloud("start") in str(info.value)
        assert "ZONE_RESOURCE_POOL_EXHAUSTED" in str(info.value)
        # With the override the stopped VM is not started at all.
        requests = len(api.requests)
        on_gcp(api, {deploy.DELETE_WITHOUT_UPLOAD_ENV: "1"}).delete("id", props)
        assert api.requests[requests:] == [("GET", REF.path)]
    assert "Accepted publickey" not in vm.sshd_log.read_text()


def test_delete_of_a_running_vm_whose_ssh_is_closed_names_the_firewall(
    vm: Vm, project_copy: Path, tmp_path: Path
) -> None:
    experiment = settings(vm)
    bundle = bundle_for(project_copy, tmp_path, experiment)
    props = vm.props(bundle.path, bundle.sha256, experiment, port=free_port(), **GCP)
    with compute_standin() as api:
        api.add(REF, "RUNNING", "127.0.0.1")
        with pytest.raises(deploy.DeployError, match="sshSourceRanges") as info:
            on_gcp(api).delete("id", props)
    assert "is RUNNING, so SSH is blocked" in str(info.value)


def test_wrong_host_key_is_refused_at_once_without_grace_and_on_delete(
    vm: Vm,
    provider: deploy.DeployProvider,
    project_copy: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A mismatch is never retried as transient. A create/update's first contact has a grace for a
    booting VM (the next tests); with that grace at 0, and on delete (which has none), it fails at once."""
    experiment = settings(vm)
    bundle = bundle_for(project_copy, tmp_path, experiment)
    props = vm.props(
        bundle.path, bundle.sha256, experiment, host_public_key=vm.keys["other_host"].public_openssh
    )
    caplog.set_level(logging.INFO, logger="stacks")
    no_grace = deploy.DeployProvider(dataclasses.replace(FAST, host_key_grace=0))
    with pytest.raises(HostKeyMismatch, match="host key mismatch") as info:
        no_grace.create(props)
    assert "SHA256:" in str(info.value)
    assert "retrying" not in caplog.text
    assert vm.sshd_log.read_text().count("Accepted publickey") == 0
    assert not (vm.root / "releases").exists()
    # and `pulumi destroy` neither pretends that host is gone nor waits: `provider` has the default
    # 120 s first-contact grace, which delete does not use.
    assert provider.timing.host_key_grace == deploy.DEFAULT_HOST_KEY_GRACE > 0
    started = time.monotonic()
    with pytest.raises(deploy.DeployError, match="host key mismatch"):
        provider.delete("id", props)
    assert time.monotonic() - started < 10
    assert "first contact" not in caplog.text


def fake_time(
    timing: deploy.Timing, on_sleep: Callable[[float], None] | None = None
) -> tuple[deploy.Timing, list[float]]:
    """``timing`` with a clock that only moves when the provider sleeps (``on_sleep(now)`` after each)."""
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds
        if on_sleep is not None:
            on_sleep(clock[0])

    return dataclasses.replace(timing, sleep=sleep, clock=lambda: clock[0]), clock


def server_host_key(port: int) -> str | None:
    """The host key the sshd on ``port`` offers now (base64), or None if it does not answer yet."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            transport = paramiko.Transport(sock)
            try:
                transport.start_client(timeout=5)
                return transport.get_remote_server_key().get_base64()
            finally:
                transport.close()
    except (OSError, paramiko.SSHException):
        return None


def switch_host_key(vm: Vm, key: KeyPair) -> None:
    """What the startup script does on a new VM: the stack's host key replaces the image's, sshd reloads."""
    (vm.base / "ssh_host_ed25519_key").write_text(key.private_openssh)
    os.kill(int((vm.base / "sshd.pid").read_text()), signal.SIGHUP)  # sshd re-executes, rereads its keys
    expected = key.public_openssh.split()[1]
    assert wait_for(lambda: server_host_key(vm.port) == expected, timeout=15), "sshd kept its old key"


def test_first_contact_waits_while_a_new_vm_still_offers_its_images_host_key(
    tmp_path: Path,
    keys: dict[str, KeyPair],
    venv_template: Path,
    project_copy: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    booting = {**keys, "host": keys["other_host"]}  # sshd starts with a key that is not the pinned one
    with running_vm(tmp_path, booting, venv_template) as vm:
        log_before_switch: list[str] = []

        def startup_script_installs_the_key(now: float) -> None:
            if now >= 30 and not log_before_switch:
                log_before_switch.append(vm.sshd_log.read_text())
                switch_host_key(vm, keys["host"])

        timing, clock = fake_time(
            dataclasses.replace(FAST, host_key_grace=120, host_key_retry_seconds=10),
            startup_script_installs_the_key,
        )
        experiment = settings(vm)
        bundle = bundle_for(project_copy, tmp_path, experiment)
        props = vm.props(bundle.path, bundle.sha256, experiment, host_public_key=keys["host"].public_openssh)
        caplog.set_level(logging.INFO, logger="stacks")

        result = deploy.DeployProvider(timing).create(props)

        assert result.outs is not None and result.outs["uploaded"] is True
        assert os.readlink(vm.root / "current") == f"releases/{bundle.sha256}"
        assert clock[0] == 30
        mismatches = [r.getMessage() for r in caplog.records if "on first contact" in r.getMessage()]
        assert len(mismatches) == 3, mismatches  # at 0, 10 and 20 s
        assert "no credentials were sent" in mismatches[0] and "(20s of 120s)" in mismatches[-1]
        # While it offered the wrong key, sshd saw no authentication at all: paramiko stopped at the key.
        (before,) = log_before_switch
        assert "Connection closed by 127.0.0.1" in before or "Disconnected from 127.0.0.1" in before, before
        for auth in ("Accepted publickey", "Failed publickey", "authenticating user", "Postponed"):
            assert auth not in before
        assert "Accepted publickey" in vm.sshd_log.read_text()


def test_a_host_key_that_stays_wrong_fails_after_the_first_contact_grace(
    vm: Vm, project_copy: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    timing, clock = fake_time(dataclasses.replace(FAST, host_key_grace=120, host_key_retry_seconds=10))
    experiment = settings(vm)
    bundle = bundle_for(project_copy, tmp_path, experiment)
    props = vm.props(
        bundle.path, bundle.sha256, experiment, host_public_key=vm.keys["other_host"].public_openssh
    )
    caplog.set_level(logging.INFO, logger="stacks")
    with pytest.raises(HostKeyMismatch, match="after the 120s first-contact grace") as info:
        deploy.DeployProvider(timing).create(props)
    message = str(info.value)
    assert message.startswith("host key mismatch for root@127.0.0.1")
    assert "SHA256:" in message and "refusing to connect" in message
    assert clock[0] == 120
    assert caplog.text.count("on first contact") == 12  # every 10 s from 0 to 110 s
    assert vm.sshd_log.read_text().count("Accepted publickey") == 0
    assert not (vm.root / "releases").exists()


def test_authentication_failure_is_refused_at_once(
    vm: Vm,
    provider: deploy.DeployProvider,
    project_copy: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    experiment = settings(vm)
    bundle = bundle_for(project_copy, tmp_path, experiment)
    props = vm.props(
        bundle.path, bundle.sha256, experiment, client_private_key=vm.keys["other_client"].private_openssh
    )
    caplog.set_level(logging.INFO, logger="stacks")
    with pytest.raises(AuthenticationFailed, match="authentication failed"):
        provider.create(props)
    assert "retrying" not in caplog.text
    assert vm.sshd_log.read_text().count("Connection closed by authenticating user") <= 1


def test_failed_startup_marker_is_reported_with_the_log_tail(
    vm: Vm, provider: deploy.DeployProvider, project_copy: Path, tmp_path: Path
) -> None:
    (vm.state_dir / "startup.ready").unlink()
    (vm.state_dir / "startup.failed").write_text("model download failed: checksum mismatch for ex.gguf\n")
    vm.startup_log.write_text("".join(f"startup line {i}\n" for i in range(1, 101)))
    experiment = settings(vm)
    bundle = bundle_for(project_copy, tmp_path, experiment)
    with pytest.raises(deploy.DeployError) as info:
        provider.create(vm.props(bundle.path, bundle.sha256, experiment))
    message = str(info.value)
    assert "startup script failed" in message
    assert "checksum mismatch for ex.gguf" in message
    assert "startup line 100" in message and "startup line 61" in message
    assert "startup line 60\n" not in message  # a tail, not the whole log
    assert not (vm.root / "releases").exists()


def test_startup_wait_is_bounded(
    vm: Vm, project_copy: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (vm.state_dir / "startup.ready").unlink()
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds  # time passes without waiting

    timing = deploy.Timing(
        connect=deploy.Timing().connect.__class__(timeout_seconds=10, max_attempts=2, waits=False),
        poll_seconds=30,
        sleep=sleep,
        clock=lambda: clock[0],
    )
    experiment = settings(vm)
    bundle = bundle_for(project_copy, tmp_path, experiment)
    caplog.set_level(logging.INFO, logger="stacks")
    with pytest.raises(deploy.DeployError, match="did not finish within 100s"):
        deploy.DeployProvider(timing).create(
            vm.props(bundle.path, bundle.sha256, experiment, startup_timeout_seconds=100)
        )
    assert caplog.text.count("waiting for the VM's startup script") == 4  # at 0, 30, 60, 90 s


def test_bundle_must_match_its_hash(
    vm: Vm, provider: deploy.DeployProvider, project_copy: Path, tmp_path: Path
) -> None:
    experiment = settings(vm)
    bundle = bundle_for(project_copy, tmp_path, experiment)
    bundle.path.write_bytes(bundle.path.read_bytes() + b"tampered")
    with pytest.raises(deploy.DeployError, match="refusing to deploy"):
        provider.create(vm.props(bundle.path, bundle.sha256, experiment))
    assert vm.sftp_writes() == []


def test_private_key_never_reaches_logs_or_errors(
    vm: Vm,
    provider: deploy.DeployProvider,
    project_copy: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    experiment = settings(vm)
    bundle = bundle_for(project_copy, tmp_path, experiment)
    caplog.set_level(logging.DEBUG)
    props = vm.props(bundle.path, bundle.sha256, experiment)
    outs = provider.create(props).outs
    assert outs is not None
    provider.delete("id", outs)
    broken = vm.props(
        bundle.path,
        bundle.sha256,
        experiment,
        client_private_key="-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAsecretish\n",
    )
    failures = provider.check({}, broken).failures
    assert [f.property for f in failures] == [deploy.PRIVATE_KEY]
    key_body = "".join(vm.keys["client"].private_openssh.strip().splitlines()[1:-1])
    texts = [caplog.text, " ".join(f.reason for f in failures), repr(deploy.target_of(props))]
    for text in texts:
        assert key_body[:40] not in text.replace("\n", "")
        assert "AAAAsecretish" not in text


@pytest.fixture
def results_bucket() -> Iterator[str]:
    """The real GCS emulator (gcp-storage-emulator), in memory on a free loopback port."""
    with gcs_emulator("results-bucket") as url:
        yield url


def test_delete_runs_the_final_upload_of_the_batch(
    tmp_path: Path,
    keys: dict,
    venv_template: Path,
    provider: deploy.DeployProvider,
    project_copy: Path,
    results_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {"STORAGE_EMULATOR_HOST": results_bucket, "GOOGLE_CLOUD_PROJECT": "test-project"}
    with running_vm(tmp_path, keys, venv_template, env) as vm:
        experiment = settings(vm, upload={"bucket": "results-bucket", "path": "llamaresttest-results"})
        bundle = bundle_for(project_copy, tmp_path, experiment)
        outs = provider.create(vm.props(bundle.path, bundle.sha256, experiment)).outs
        assert outs is not None
        batch = vm.base / "results" / experiment["batch"]
        (batch / "demo" / "schemathesis" / "run-1").mkdir(parents=True)
        (batch / "plan.json").write_text('{"runs": 1}')
        (batch / "demo" / "schemathesis" / "run-1" / "summary.json").write_text('{"requests": 3}')

        provider.delete("id", outs)

        assert f"stop {UNIT}" in vm.standin_calls()
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", results_bucket)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test-project")
    names = {b.name for b in storage.Client().list_blobs("results-bucket", prefix="llamaresttest-results/")}
    prefix = f"llamaresttest-results/{experiment['batch']}"
    assert names == {f"{prefix}/plan.json", f"{prefix}/demo/schemathesis/run-1/summary.json"}


def test_delete_without_upload_results_uploads_nothing(
    vm: Vm,
    provider: deploy.DeployProvider,
    project_copy: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    experiment = settings(vm, upload={"bucket": "results-bucket", "path": "p"})
    bundle = bundle_for(project_copy, tmp_path, experiment)
    outs = provider.create(vm.props(bundle.path, bundle.sha256, experiment, upload_results=False)).outs
    assert outs is not None
    (vm.base / "results" / experiment["batch"]).mkdir(parents=True)
    caplog.set_level(logging.INFO, logger="stacks")
    provider.delete("id", outs)
    assert "final upload" not in caplog.text
    assert "runner stopped" in caplog.text
