"""The batch's copy of the specs (remote_runner.experiment.specs) without a Docker engine: copies from the
catalog, kept copies on resume, and the failure message. Copies out of a real image are covered by
test_integration.py (test_a_spec_found_only_in_the_image_*)."""

from __future__ import annotations

import functools
from pathlib import Path

from remote_runner.common.process import execute
from remote_runner.experiment import catalog, specs
from remote_runner.experiment.docker_runtime import Docker


def no_engine(tmp_path: Path) -> Docker:
    """A real docker client pointed at a socket where no engine listens: any call fails."""
    return Docker(functools.partial(execute, env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}))


def make_catalog(root: Path) -> catalog.Catalog:
    disk = root / "apis" / "disk"
    (disk / "specifications").mkdir(parents=True)
    (disk / "Dockerfile").write_text("FROM x\n")
    (disk / "specifications" / "disk-openapi.json").write_text('{"openapi": "3.0.0", "v": 1}')
    image = root / "apis" / "image"
    image.mkdir(parents=True)
    (image / "Dockerfile").write_text("FROM x\n")
    (image / "api.toml").write_text('spec_in_image = "/opt/spec/image-openapi.json"\n')
    cat = catalog.load(root)
    assert cat.problems == ()
    return cat


def test_a_catalog_spec_is_copied_into_the_batch_and_kept_on_resume(tmp_path: Path):
    cat = make_catalog(tmp_path / "catalog")
    batch = tmp_path / "results" / "batch-x"
    copies, problems = specs.collect(batch, cat, ["disk"], no_engine(tmp_path))
    target = batch / "specifications" / "disk" / "disk-openapi.json"
    assert problems == [] and copies == {"disk": target}
    assert target.read_text() == '{"openapi": "3.0.0", "v": 1}'
    # the catalog changes; resuming the batch keeps the spec it started with
    cat.apis["disk"].spec_path.write_text('{"openapi": "3.0.0", "v": 2}')
    again, problems = specs.collect(batch, cat, ["disk"], no_engine(tmp_path))
    assert problems == [] and again == {"disk": target}
    assert target.read_text() == '{"openapi": "3.0.0", "v": 1}'
    assert [p.name for p in target.parent.iterdir()] == ["disk-openapi.json"]  # no temporary left


def test_a_kept_copy_of_an_image_spec_needs_no_docker(tmp_path: Path):
    cat = make_catalog(tmp_path / "catalog")
    batch = tmp_path / "batch"
    kept = batch / "specifications" / "image" / "image-openapi.json"
    kept.parent.mkdir(parents=True)
    kept.write_text('{"openapi": "3.0.0"}')
    copies, problems = specs.collect(batch, cat, ["image", "disk"], no_engine(tmp_path))
    assert problems == []
    assert copies == {"image": kept, "disk": batch / "specifications" / "disk" / "disk-openapi.json"}


def test_a_failed_copy_out_of_the_image_names_the_api_the_image_and_the_path(tmp_path: Path):
    cat = make_catalog(tmp_path / "catalog")
    batch = tmp_path / "batch"
    copies, problems = specs.collect(batch, cat, ["disk", "image"], no_engine(tmp_path))
    assert list(copies) == ["disk"]
    assert len(problems) == 1
    assert problems[0].startswith(
        "API image: cannot copy its spec /opt/spec/image-openapi.json out of image llamaresttest/api-image: "
    )
    assert "docker create failed" in problems[0]
    assert list((batch / "specifications" / "image").iterdir()) == []  # nothing half-written kept


def test_an_api_with_no_spec_anywhere_is_a_problem(tmp_path: Path):
    root = tmp_path / "catalog"
    (root / "apis" / "bare").mkdir(parents=True)
    (root / "apis" / "bare" / "Dockerfile").write_text("FROM x\n")
    copies, problems = specs.collect(tmp_path / "batch", catalog.load(root), ["bare"], no_engine(tmp_path))
    assert copies == {} and len(problems) == 1 and "spec_in_image" in problems[0]


def test_swagger2_copy_own_file_or_conversion(tmp_path: Path) -> None:
    """A batch with a swagger2 tool keeps a Swagger 2 copy beside the OpenAPI 3 one: the API's own
    specifications/<api>.yaml when it is Swagger 2, else our conversion (restcountries' is OpenAPI 3)."""
    import json as _json

    import yaml as _yaml

    from remote_runner.experiment import catalog as _catalog
    from remote_runner.experiment import specs as _specs
    from remote_runner.experiment import swagger as _swagger

    real = Path(__file__).resolve().parents[3] / "shared" / "benchmark-specs"
    root = tmp_path / "catalog"
    for api in ("market", "restcountries"):
        folder = root / "apis" / api / "specifications"
        folder.mkdir(parents=True)
        (folder.parent / "Dockerfile").write_text("FROM scratch\n")
        (folder / f"{api}-openapi.json").write_text((real / f"{api}-openapi.json").read_text())
        (folder / f"{api}.yaml").write_text((real / f"{api}.yaml").read_text())
    cat = _catalog.load(root)
    batch = tmp_path / "batch"
    copies, problems = _specs.collect(
        batch, cat, ["market", "restcountries"], None, formats={"openapi3", "swagger2"}
    )  # type: ignore[arg-type]
    assert not problems, problems
    assert copies["market"].name == "market-openapi.json"
    own = _specs.copy_for(batch, "market", "swagger2")
    assert own is not None and own.name == "market.yaml"
    assert _swagger.is_swagger2(_yaml.safe_load(own.read_text()))
    converted = _specs.copy_for(batch, "restcountries", "swagger2")
    assert converted is not None and converted.name == "restcountries-swagger2.json"
    assert _json.loads(converted.read_text())["swagger"] == "2.0"
    assert _specs.kept_copy(_specs.spec_folder(batch, "restcountries")).name == "restcountries-openapi.json"
    only3 = tmp_path / "batch3"
    _specs.collect(only3, cat, ["market"], None, formats={"openapi3"})  # type: ignore[arg-type]
    assert _specs.copy_for(only3, "market", "swagger2") is None
