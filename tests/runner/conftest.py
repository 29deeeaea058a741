"""Fixtures of the runner's tests: one small base image with python3 (built once per session) and
tiny API/tool images derived from it (tests/runner/fixtures/catalog), built with the runner's own
``build`` command. Every container and network a test makes carries a ``llamaresttest.test`` label."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from remote_runner.common.process import execute

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
CATALOG = FIXTURES / "catalog"
ROOT = HERE.parent.parent
BASE_IMAGE = "llamaresttest-test/pybase"
TEST_LABEL = "llamaresttest.test"
FIXTURE_IMAGES = [
    "llamaresttest/api-fx-echo",
    "llamaresttest/api-fx-never-ready",
    "llamaresttest/api-fx-spec-in-image",
    "llamaresttest/tool-fx-good",
    "llamaresttest/tool-fx-crash",
    "llamaresttest/tool-fx-hog",
]


def runner_env() -> dict[str, str]:
    env = dict(os.environ)
    # Debian's docker 20.10 client first (the engine's own client; the other one lacks buildx)
    env["PATH"] = "/usr/bin:" + env.get("PATH", "")
    env["PYTHONPATH"] = str(ROOT)
    return env


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remote_runner", *args],
        cwd=ROOT,
        env=runner_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def spawn(*args: str, log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "remote_runner", *args],
        cwd=ROOT,
        env=runner_env(),
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def labelled(label: str) -> tuple[list[str], list[str]]:
    """Containers and networks carrying ``label`` (KEY=VALUE)."""
    ps = execute(["docker", "ps", "-a", "-q", "--filter", f"label={label}"], timeout=60)
    nets = execute(["docker", "network", "ls", "-q", "--filter", f"label={label}"], timeout=60)
    assert ps.ok and nets.ok, ps.output + nets.output
    return ps.output.split(), nets.output.split()


def remove_labelled(label: str) -> None:
    containers, networks = labelled(label)
    if containers:
        execute(["docker", "rm", "-f", *containers], timeout=120)
    for net in networks:
        execute(["docker", "network", "rm", net], timeout=60)


def journal_rows(batch_dir: Path) -> list[dict[str, object]]:
    db = sqlite3.connect(f"file:{batch_dir / 'journal.sqlite'}?mode=ro", uri=True, timeout=30)
    try:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM runs ORDER BY position")]
    finally:
        db.close()


def journal_events(batch_dir: Path) -> list[dict[str, object]]:
    db = sqlite3.connect(f"file:{batch_dir / 'journal.sqlite'}?mode=ro", uri=True, timeout=30)
    try:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM events ORDER BY id")]
    finally:
        db.close()


def only_batch(results: Path) -> Path:
    batches = sorted(results.glob("batch-*"))
    assert len(batches) == 1, batches
    return batches[0]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def read_json(path: Path) -> dict[str, object]:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def fixture_images(docker_engine: str) -> Iterator[Path]:
    """Builds the base image and the fixture API/tool images; removes the fixture images after."""
    env = runner_env()
    base = subprocess.run(
        [
            "docker",
            "build",
            "-q",
            "-t",
            BASE_IMAGE,
            "--label",
            f"{TEST_LABEL}=runner",
            str(FIXTURES / "pybase"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert base.returncode == 0, f"building {BASE_IMAGE} failed:\n{base.stdout}\n{base.stderr}"
    built = cli("build", "--catalog", str(CATALOG), timeout=600)
    assert built.returncode == 0, f"runner build failed:\n{built.stdout}\n{built.stderr}"
    yield CATALOG
    subprocess.run(["docker", "rmi", "-f", *FIXTURE_IMAGES], env=env, capture_output=True, check=False)


@pytest.fixture
def test_label(request: pytest.FixtureRequest) -> Iterator[str]:
    """A label unique to the test; whatever carries it is removed after the test."""
    label = f"{TEST_LABEL}=runner-{request.node.name}"[:120]
    yield label
    remove_labelled(label)


def terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
