"""The unit's text, checked by systemd's own verifier, and the service-manager commands deploy sends."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

import pytest

from remote_runner.common.process import execute
from stacks import systemd


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key}", []).append(value)
    return found


def test_unit_runs_the_runner_from_the_current_release_after_docker() -> None:
    unit = directives(systemd.render_unit())
    assert unit["Unit.Requires"] == ["docker.service"]
    assert "docker.service" in unit["Unit.After"][0].split()
    assert unit["Service.ExecStart"] == [
        "/opt/llamaresttest/venv/bin/python -m remote_runner run"
        " --config /opt/llamaresttest/current/experiment.json"
    ]
    assert shlex.split(unit["Service.ExecStart"][0]) == systemd.runner_command()
    # Before the runner (and so before any experiment container): the metadata server is blocked.
    assert unit["Service.ExecStartPre"] == [
        "/opt/llamaresttest/venv/bin/python -m remote_runner.experiment.metadata_guard"
    ]
    assert unit["Service.WorkingDirectory"] == ["/opt/llamaresttest/current"]
    assert unit["Service.Restart"] == ["on-failure"]
    assert unit["Service.KillSignal"] == ["SIGTERM"]
    assert int(unit["Service.TimeoutStopSec"][0]) >= 40
    assert unit["Install.WantedBy"] == ["multi-user.target"]
    assert set(unit["Service.Environment"][0].split()) == {"PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"}


def test_unit_follows_the_remote_root_and_refuses_a_short_stop_timeout() -> None:
    unit = directives(systemd.render_unit("/srv/llrt", timeout_stop_sec=45))
    assert unit["Service.ExecStart"] == [shlex.join(systemd.runner_command("/srv/llrt"))]
    assert unit["Service.WorkingDirectory"] == ["/srv/llrt/current"]
    assert unit["Service.TimeoutStopSec"] == ["45"]
    with pytest.raises(ValueError, match="at least 40"):
        systemd.render_unit(timeout_stop_sec=10)
    with pytest.raises(ValueError, match="absolute path"):
        systemd.render_unit("relative/root")


def verify(tmp_path: Path, text_of: object) -> str:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is part of Debian's systemd package, present on every test machine"
    root = tmp_path / "opt-llamaresttest"
    (root / "venv/bin").mkdir(parents=True)
    (root / "venv/bin/python").symlink_to(sys.executable)  # verify checks that ExecStart is executable
    (root / "current").mkdir()
    unit = tmp_path / systemd.UNIT_NAME
    unit.write_text(text_of(str(root)))  # type: ignore[operator]
    res = execute([analyze, "verify", str(unit)], timeout=60)
    return "" if res.ok and not res.output.strip() else f"rc={res.returncode}: {res.output}"


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    assert verify(tmp_path, systemd.render_unit) == ""


def test_on_a_cluster_head_the_driver_authenticates_to_ray_with_the_token_file(tmp_path: Path) -> None:
    """The same two variables as every node's Ray unit (stacks/ray_nodes.py): RAY_AUTH_MODE set
    explicitly (a token file alone does not turn authentication on everywhere) and the root-only file
    the startup script wrote; the one VM's unit has neither."""
    cluster = directives(systemd.render_unit(cluster=True))
    assert cluster["Service.Environment"] == [
        "PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1",
        "RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=/etc/llamaresttest/ray-token",
    ]
    one_vm = systemd.render_unit()
    assert "RAY_AUTH" not in one_vm
    assert verify(tmp_path, lambda root: systemd.render_unit(root, cluster=True)) == ""


def test_systemd_analyze_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: the same verifier rejects the unit with one mistake put in."""
    problems = verify(tmp_path, lambda root: systemd.render_unit(root).replace("=on-failure", "=sometimes"))
    assert "restart specifier" in problems


def test_service_manager_commands() -> None:
    name = "llamaresttest-parallel.service"
    assert systemd.enable() == ["systemctl", "enable", name]
    assert systemd.restart() == ["systemctl", "restart", name]
    assert systemd.try_restart() == ["systemctl", "try-restart", name]
    assert systemd.stop() == ["systemctl", "stop", name]
    assert systemd.daemon_reload() == ["systemctl", "daemon-reload"]
    assert systemd.unit_path() == f"/etc/systemd/system/{name}"


def test_unit_exit_codes_match_the_runners() -> None:
    """remote_runner.common.exit_codes: 143 stopped cleanly and 3 done with failed runs are not failures;
    2 bad settings, 4 batch held by another runner, 6 disk full, 7 broken APIs and 8 no cluster worker
    (its group released) are not worth a restart; 9 (the group did not read 0) is: it tries again."""
    from remote_runner.common import exit_codes

    unit = directives(systemd.render_unit())
    assert unit["Service.SuccessExitStatus"] == [f"{exit_codes.STOPPED} {exit_codes.DONE_WITH_FAILURES}"]
    assert unit["Service.RestartPreventExitStatus"] == [
        f"{exit_codes.BAD_INPUT} {exit_codes.BATCH_BUSY} {exit_codes.DISK_FULL} "
        f"{exit_codes.PREFLIGHT_FAILED} {exit_codes.NO_WORKERS} {exit_codes.CAP_REACHED}"
    ]
    assert str(exit_codes.WORKERS_NOT_RELEASED) not in unit["Service.RestartPreventExitStatus"][0].split()
    assert unit["Service.Restart"] == ["on-failure"]
