from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pulumi
import pytest
from pulumi.runtime import settings

from stacks.config import BENCHMARK_APIS
from tests.pulumi.harness import make_project


@pytest.fixture(scope="session")
def project_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkout whose catalog holds the 11 benchmark APIs, a demo API and two tools."""
    return make_project(
        tmp_path_factory.mktemp("project"),
        apis=[*BENCHMARK_APIS, "demo-shop"],
        tools=["llamaresttest", "schemathesis"],
    )


@pytest.fixture(autouse=True)
def _bundles_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The deploy step writes its bundle under $XDG_CACHE_HOME: keep it out of the user's cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


@pytest.fixture(autouse=True)
def _leave_no_pulumi_state() -> Iterator[None]:
    """Mocks, config and the root stack are process-wide: don't hand them to other test folders."""
    yield
    settings.ROOT.set(None)
    pulumi.runtime.set_all_config({}, [])
