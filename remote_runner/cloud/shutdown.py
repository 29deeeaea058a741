"""``shutdownWhenDone``: power the VM off once the batch is finished and its results are safe.

:func:`should_power_off` is the pure decision (tested on its own); :func:`power_off` is the only side
effect, ``systemctl poweroff`` through :func:`remote_runner.common.process.execute` (injectable, so tests
never power anything off).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from remote_runner.common.process import ProcessResult, execute

POWER_OFF_COMMAND = ("systemctl", "poweroff")


@dataclass(frozen=True)
class Decision:
    power_off: bool
    reason: str

    def __bool__(self) -> bool:
        return self.power_off


def should_power_off(
    *,
    shutdown_when_done: bool,
    runs_total: int,
    runs_finished: int,
    upload_configured: bool,
    upload_pending: int,
    workers_released: bool | None = None,
) -> Decision:
    """Power off only when asked to, when every run of the batch reached a final state (succeeded or
    failed for good), and, when an upload is configured, when nothing is left to upload: a VM that
    goes off with results only on its disk would lose them if it is then deleted. A cluster head
    (``workers_released`` not None) powers off only once its worker group reads 0: off, nobody would
    be left to say that workers still bill."""
    if not shutdown_when_done:
        return Decision(False, "shutdownWhenDone is off")
    if workers_released is False:
        return Decision(False, "the worker group does not read 0 yet: the head stays up to say so")
    if runs_finished < runs_total:
        return Decision(False, f"{runs_total - runs_finished} of {runs_total} runs not finished")
    if upload_configured and upload_pending > 0:
        return Decision(False, f"{upload_pending} files not uploaded yet")
    if not upload_configured:
        return Decision(True, "batch finished (no upload configured: results stay on the VM's disk)")
    return Decision(True, "batch finished and uploaded")


def power_off(
    run: Callable[..., ProcessResult] = execute, command: Sequence[str] = POWER_OFF_COMMAND
) -> ProcessResult:
    """Ask systemd to power the machine off; returns the command's result (it fails when not root or
    not under systemd, which the caller logs)."""
    return run(list(command), timeout=60)
