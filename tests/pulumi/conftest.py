from __future__ import annotations

from pathlib import Path

import pytest

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
