from __future__ import annotations

from pathlib import Path

from remote_runner.experiment import catalog
from tests.runner.conftest import CATALOG


def test_fixture_catalog_with_metadata_and_defaults():
    cat = catalog.load(CATALOG)
    assert sorted(cat.apis) == ["fx-echo", "fx-never-ready", "fx-spec-in-image"]
    assert sorted(cat.tools) == ["fx-crash", "fx-good", "fx-hog"]
    echo = cat.apis["fx-echo"]
    assert (echo.readiness_path, echo.readiness_timeout, echo.service_port) == ("/health", 20.0, 8080)
    assert echo.spec == "specifications/fx-echo-openapi.json" and echo.spec_path.is_file()
    assert (
        echo.image == "llamaresttest/api-fx-echo"
        and cat.tools["fx-good"].image == "llamaresttest/tool-fx-good"
    )
    assert cat.apis["fx-never-ready"].readiness_path == "/"
    in_image = cat.apis["fx-spec-in-image"]
    assert in_image.spec_in_image == "/api/specifications/fx-spec-in-image-openapi.json"
    assert not in_image.spec_path.exists() and in_image.spec_problem() is None
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


def api_folder(root: Path, name: str, toml: str | None) -> Path:
    folder = root / "apis" / name
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text("FROM x\n")
    if toml is not None:
        (folder / "api.toml").write_text(toml)
    return folder


def test_a_spec_missing_on_disk_is_fine_when_the_image_holds_it(tmp_path: Path):
    api_folder(tmp_path, "in-image", 'spec_in_image = "/api/specifications/in-image-openapi.json"\n')
    on_disk = api_folder(tmp_path, "on-disk", None)
    (on_disk / "specifications").mkdir()
    (on_disk / "specifications" / "on-disk-openapi.json").write_text("{}")
    both = api_folder(tmp_path, "both", 'spec = "s.json"\nspec_in_image = "/s.json"\n')
    (both / "s.json").write_text("{}")
    api_folder(tmp_path, "neither", None)
    cat = catalog.load(tmp_path)
    assert cat.problems == ()
    api_folder(tmp_path, "specifications", 'spec_in_image = "/s.json"\n')  # the batch's spec folder
    assert "an API may not be called 'specifications'" in "".join(catalog.load(tmp_path).problems)
    assert cat.apis["in-image"].spec_in_image == "/api/specifications/in-image-openapi.json"
    assert not cat.apis["in-image"].spec_path.is_file()
    assert cat.apis["in-image"].spec_problem() is None
    assert cat.apis["on-disk"].spec_in_image is None and cat.apis["on-disk"].spec_problem() is None
    assert cat.apis["both"].spec_problem() is None
    problem = cat.apis["neither"].spec_problem()
    assert problem is not None
    assert "API neither: spec file" in problem and "neither-openapi.json missing" in problem
    assert "'spec'" in problem and "'spec_in_image'" in problem  # both ways out are named


def test_spec_in_image_must_be_an_absolute_path_string(tmp_path: Path):
    api_folder(tmp_path, "relative", 'spec_in_image = "api/spec.json"\n')
    api_folder(tmp_path, "number", "spec_in_image = 3\n")
    cat = catalog.load(tmp_path)
    text = "\n".join(cat.problems)
    assert "spec_in_image must be an absolute path, got 'api/spec.json'" in text
    assert "spec_in_image must be a string, got 3" in text
    # a bad value is not taken: the spec then counts as missing, which validation reports too
    assert cat.apis["relative"].spec_in_image is None and cat.apis["relative"].spec_problem()


def test_a_broken_api_toml_stops_only_batches_that_use_that_api(tmp_path: Path):
    from remote_runner.batch.settings import MachineFacts, Settings, validate

    for name, toml in (("good", 'readiness_path = "/"\n'), ("broken", "readiness_path = [unclosed\n")):
        folder = tmp_path / "apis" / name
        folder.mkdir(parents=True)
        (folder / "Dockerfile").write_text("FROM scratch\n")
        (folder / "api.toml").write_text(toml)
    (tmp_path / "tools" / "t").mkdir(parents=True)
    (tmp_path / "tools" / "t" / "Dockerfile").write_text("FROM scratch\n")
    cat = catalog.load(tmp_path)
    stopping, warnings = cat.split_problems(("good",), ("t",))
    assert stopping == []
    assert len(warnings) == 1 and "broken/api.toml: cannot be read as TOML" in warnings[0]
    assert "not used by this batch" in warnings[0]
    stopping, warnings = cat.split_problems(("good", "broken"), ("t",))
    assert len(stopping) == 1 and "broken/api.toml" in stopping[0] and warnings == []
    machine = MachineFacts(cpus=2, memory_bytes=8 * 1024**3)
    settings = Settings(catalog=tmp_path, results=tmp_path / "results", apis=("good",), tools=("t",))
    _, problems = validate(settings, cat, machine)
    assert not [p for p in problems if "apis/broken" in p], problems
    _, problems = validate(Settings(catalog=tmp_path, results=tmp_path / "results"), cat, machine)
    assert [p for p in problems if "broken/api.toml" in p], problems  # all APIs: the broken one is used
