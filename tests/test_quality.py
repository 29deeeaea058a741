"""The project's own checks, run with the suite so CI enforces them: ruff (lint + format) over the
repository, mypy over the two packages and import-linter's layers contract over the runner (all
configured in pyproject.toml)."""

from __future__ import annotations

import sys
from pathlib import Path

from remote_runner.common.process import execute

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_ruff_lint_clean() -> None:
    res = execute([str(BIN / "ruff"), "check", "."], cwd=ROOT, timeout=120)
    assert res.ok, res.output


def test_ruff_format_clean() -> None:
    res = execute([str(BIN / "ruff"), "format", "--check", "."], cwd=ROOT, timeout=120)
    assert res.ok, res.output


def test_mypy_clean() -> None:
    res = execute([sys.executable, "-m", "mypy"], cwd=ROOT, timeout=300)
    assert res.ok, res.output


def test_runner_layers_contract_kept() -> None:
    """No module of remote_runner imports a layer above its own (docs/architecture.md)."""
    res = execute([str(BIN / "lint-imports"), "--no-cache"], cwd=ROOT, timeout=120)
    assert res.ok, res.output
