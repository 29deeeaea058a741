"""Fixtures of the image tests: the demo images, built once per session on the real engine."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from remote_runner.common.process import execute
from tests.images.standin_images import build_all_standins

IMAGES = [
    ("llamaresttest/infrastructure", "infrastructure"),
    ("llamaresttest/api-demo-shop", "apis/demo-shop"),
    ("llamaresttest/tool-schemathesis", "tools/schemathesis"),
]


@pytest.fixture(scope="session")
def demo_images(docker_engine: str, project_root: Path) -> dict[str, float]:
    wheels = execute(["bash", "scripts/wheelhouse.sh", "schemathesis"], cwd=project_root, timeout=600)
    assert wheels.ok, wheels.tail()
    seconds: dict[str, float] = {}
    for image, context in IMAGES:
        begin = time.monotonic()
        res = execute(["docker", "build", "-q", "-t", image, context], cwd=project_root, timeout=900)
        seconds[image] = round(time.monotonic() - begin, 1)
        assert res.ok, f"building {image} failed:\n{res.tail(40)}"
    print(f"build seconds: {seconds}")
    return seconds


@pytest.fixture(scope="session")
def recording_images(docker_engine: str, project_root: Path) -> None:
    """The infrastructure image and the demo API on it (no tool image: no wheelhouse needed)."""
    for image, context in IMAGES[:2]:
        res = execute(["docker", "build", "-q", "-t", image, context], cwd=project_root, timeout=900)
        assert res.ok, f"building {image} failed:\n{res.tail(40)}"


@pytest.fixture(scope="session")
def benchmark_images(docker_engine: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every benchmark API image built on its stand-in (tests/images/standin_images.py), once per
    session: api -> the build output."""
    return build_all_standins(tmp_path_factory.mktemp("standins"))
