"""Every shell script the project ships passes shellcheck (the startup script is checked after
rendering, in tests/stacks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from remote_runner.process import execute

ROOT = Path(__file__).resolve().parent.parent


def _shell_scripts() -> list[Path]:
    found = [ROOT / ".ci" / "run"]
    for folder in ("scripts", "infrastructure", "apis", "tools", "stacks"):
        for path in sorted((ROOT / folder).rglob("*.sh")):
            if "wheelhouse" not in path.parts:
                found.append(path)
    return found


def test_there_are_scripts_to_check() -> None:
    names = {p.name for p in _shell_scripts()}
    assert {"run", "bootstrap.sh", "test.sh"} <= names


@pytest.mark.parametrize("script", _shell_scripts(), ids=lambda p: str(p.relative_to(ROOT)))
def test_shellcheck_clean(script: Path) -> None:
    res = execute(["shellcheck", "--shell=bash", "--severity=style", str(script)], timeout=60)
    assert res.returncode != 127, "shellcheck missing: scripts/bootstrap.sh installs it"
    assert res.ok, res.output
