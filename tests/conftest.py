"""Shared fixtures. Real services only: the Docker engine is started by scripts/bootstrap.sh (the
test command); sshd and the GCS emulator are started by the fixtures of the tests that need them.
A missing service is a failure, never a skip."""

from __future__ import annotations

from pathlib import Path

import pytest

from remote_runner.common.process import execute

ROOT = Path(__file__).resolve().parent.parent
REHEARSAL = ROOT / "tests" / "rehearsal"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Two lanes for pytest-xdist's ``--dist loadgroup`` (scripts/test.sh): the rehearsal, whose boxes
    mostly wait (boots, one-minute runs, compressed schedules) and have their own engines, networks and
    Ray, runs beside the rest of the suite, which keeps its order in one worker. Without xdist the
    marks change nothing."""
    for item in items:
        lane = "rehearsal" if REHEARSAL in Path(str(item.fspath)).parents else "suite"
        item.add_marker(pytest.mark.xdist_group(lane))


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """Asserts that a Docker engine answers; returns its server version."""
    res = execute(["docker", "version", "--format", "{{.Server.Version}}"], timeout=30)
    assert res.ok, f"no Docker engine: run scripts/bootstrap.sh (as the test command does)\n{res.output}"
    base = execute(["docker", "image", "inspect", "debian:bookworm-slim"], timeout=30)
    assert base.ok, "base image debian:bookworm-slim missing: run scripts/bootstrap.sh"
    return res.output.strip()
