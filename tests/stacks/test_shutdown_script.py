"""A cluster head's shutdown script: its full rendered text, bash and shellcheck, and what it does,
run for real by bash with stand-ins only for systemd's job list and the runner's Python."""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

import pytest

from remote_runner.common.process import ProcessResult, execute
from stacks.startup import SHUTDOWN_TEMPLATE_PATH, render_shutdown_script

GOLDEN = Path(__file__).parent / "golden" / "shutdown.sh"


def test_rendered_script_matches_golden_file() -> None:
    text = render_shutdown_script()
    if os.environ.get("LLAMARESTTEST_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text)
        pytest.fail(f"rewrote {GOLDEN}; review the diff, then run again without LLAMARESTTEST_UPDATE_GOLDEN")
    assert text == GOLDEN.read_text(), (
        "the rendered shutdown script changed; if on purpose, rerun with LLAMARESTTEST_UPDATE_GOLDEN=1"
    )


def test_rendered_script_parses_and_passes_shellcheck(tmp_path: Path) -> None:
    script = tmp_path / "shutdown.sh"
    script.write_text(render_shutdown_script())
    assert execute(["bash", "-n", str(script)], timeout=30).ok
    res = execute(["shellcheck", "--shell=bash", "--severity=style", str(script)], timeout=60)
    assert res.returncode != 127, "shellcheck is not installed (scripts/bootstrap.sh installs it)"
    assert res.ok, res.output


def test_the_command_is_the_runners_release_workers_with_the_deployed_settings() -> None:
    lines = render_shutdown_script().splitlines()
    assert "REMOTE_ROOT=/opt/llamaresttest" in lines
    assert "RUNNER_PYTHON=/opt/llamaresttest/venv/bin/python" in lines
    assert "RUNNER_CONFIG=/opt/llamaresttest/current/experiment.json" in lines
    assert "RELEASE_TIMEOUT=80" in lines
    text = "\n".join(lines)
    assert (
        '(cd "$REMOTE_ROOT/current" &&\n    timeout -k 5 "$RELEASE_TIMEOUT" "$RUNNER_PYTHON" '
        '-m remote_runner release-workers --config "$RUNNER_CONFIG")'
    ) in text
    assert "set -x" not in text
    with pytest.raises(ValueError, match="absolute path"):
        render_shutdown_script("relative/root")
    with pytest.raises(ValueError, match=r"unknown placeholders \['X'\]"):
        render_shutdown_script(template=SHUTDOWN_TEMPLATE_PATH.read_text() + "@X@\n")


def _run(tmp_path: Path, jobs: str, runner: str, timeout_s: int = 80) -> tuple[ProcessResult, Path]:
    """Source the rendered script with the remote root in ``tmp_path``, a ``systemctl`` that lists
    ``jobs`` and a runner Python that is the shell script ``runner``; then run main."""
    root = tmp_path / "opt"
    (root / "current").mkdir(parents=True)
    (root / "current" / "experiment.json").write_text("{}")
    (root / "venv" / "bin").mkdir(parents=True)
    python = root / "venv" / "bin" / "python"
    python.write_text(f"#!/bin/bash\n{runner}\n")
    python.chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    systemctl = bin_dir / "systemctl"
    systemctl.write_text(f"#!/bin/bash\nprintf '%s' {shlex.quote(jobs)}\n")
    systemctl.chmod(0o755)
    script = tmp_path / "shutdown.sh"
    script.write_text(render_shutdown_script(str(root)))
    log = tmp_path / "startup.log"
    probe = tmp_path / "probe.sh"
    probe.write_text(
        f"source {shlex.quote(str(script))}\nLOG_FILE={shlex.quote(str(log))}\n"
        f"RELEASE_TIMEOUT={timeout_s}\nmain\n"
    )
    result = execute(
        ["bash", str(probe)], timeout=120, cwd=tmp_path, env={"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    )
    time.sleep(0.2)  # tee writes the log asynchronously
    return result, log


RECORD = 'printf "%s|%s\\n" "$PWD" "$*" >> "$(dirname "$0")/../../calls"'
POWEROFF_JOBS = "1 poweroff.target start waiting\n2 shutdown.target start waiting\n"
REBOOT_JOBS = "7 reboot.target start waiting\n8 shutdown.target start waiting\n"


def test_a_stop_releases_the_workers_through_the_runner(tmp_path: Path) -> None:
    result, log = _run(tmp_path, POWEROFF_JOBS, RECORD)
    assert result.ok, result.output
    root = tmp_path / "opt"
    calls = (root / "calls").read_text().splitlines()
    assert calls == [
        f"{root}/current|-m remote_runner release-workers --config {root}/current/experiment.json"
    ]
    assert "resizing the worker group to 0" in log.read_text()
    assert "the worker group is released" in log.read_text()


def test_a_reboot_keeps_the_workers(tmp_path: Path) -> None:
    result, log = _run(tmp_path, REBOOT_JOBS, RECORD)
    assert result.ok, result.output
    assert not (tmp_path / "opt" / "calls").exists()
    assert "the head is rebooting: the workers stay" in log.read_text()


def test_a_release_that_hangs_is_cut_off_and_said_so(tmp_path: Path) -> None:
    started = time.monotonic()
    result, log = _run(tmp_path, POWEROFF_JOBS, "sleep 30", timeout_s=1)
    assert time.monotonic() - started < 20
    assert result.returncode == 124, result.output
    assert "did not finish in 1s: the workers may still run" in log.read_text()


def test_a_failed_release_is_reported_with_its_status(tmp_path: Path) -> None:
    result, log = _run(tmp_path, "", "exit 5")
    assert result.returncode == 5, result.output
    assert "release-workers failed with status 5" in log.read_text()


def test_a_head_without_a_deployed_runner_has_nothing_to_release(tmp_path: Path) -> None:
    root = tmp_path / "opt"
    result, log = _run(tmp_path, POWEROFF_JOBS, RECORD)
    assert result.ok
    (root / "current" / "experiment.json").unlink()
    (root / "calls").unlink()
    probe = (tmp_path / "probe.sh").read_text()
    again = execute(
        ["bash", "-c", probe],
        timeout=60,
        env={"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"},
    )
    time.sleep(0.2)
    assert again.ok, again.output
    assert not (root / "calls").exists()
    assert "no runner deployed" in log.read_text()
