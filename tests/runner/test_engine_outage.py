"""A Docker engine outage mid-batch (issue 11), on a real second dockerd that this test starts and
restarts itself (own data root, exec root, pid file, socket, no default bridge, its own address pool).
The engine named by the shell's DOCKER_HOST only lends the fixture images (docker save | docker load);
it is never stopped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from remote_runner.common.process import execute
from tests.runner.conftest import BASE_IMAGE, ROOT, journal_events, journal_rows, runner_env, wait_for
from tests.runner.test_batch_safety import quick

pytestmark = [pytest.mark.docker, pytest.mark.slow]

IMAGES = ["llamaresttest/api-fx-echo", "llamaresttest/tool-fx-good"]
#: the test engine's networks: outside Docker's default pools (172.17-31/16 from the bottom) in use here
ADDRESS_POOL = "base=172.31.240.0/20,size=24"


def default_bridge() -> list[str] | None:
    """The host engine's ``docker0`` as its IPv4 addresses (CIDR), or None when there is none (the
    kernel gives a bridge its IPv6 link-local addresses itself)."""
    res = execute(["ip", "-j", "addr", "show", "docker0"], timeout=30)
    if not res.ok:
        return None
    links = json.loads(res.output)
    return [
        f"{a['local']}/{a['prefixlen']}"
        for link in links
        for a in link.get("addr_info", [])
        if a.get("family") == "inet"
    ]


def keep_default_bridge(addresses: list[str] | None) -> None:
    """Puts the host engine's ``docker0`` back as it was if the test engine removed it.

    A dockerd started with ``--bridge none`` deletes the link named ``docker0`` of its network
    namespace, whichever engine made it (moby, daemon/daemon_unix.go: ``initNetworkController``
    calls ``removeDefaultBridgeInterface`` when the bridge is disabled, and when it clears a stale
    default network with ``--default-address-pool`` set, as on a restart). Here that is the host's:
    every later build with a RUN step on the host engine failed ("could not find bridge docker0"),
    and the next test command started without it. The host engine finds its bridge by name when it
    attaches a container, and its iptables rules name it, so a bridge of that name with the same
    addresses serves it again."""
    if addresses is None or default_bridge() is not None:
        return
    for argv in (
        ["ip", "link", "add", "docker0", "type", "bridge"],
        *(["ip", "addr", "add", cidr, "dev", "docker0"] for cidr in addresses),
        ["ip", "link", "set", "docker0", "up"],
    ):
        res = execute(argv, timeout=30)
        assert res.ok, f"{' '.join(argv)}: {res.output}"


@dataclass
class Engine:
    root: Path
    #: the host engine's docker0 before the test engine first started (:func:`default_bridge`)
    host_bridge: list[str] | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.root / 'd.sock'}"

    def env(self) -> dict[str, str]:
        return {**runner_env(), "DOCKER_HOST": self.host}

    def docker(self, *args: str, timeout: float = 60) -> str:
        res = execute(["docker", *args], timeout=timeout, env={"DOCKER_HOST": self.host})
        assert res.ok, f"docker {' '.join(args)} on the test engine: {res.output}"
        return res.output

    def start(self) -> None:
        log = (self.root / "dockerd.log").open("ab")
        self.proc = subprocess.Popen(
            [
                "dockerd",
                "--data-root",
                str(self.root / "data"),
                "--exec-root",
                str(self.root / "x"),
                "--pidfile",
                str(self.root / "d.pid"),
                "-H",
                self.host,
                "--bridge",
                "none",
                "--default-address-pool",
                ADDRESS_POOL,
                "--shutdown-timeout",
                "2",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(
            lambda: execute(["docker", "version"], timeout=10, env={"DOCKER_HOST": self.host}).ok,
            60,
            "the test engine to answer",
            interval=0.3,
        )
        keep_default_bridge(self.host_bridge)

    def stop(self) -> None:
        """SIGTERM to this engine's own pid, then waits until it has exited."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.proc = None


