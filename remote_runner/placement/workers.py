"""Cluster mode on a stack: the worker group follows the work, on every exit path (docs/cluster.md,
"The end of a batch").

- **Waiting for workers** (:func:`wait_for_workers`): a batch whose workers are still booting (or
  never come: a spot stockout, a quota shortfall) waits, and says so once a minute in the log and in
  ``workers.json`` ("N of M workers joined, waiting X min"), where ``status`` shows it. After
  ``worker_wait_seconds`` it gives up: the group is released and the runner exits
  :data:`~remote_runner.common.exit_codes.NO_WORKERS` (the head powers off with ``shutdown_when_done``).
- **Releasing** (:func:`release_workers`): as soon as no run is pending or running (before the
  report and the final upload), and whenever the batch cannot go on (preflight failed, no node fits),
  the group is resized to 0 and read back (:func:`remote_runner.cloud.mig.release`: retried with backoff).
  The head powers off only once the group reads 0; otherwise it stays up and says so here, in the log
  and in the exit code (:data:`~remote_runner.common.exit_codes.WORKERS_NOT_RELEASED`).
- The head's GCE shutdown script runs ``python -m remote_runner release-workers`` on any stop that is
  not a reboot (``maxRunHours``, a manual stop, a crash that takes the machine down), so no worker
  outlives the head.

Without a ``worker_group`` (a workstation's or a university's Ray cluster) there is nothing to resize:
every function here is then a no-op that says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remote_runner.common import clock, jsonfile

log = logging.getLogger("remote_runner.placement.workers")

STATUS_FILE = "workers.json"
#: the group's size as this runner last asked for or read it (what the spend cap counts)
_KNOWN_SIZE = {"value": 0}


def known_size() -> int:
    return _KNOWN_SIZE["value"]


#: seconds between two "waiting for workers" lines
WAIT_REPORT_SECONDS = 60.0
#: how long the driver tries to release the group before it says it could not
RELEASE_BUDGET_SECONDS = 600.0


def write_status(batch_dir: Path | None, **doc: Any) -> None:
    """``workers.json`` in the batch folder: what the worker group is doing, for ``status``."""
    if batch_dir is None:
        return
    doc["updated"] = clock.utc_iso()
    jsonfile.write(batch_dir / STATUS_FILE, doc)


def read_status(batch_dir: Path) -> dict[str, Any] | None:
    return jsonfile.read(batch_dir / STATUS_FILE)


def status_line(doc: dict[str, Any]) -> str:
    return f"workers: {doc.get('message', '?')} (as of {doc.get('updated', '?')})"


def waiting_message(joined: int, expected: int | None, waited: float, give_up: float) -> str:
    """ "N of M workers joined, waiting X min" (pure)."""
    of = f" of {expected}" if expected is not None else ""
    left = max(0.0, give_up - waited)
    return (
        f"{joined}{of} workers joined, waiting {waited / 60:.0f} min "
        f"(gives up in {left / 60:.0f} min: worker_wait_seconds)"
    )


@dataclass(frozen=True)
class Waited:
    joined: int
    gave_up: bool
    message: str


def wait_for_workers(
    joined: Callable[[], int],
    *,
    give_up_seconds: float,
    stop: Any,
    expected: Callable[[], int | None] = lambda: None,
    batch_dir: Path | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    poll_seconds: float = 2.0,
) -> Waited:
    """Waits until ``joined()`` (alive nodes with an experiment slot) is at least 1, ``stop`` is set,
    or ``give_up_seconds`` pass; reports once a minute. Returns what it saw."""
    started = monotonic()
    last_report = -1e9
    while True:
        count = joined()
        waited = monotonic() - started
        if count > 0:
            if waited > poll_seconds:
                message = f"{count} workers joined after {waited / 60:.1f} min"
                log.info("%s", message)
                write_status(batch_dir, state="joined", joined=count, message=message)
            return Waited(count, False, "")
        if stop.is_set():
            return Waited(0, False, "stopped while waiting for workers")
        if waited >= give_up_seconds:
            message = (
                f"no worker joined within worker_wait_seconds ({give_up_seconds:g} s): giving up "
                "(is the group's zone out of spot capacity or the project out of quota? see docs/cluster.md)"
            )
            log.error("%s", message)
            return Waited(0, True, message)
        if monotonic() - last_report >= WAIT_REPORT_SECONDS:
            try:
                total = expected()
            except Exception as exc:  # the size is only for the message
                log.warning("cannot read the worker group's size: %s", exc)
                total = None
            message = waiting_message(count, total, waited, give_up_seconds)
            log.info("%s", message)
            write_status(batch_dir, state="waiting", joined=count, expected=total, message=message)
            last_report = monotonic()
        sleep(poll_seconds)


def group_size(settings: Any) -> int | None:
    """The group's ``targetSize`` (None without a worker group)."""
    group = settings.worker_group
    if group is None:
        return None
    from remote_runner.cloud import mig

    return mig.target_size(group.project, group.zone, group.name, token_provider=mig.metadata_token())


