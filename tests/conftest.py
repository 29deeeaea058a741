"""Shared fixtures. Real services only: the Docker engine is started by scripts/bootstrap.sh (the
test command); sshd and the GCS emulator are started by the fixtures of the tests that need them.
A missing service is a failure, never a skip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from remote_runner.common.process import execute

ROOT = Path(__file__).resolve().parent.parent


def lane(nodeid: str) -> str:
    """The test's lane under ``-n 2 --dist loadgroup`` (scripts/test.sh): the rehearsal, whose boxes
    mostly wait (boots, one-minute runs, compressed schedules) and have their own engines, networks
    and Ray, runs beside the rest of the suite, which keeps its order in one worker."""
    return "rehearsal" if nodeid.startswith("tests/rehearsal/") else "suite"


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` as :func:`lane` groups the tests. xdist's own loadgroup reads
    ``xdist_group`` marks into the node ids by setting ``item._nodeid``, which pytest 9.2's nodes no
    longer read (their id is ``_id``): every test would be scheduled on its own. Grouping by the node
    id here needs no marks. Other ``--dist`` modes are xdist's."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Lanes(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return lane(nodeid)

    return Lanes(config, log)


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
