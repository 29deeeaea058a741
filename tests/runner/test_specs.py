"""The batch's copy of the specs (remote_runner.specs) without a Docker engine: copies from the catalog,
kept copies on resume, and the failure message. Copies out of a real image are covered by
test_integration.py (test_a_spec_found_only_in_the_image_*)."""

from __future__ import annotations

import functools
from pathlib import Path

from remote_runner import catalog, specs
from remote_runner.docker_runtime import Docker
from remote_runner.process import execute


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
