"""The local runner container's entrypoint maps the runner's exit codes the way the VM's unit does,
because Docker's restart policy "on-failure" restarts on every non-zero code (run for real with sh)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from remote_runner.common import exit_codes

ENTRYPOINT = Path(__file__).resolve().parents[2] / "stacks" / "runner-image" / "entrypoint.sh"


def run(command: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LLAMARESTTEST_EXPERIMENT_JSON": '{"runs": 1}'}
    # the entrypoint writes below /opt/llamaresttest/current; point it at a folder of the test
    script = ENTRYPOINT.read_text().replace("/opt/llamaresttest/current", str(tmp_path / "current"))
    (tmp_path / "entrypoint.sh").write_text(script)
    return subprocess.run(
        ["sh", str(tmp_path / "entrypoint.sh"), "sh", "-c", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("code", "container_exit"),
    [
        (exit_codes.DONE, 0),
        (exit_codes.DONE_WITH_FAILURES, 0),
        (exit_codes.STOPPED, 0),
        (exit_codes.BAD_INPUT, 0),
        (exit_codes.BATCH_BUSY, 0),
        (exit_codes.DISK_FULL, 0),
        (exit_codes.PREFLIGHT_FAILED, 0),
        (exit_codes.BUILD_FAILED, 1),
        (exit_codes.ENGINE_UNAVAILABLE, 5),
    ],
)
def test_exit_codes_are_mapped_like_the_unit(code: int, container_exit: int, tmp_path: Path) -> None:
    res = run(f"exit {code}", tmp_path)
    assert res.returncode == container_exit, res.stderr
    assert (tmp_path / "current" / "experiment.json").read_text() == '{"runs": 1}\n'
    if code not in (0, 1, 5):
        assert f"runner exited with {code}" in res.stderr and "not restarted" in res.stderr


def test_sigterm_reaches_the_runner(tmp_path: Path) -> None:
    script = ENTRYPOINT.read_text().replace("/opt/llamaresttest/current", str(tmp_path / "current"))
    (tmp_path / "entrypoint.sh").write_text(script)
    marker = tmp_path / "got-term"
    runner = f"trap 'touch {marker}; exit 143' TERM; while :; do sleep 0.1; done"
    env = {**os.environ, "LLAMARESTTEST_EXPERIMENT_JSON": "{}"}
    proc = subprocess.Popen(["sh", str(tmp_path / "entrypoint.sh"), "sh", "-c", runner], env=env)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0  # 143: stopped cleanly, which is success
    assert marker.exists()
