"""The pure parts of cluster mode, without Ray: capacity and the up-front refusal, the node's cpuset
ledger, the journal's exactly-once commit, the scheduler's handling of a lost attempt, archives."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import threading
from collections.abc import Hashable, Sequence
from pathlib import Path

import pytest

from remote_runner.batch import journal
from remote_runner.batch.scheduler import LOST_LIMIT, Scheduler
from remote_runner.batch.status import cluster_lines, runs_per_node
from remote_runner.experiment.lifecycle import FAILED, SUCCEEDED, Outcome
from remote_runner.experiment.run_key import RunKey
from remote_runner.placement.admission import Candidate, Decision, Ledger, Machine, Request, Reservation
from remote_runner.placement.cluster import Node, capacity, fit_problem, nodes_from, pack, unpack
from remote_runner.placement.local import LOST
from remote_runner.placement.node_ledger import NodeLedger

GIB = 1024**3
REQ = Request(cpus=8, memory_bytes=16 * GIB)  # 16 CPUs and 32 GiB per experiment


def node(name: str, cpus: float, memory_gib: float, slots: int, alive: bool = True) -> Node:
    return Node(name, alive, "10.0.0.1", cpus, int(memory_gib * GIB), slots)


def test_capacity_counts_what_each_alive_node_holds_by_slots_cpus_and_memory() -> None:
    nodes = [
        node("head", 4, 10, 0),  # no experiment slot: runs nothing
        node("n1-32", 32, 100, 2),  # 2 by slots, 2 by CPU, 3 by memory
        node("n1-96", 96, 300, 6),  # 6 by slots and CPU
        node("small", 16, 20, 1),  # memory: 20 GiB < 32 GiB
        node("dead", 96, 300, 6, alive=False),
    ]
    assert [n.holds(REQ) for n in nodes] == [0, 2, 6, 0, 0]
    assert capacity(nodes, REQ) == 8
    assert fit_problem(nodes, REQ) is None


def test_a_request_no_node_fits_is_refused_with_the_largest_node_and_the_fix() -> None:
    problem = fit_problem([node("a", 8, 30, 1), node("b", 16, 20, 1)], REQ)
    assert problem is not None
    assert "needs 16 CPUs and 32.00 GiB" in problem
    assert "largest: 16 CPUs, 20.00 GiB" in problem and "lower --cpus-per-container" in problem
    none = fit_problem([node("head", 4, 10, 0)], REQ)
    assert none is not None and "no alive node of the cluster offers 'experiment_slot'" in none


def test_nodes_are_read_from_ray_nodes() -> None:
    rows = nodes_from(
        [
            {"NodeID": "h", "Alive": True, "NodeManagerAddress": "10.0.0.2", "Resources": {"memory": 9e9}},
            {
                "NodeID": "w",
                "Alive": False,
                "NodeManagerAddress": "10.0.0.3",
                "Resources": {"CPU": 32.0, "memory": 1e11, "experiment_slot": 2.0},
            },
        ]
    )
    assert rows == [
        Node("h", True, "10.0.0.2", 0.0, 9_000_000_000, 0),
        Node("w", False, "10.0.0.3", 32.0, 10**11, 2),
    ]


def test_the_node_ledger_gives_disjoint_cpusets_and_drops_entries_of_dead_processes(tmp_path: Path) -> None:
    ledger = NodeLedger(tmp_path, Machine(8, 64 * GIB))
    req = Request(2, GIB)
    a = ledger.reserve("a", req)
    b = ledger.reserve("b", req)
    assert a.cpusets == ((0, 1), (2, 3)) and b.cpusets == ((4, 5), (6, 7))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    ledger.release("a")
    ghost = ledger.reserve("ghost", req, pid=int(dead.stdout))  # its process has exited
    assert ghost.cpusets == ((0, 1), (2, 3))
    assert set(ledger.held()) == {"b"}  # the dead process's entry is gone on the next read
    # 8 more CPUs do not fit beside b's 4 on 8: CPU quotas only, never CPU ids another attempt holds
    full = ledger.reserve("c", Request(4, GIB))
    assert full.cpusets == ((), ())
    assert ledger.held()["c"]["cpusets"] == [[], []]


def test_a_zombie_attempt_is_never_committed(tmp_path: Path) -> None:
    jour = journal.Journal(tmp_path / "journal.sqlite")
    key = RunKey(1, "api", "tool")
    jour.add_runs([key])
    first = jour.start_attempt(key, "")
    jour.place_attempt(key, first, "node-a")
    jour.lose_attempt(key, "node lost")  # node-a declared dead: back to pending, not a failure
    second = jour.start_attempt(key, "")
    jour.place_attempt(key, second, "node-b")
    assert not jour.commit_attempt(key, first)  # the first attempt's task finished after all: ignored
    assert jour.get(key).status == journal.RUNNING
    assert jour.commit_attempt(key, second)
    assert not jour.commit_attempt(key, second)  # committed once only
    row = jour.get(key)
    assert (row.status, row.failures, row.committed_attempt) == (journal.SUCCEEDED, 0, 2)
    assert [(a, n, o) for _k, a, n, o in jour.attempts_of(key)] == [
        (1, "node-a", "lost"),
        (2, "node-b", "committed"),
    ]
    jour.close()


def test_an_old_journal_gets_the_attempts_table_and_column(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "journal.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE runs (api TEXT NOT NULL, tool TEXT NOT NULL, repetition INTEGER NOT NULL, "
        "position INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL "
        "DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0, reason TEXT, cpuset TEXT, started REAL, "
        "finished REAL, uploaded INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (api, tool, repetition));"
        "INSERT INTO runs (api, tool, repetition, position, status, attempts) "
        "VALUES ('a', 't', 1, 0, 'succeeded', 1);"
    )
    db.commit()
    db.close()
    jour = journal.Journal(path)
    assert jour.runs()[0].committed_attempt is None and jour.runs()[0].status == journal.SUCCEEDED
    jour.close()


class FakePlacement:
    """A placement whose attempts end as scripted (the scheduler's side of cluster mode)."""

    def __init__(self, outcomes: list[str], slots: int = 1) -> None:
        self.outcomes = outcomes
        self.slots = slots
        self.running: set[Hashable] = set()
        self.started: list[tuple[RunKey, int]] = []
        self._lock = threading.Lock()

    def decide(self, pending: Sequence[Candidate]) -> Decision:
        free = self.slots - len(self.running)
        picked = tuple(Reservation(c.run, c.request, ((), ())) for c in pending[: max(0, free)])
        return Decision(picked, Ledger(Machine(0, 0)), None)

    def admit(self, reservation: Reservation) -> None:
        self.running.add(reservation.run)

    def start(self, key: RunKey, reservation: Reservation, attempt: int) -> Outcome:
        with self._lock:
            self.started.append((key, attempt))
            status = self.outcomes.pop(0)
        return Outcome(status, None if status == SUCCEEDED else f"{status} on purpose")

    def release(self, run: Hashable) -> None:
        self.running.discard(run)

    @property
    def reserved_cpus(self) -> float:
        return float(len(self.running))


def _schedule(
    tmp_path: Path, outcomes: list[str], max_attempts: int = 2
) -> tuple[journal.Journal, FakePlacement]:
    jour = journal.Journal(tmp_path / "journal.sqlite")
    key = RunKey(1, "api", "tool")
    jour.add_runs([key])
    placement = FakePlacement(outcomes)
    sched = Scheduler(
        jour=jour,
        request_for=lambda _k: Request(1, GIB),
        max_attempts=max_attempts,
        stop=threading.Event(),
        placement=placement,
    )
    assert sched.run()
    return jour, placement


def test_a_lost_attempt_is_requeued_without_counting_a_failure(tmp_path: Path) -> None:
    jour, placement = _schedule(tmp_path, [LOST, LOST, SUCCEEDED])
    row = jour.runs()[0]
    assert (row.status, row.attempts, row.failures, row.committed_attempt) == (journal.SUCCEEDED, 3, 0, 3)
    assert [a for _k, a in placement.started] == [1, 2, 3]
    events = [e[4] for e in jour.events()]
    assert events.count("attempt lost") == 2


def test_a_run_lost_again_and_again_counts_a_failed_attempt_so_it_cannot_loop_forever(tmp_path: Path) -> None:
    jour, _ = _schedule(tmp_path, [LOST] * (2 * LOST_LIMIT), max_attempts=2)
    row = jour.runs()[0]
    assert row.status == journal.FAILED and row.failures == 2
    assert row.attempts == 2 * LOST_LIMIT
    assert "lost attempts in a row" in (row.reason or "")


def test_an_experiment_error_on_a_node_counts_one_failed_attempt(tmp_path: Path) -> None:
    jour, _ = _schedule(tmp_path, [FAILED, SUCCEEDED])
    row = jour.runs()[0]
    assert (row.status, row.failures, row.committed_attempt) == (journal.SUCCEEDED, 1, 2)


def test_archives_round_trip_and_refuse_members_outside_or_links(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "logs").mkdir(parents=True)
    (src / "logs" / "tool.log").write_text("hello")
    (src / "metadata.json").write_text("{}")
    unpack(pack(src), tmp_path / "out")
    assert (tmp_path / "out" / "logs" / "tool.log").read_text() == "hello"
    for name, kind in (("../escape", tarfile.REGTYPE), ("link", tarfile.SYMTYPE)):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
            tar.addfile(info, io.BytesIO(b""))
        with pytest.raises(ValueError, match="refusing archive member"):
            unpack(buffer.getvalue(), tmp_path / f"bad-{name.strip('./')}")
    assert not (tmp_path / "escape").exists()


def test_status_lists_nodes_slots_and_runs_per_node() -> None:
    tries = [
        (RunKey(1, "a", "t"), 1, "n1", "lost"),
        (RunKey(1, "a", "t"), 2, "n2", "committed"),
        (RunKey(2, "a", "t"), 1, "n2", "committed"),
    ]
    per = runs_per_node(tries)
    assert per == {"n2": 2}
    doc = {
        "cluster": {
            "dashboard": "http://10.0.0.2:8265",
            "updated": "2026-12-02T05:00:00Z",
            "nodes": [
                {"node_id": "head", "alive": True, "slots": 0, "address": "10.0.0.2"},
                {
                    "node_id": "n1",
                    "alive": False,
                    "slots": 2,
                    "holds": 0,
                    "slots_used": 0,
                    "address": "10.0.0.3",
                },
                {
                    "node_id": "n2",
                    "alive": True,
                    "slots": 2,
                    "holds": 2,
                    "slots_used": 1,
                    "address": "10.0.0.4",
                    "runs": ["a/t/run-3"],
                },
            ],
        },
        "runs_per_node": per,
    }
    lines = cluster_lines(doc)
    assert lines[0] == "cluster: dashboard http://10.0.0.2:8265 (as of 2026-12-02T05:00:00Z)"
    assert len(lines) == 3  # the head runs nothing and is left out
    assert "n1 10.0.0.3: DEAD, slots 0/0 used, 0 runs done" in lines[1]
    assert "n2 10.0.0.4: alive, slots 1/2 used, 2 runs done, running a/t/run-3" in lines[2]
