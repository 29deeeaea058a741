from __future__ import annotations

from pathlib import Path

from remote_runner import catalog
from tests.runner.conftest import CATALOG


def test_fixture_catalog_with_metadata_and_defaults():
    cat = catalog.load(CATALOG)
    assert sorted(cat.apis) == ["fx-echo", "fx-never-ready"]
    assert sorted(cat.tools) == ["fx-crash", "fx-good", "fx-hog"]
    echo = cat.apis["fx-echo"]
    assert (echo.readiness_path, echo.readiness_timeout, echo.service_port) == ("/health", 20.0, 8080)
    assert echo.spec == "specifications/fx-echo-openapi.json" and echo.spec_path.is_file()
    assert (
        echo.image == "llamaresttest/api-fx-echo"
        and cat.tools["fx-good"].image == "llamaresttest/tool-fx-good"
    )
    assert cat.apis["fx-never-ready"].readiness_path == "/"
    assert cat.infrastructure is None and cat.problems == ()


def test_folders_without_dockerfile_are_ignored_and_bad_metadata_reported(tmp_path: Path):
    (tmp_path / "apis" / "half").mkdir(parents=True)
    api = tmp_path / "apis" / "svc"
    api.mkdir()
    (api / "Dockerfile").write_text("FROM x\n")
    (api / "api.toml").write_text('readiness_timeout = "long"\ncolour = 1\nreadiness_path = "health"\n')
    tool = tmp_path / "tools" / "t"
    tool.mkdir(parents=True)
    (tool / "Dockerfile").write_text("FROM x\n")
    (tool / "tool.toml").write_text("needs_models = [")
    infra = tmp_path / "infrastructure"
    infra.mkdir()
    (infra / "Dockerfile").write_text("FROM x\n")
    cat = catalog.load(tmp_path)
    assert list(cat.apis) == ["svc"] and list(cat.tools) == ["t"] and cat.infrastructure == infra
    text = "\n".join(cat.problems)
    assert "readiness_timeout must be a number" in text
    assert "unknown key 'colour'" in text
    assert "readiness_path must start with '/'" in text
    assert "cannot be read as TOML" in text
    assert cat.apis["svc"].readiness_timeout == 300.0  # bad values keep the documented default