def release_workers(
    settings: Any,
    why: str,
    *,
    batch_dir: Path | None = None,
    budget_seconds: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> bool | None:
    """Resizes the settings' worker group to 0 and reads it back (:func:`remote_runner.cloud.mig.release`).
    True: the group reads 0; False: it does not (logged as an error, in ``workers.json``); None: no
    worker group is configured (nothing to do)."""
    group = settings.worker_group
    if group is None:
        return None
    from remote_runner.cloud import mig

    log.info("releasing worker group %s (%s)", group.name, why)
    try:
        token = mig.metadata_token()
        result = mig.release(
            group.project,
            group.zone,
            group.name,
            token_provider=token,
            budget_seconds=getattr(settings, "worker_release_seconds", RELEASE_BUDGET_SECONDS)
            if budget_seconds is None
            else budget_seconds,
            sleep=sleep,
            on_try=lambda line: log.warning("releasing worker group %s: %s", group.name, line),
        )
    except Exception as exc:  # a bad URL or the like: reported as a failed release
        result = mig.Release(False, None, 0, f"{type(exc).__name__}: {exc}")
    if result.size is not None:
        _KNOWN_SIZE["value"] = result.size
    if result.at_zero:
        message = f"group {group.name} released to 0 ({why})"
        log.info("worker %s", message)
        write_status(batch_dir, state="released", size=0, message=message)
        return True
    message = (
        f"group {group.name} NOT released ({why}): {result.message}; the workers may still bill: resize "
        f"it by hand (gcloud compute instance-groups managed resize {group.name} --size 0 "
        f"--zone {group.zone} --project {group.project})"
    )
    log.error("worker %s", message)
    write_status(batch_dir, state="release failed", size=result.size, message=message)
    return False


def wanted_workers(group: Any, experiments: int) -> int:
    """How many workers a batch with ``experiments`` still to run can use at once (pure): enough
    slots for all of them, at most the stack's ``workers``."""
    if experiments <= 0:
        return 0
    return min(int(group.size), -(-experiments // max(1, int(group.slots))))


def request_workers(
    settings: Any,
    experiments: int,
    *,
    batch_dir: Path | None = None,
    budget_seconds: float = 120.0,
    sleep: Callable[[float], None] = time.sleep,
) -> int | None:
    """Sizes the worker group (created at 0 by the stack) to what the batch can use, once the images
    are pushed: no worker bills while the head builds. Returns the size asked for, or None when there
    is no group to size (an existing Ray cluster, or a group the stack sized itself). Failures are
    retried with backoff for ``budget_seconds``, then logged: the batch then waits for workers as it
    would for a stockout (``worker_wait_seconds``)."""
    group = settings.worker_group
    if group is None or group.size <= 0:
        return None
    from remote_runner.cloud import mig

    wanted = wanted_workers(group, experiments)
    if wanted == 0:
        return 0
    delay, waited = 2.0, 0.0
    while True:
        try:
            current = mig.target_size(
                group.project, group.zone, group.name, token_provider=mig.metadata_token()
            )
            _KNOWN_SIZE["value"] = current
            if current >= wanted:  # a resumed batch whose group is already up: never shrink it here
                log.info("worker group %s is at %d (the batch can use %d)", group.name, current, wanted)
                return current
            mig.resize(group.project, group.zone, group.name, wanted, token_provider=mig.metadata_token())
            _KNOWN_SIZE["value"] = wanted
            message = f"group {group.name} asked for {wanted} workers (of at most {group.size})"
            log.info("worker %s", message)
            write_status(batch_dir, state="requested", size=wanted, message=message)
            return wanted
        except Exception as exc:  # MigError and a bad URL alike: retried, then left to the wait
            if waited + delay > budget_seconds:
                log.error("asking worker group %s for %d workers failed: %s", group.name, wanted, exc)
                return None
            log.warning(
                "asking worker group %s for %d workers: %s; again in %.0f s", group.name, wanted, exc, delay
            )
            sleep(delay)
            waited += delay
            delay = min(delay * 2, 30.0)


#: seconds between two scale-in looks at the group
SCALE_IN_SECONDS = 30.0


class ScaleIn:
    """Once no run is pending, the workers that hold no run go (the group scales in, keeping none
    idle), and an instance the group is recreating (a preempted spot VM) is not brought back while
    nothing waits for it: every managed instance that is not one of ``busy()`` is deleted from the
    group, which lowers its ``targetSize`` by as many (``instanceGroupManagers.deleteInstances``).
    ``busy()`` names the instances of the nodes running an attempt now, or None while that is not
    known yet (an attempt placed whose node has not said where it runs): then nothing is deleted."""

    def __init__(
        self,
        settings: Any,
        busy: Callable[[], set[str] | None],
        *,
        batch_dir: Path | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.group = settings.worker_group
        self.busy = busy
        self.batch_dir = batch_dir
        self.monotonic = monotonic
        self._next = 0.0
        self.deleted: list[str] = []

    def __call__(self) -> None:
        if self.group is None or self.group.size <= 0 or self.monotonic() < self._next:
            return
        keep = self.busy()
        if keep is None:  # an attempt has not said where it runs yet: look again next turn
            return
        self._next = self.monotonic() + SCALE_IN_SECONDS
        from remote_runner.cloud import mig

        group = self.group
        try:
            instances = mig.managed_instances(
                group.project, group.zone, group.name, token_provider=mig.metadata_token()
            )
            idle = sorted(n for n, action in instances.items() if n not in keep and action != "DELETING")
            if not idle:
                return
            mig.delete_instances(
                group.project, group.zone, group.name, idle, token_provider=mig.metadata_token()
            )
        except Exception as exc:  # tried again at the next look; the batch's end releases the group anyway
            log.warning("scaling worker group %s in failed: %s", group.name, exc)
            return
        self.deleted += idle
        _KNOWN_SIZE["value"] = max(0, len(instances) - len(idle))
        message = (
            f"group {group.name} scaled in to {_KNOWN_SIZE['value']}: nothing is pending, so the idle "
            f"{', '.join(idle)} went"
        )
        log.info("worker %s", message)
        write_status(self.batch_dir, state="scaled in", size=_KNOWN_SIZE["value"], message=message)


def instance_name() -> str:
    """This node's instance name: ``LLAMARESTTEST_INSTANCE``, else the host name (on Google Cloud a
    VM's host name is its instance name)."""
    import os
    import socket

    return os.environ.get("LLAMARESTTEST_INSTANCE") or socket.gethostname().split(".")[0]


def joined_workers(nodes: Sequence[Any]) -> int:
    """Alive nodes that offer an experiment slot (pure)."""
    return sum(1 for n in nodes if n.alive and n.slots > 0)
