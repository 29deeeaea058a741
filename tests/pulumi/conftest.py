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
def _leave_no_pulumi_state() -> Iterator[None]:
    """Mocks, config and the root stack are process-wide: don't hand them to other test folders."""
    yield
    settings.ROOT.set(None)
    pulumi.runtime.set_all_config({}, [])