@pytest.fixture
def second_engine(fixture_images: Path) -> Iterator[Engine]:
    # a short folder: unix socket paths are limited to 107 bytes (containerd's live under exec-root)
    root = Path(tempfile.mkdtemp(prefix="lrt-eng-", dir="/var/lib"))
    engine = Engine(root, host_bridge=default_bridge())
    engine.start()
    try:
        save = subprocess.Popen(
            ["docker", "save", BASE_IMAGE, *IMAGES], env=runner_env(), stdout=subprocess.PIPE
        )
        load = subprocess.run(
            ["docker", "load", "-q"], env=engine.env(), stdin=save.stdout, capture_output=True, timeout=180
        )
        assert save.wait(180) == 0 and load.returncode == 0, load.stderr
        yield engine
    finally:
        engine.stop()
        subprocess.run(["umount", "-R", "-l", str(root / "data")], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
        # the host engine's default bridge outlived the test engine's starts and stops
        assert default_bridge() == engine.host_bridge, (
            f"docker0 was {engine.host_bridge}, is {default_bridge()}"
        )


def test_an_engine_restarted_mid_batch_is_waited_for_and_every_run_finishes(
    second_engine: Engine, fixture_images: Path, tmp_path: Path, test_label: str
) -> None:
    results = tmp_path / "results"
    args = quick(fixture_images, results, test_label, "4", "--engine-wait", "90")
    out_log = tmp_path / "runner.out"
    with out_log.open("wb") as handle:
        runner = subprocess.Popen(
            [sys.executable, "-m", "remote_runner", *args],
            cwd=ROOT,
            env=second_engine.env(),  # the runner works on the test engine only
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        batch = wait_for(lambda: next(iter(results.glob("batch-*/plan.json")), None), 60, "a batch").parent
        # a tool container under way on the test engine, then the engine goes away
        wait_for(
            lambda: second_engine.docker(
                "ps", "-q", "--filter", f"label={test_label}", "--filter", "label=llamaresttest.role=tool"
            ).split(),
            60,
            "a running tool container",
        )
        second_engine.stop()
        stopped_at = time.monotonic()
        wait_for(
            lambda: any(r["status"] == "interrupted" for r in journal_rows(batch)),
            30,
            "an attempt marked interrupted",
        )
        time.sleep(max(0.0, 4 - (time.monotonic() - stopped_at)))
        second_engine.start()  # same data root: the old attempt's containers and networks are still there
        code = runner.wait(120)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait(30)
    out = out_log.read_text()
    runner_log = (batch / "runner.log").read_text()
    assert code == 0, out + runner_log  # done: every run succeeded
    rows = journal_rows(batch)
    assert [r["status"] for r in rows] == ["succeeded"] * 4, rows
    assert all(r["failures"] == 0 for r in rows), rows  # no failed attempt counted for the outage
    events = journal_events(batch)
    interrupted = [e for e in events if e["event"] == "interrupted"]
    assert interrupted and all(str(e["detail"]).startswith("docker engine unavailable") for e in interrupted)
    assert not [e for e in events if e["event"] == "attempt failed"], events
    assert any(r["attempts"] >= 2 for r in rows)  # the interrupted runs ran again
    assert "docker engine unavailable for" in runner_log and "next check in" in runner_log
    assert "docker engine is back after" in runner_log
    # nothing of the batch is left on the engine
    assert second_engine.docker("ps", "-aq", "--filter", f"label={test_label}").split() == []
    assert second_engine.docker("network", "ls", "-q", "--filter", f"label={test_label}").split() == []
    # no interrupted attempt saved the client's "Cannot connect" as a container log
    for log_file in batch.rglob("*.log"):
        if log_file.parent.name == "logs":
            assert "Cannot connect" not in log_file.read_text(errors="replace"), log_file
