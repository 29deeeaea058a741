"""A cluster node's own cpuset ledger: today's admission rules (:mod:`remote_runner.placement.admission`) for
the attempts running on one node, shared by the node's Ray worker processes through a small JSON file under
an exclusive ``flock``.

Ray's own resources already keep the node's CPUs and memory from being over-committed; this ledger
gives each attempt concrete, disjoint CPU ids (``--cpuset-cpus``) on the node, lowest free first, as on
one machine. An entry whose process is gone (its Ray worker was killed) is dropped on the next read,
so a crashed attempt never holds CPUs. The file is scoped by node id, so nodes sharing a machine (the
tests' cluster) keep separate ledgers, as separate machines would.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from remote_runner.placement.admission import Candidate, Ledger, Machine, Request, Reservation, reserve


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class NodeLedger:
    def __init__(self, folder: Path, machine: Machine) -> None:
        self.folder = folder
        self.machine = machine
        self.path = folder / "ledger.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, dict]]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / "ledger.lock").open("a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                try:
                    entries = json.loads(self.path.read_text(encoding="utf-8"))
                except (FileNotFoundError, json.JSONDecodeError):
                    entries = {}
                entries = {k: v for k, v in entries.items() if _alive(int(v.get("pid", 0)))}
                yield entries
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(entries, indent=1, sort_keys=True), encoding="utf-8")
                tmp.replace(self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _ledger(self, entries: dict[str, dict]) -> Ledger:
        held = tuple(
            Reservation(
                token,
                Request(float(e["cpus"]), int(e["memory"])),
                tuple(tuple(int(c) for c in s) for s in e["cpusets"]),
            )
            for token, e in sorted(entries.items())
        )
        return Ledger(self.machine, held)

    def reserve(self, token: str, request: Request, *, pid: int | None = None) -> Reservation:
        """The attempt's cpusets on this node. When the pinned sets do not fit (the node told Ray
        more CPUs than this machine gives this process), the attempt gets CPU quotas only, as a
        fractional request does; the experiment's metadata shows which."""
        with self._locked() as entries:
            ledger = self._ledger(entries)
            reservation = reserve(ledger, Candidate(token, request))
            if reservation is None:
                reservation = Reservation(token, request, tuple(() for _ in range(request.containers)))
            entries[token] = {
                "pid": pid if pid is not None else os.getpid(),
                "cpus": request.cpus,
                "memory": request.memory_bytes,
                "cpusets": [list(s) for s in reservation.cpusets],
            }
        return reservation

    def release(self, token: str) -> None:
        with self._locked() as entries:
            entries.pop(token, None)

    def held(self) -> dict[str, dict]:
        with self._locked() as entries:
            return dict(entries)
