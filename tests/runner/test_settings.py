from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from remote_runner import catalog
from remote_runner.settings import (
    MachineFacts,
    Settings,
    Upload,
    load_config,
    merge,
    parse_duration,
    parse_memory,
    validate,
)
from tests.runner.conftest import CATALOG

GIB = 1024**3


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("10m", 600), ("1h", 3600), ("90", 90), (120, 120), ("1.5h", 5400)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-5", "0", "10d", True])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_memory_sizes():
    assert parse_memory("16g") == 16 * GIB and parse_memory("512M") == 512 * 1024**2
    with pytest.raises(ValueError):
        parse_memory("1k")  # below Docker's minimum
    with pytest.raises(ValueError):
        parse_memory("lots")


def test_defaults_then_config_then_flags():
    config = {
        "runs": 3,
        "budget_seconds": 600,
        "tools": ["llamaresttest"],
        "apis": "blog,scs",
        "upload": {"bucket": "b", "path": "p/"},
        "batch": "batch-x",
    }
    settings, problems = merge(config, {"runs": "5", "budget_seconds": None, "batch": None})
    assert problems == []
    assert settings.runs == 5  # flag wins
    assert settings.budget_seconds == 600  # config wins over default
    assert settings.cpus_per_container == 8 and settings.memory_per_container == "16g"  # defaults
    assert settings.apis == ("blog", "scs") and settings.tools == ("llamaresttest",)
    assert settings.upload == Upload("b", "p")
    assert settings.batch == "batch-x" and not settings.batch_must_exist  # config: create or resume
    flagged, _ = merge({}, {"batch": "batch-x"})
    assert flagged.batch_must_exist  # --batch: resume only


def test_every_problem_is_reported_at_once():
    _, problems = merge(
        {
            "runs": 0,
            "budget_seconds": "soon",
            "memory_per_container": "x",
            "colour": "blue",
            "upload": {"b": 1},
            "shutdown_when_done": "yes",
        },
        {"max_attempts": "-1"},
    )
    text = "\n".join(problems)
    for part in (
        "runs:",
        "budget_seconds:",
        "memory_per_container:",
        "unknown setting 'colour'",
        "upload:",
        "shutdown_when_done:",
        "max_attempts:",
    ):
        assert part in text
    assert len(problems) == 7


def test_config_file_problems(tmp_path: Path):
    assert load_config(tmp_path / "none.json")[1] == [f"--config {tmp_path / 'none.json'}: no such file"]
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert "not valid JSON" in load_config(bad)[1][0]
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"runs": 2}))
    assert load_config(good) == ({"runs": 2}, [])


def test_validate_against_catalog_and_machine(tmp_path: Path):
    cat = catalog.load(CATALOG)
    blocker = tmp_path / "file"
    blocker.write_text("")
    settings = Settings(
        results=blocker / "r",
        apis=("fx-echo", "ghost"),
        tools=("fx-good",),
        cpus_per_container=8,
        memory_per_container="16g",
        min_free_cpus=14,
    )
    _, problems = validate(
        settings, cat, MachineFacts(cpus=2, memory_bytes=24 * GIB, docker_problem="no engine")
    )
    text = "\n".join(problems)
    assert "unknown API 'ghost'; known: fx-echo, fx-never-ready, fx-spec-in-image" in text
    assert "an experiment needs 16 CPUs" in text and "has 2" in text
    assert "an experiment needs 32.0 GiB" in text
    assert "--min-free-cpus 14 exceeds" in text
    assert "not writable" in text and "no engine" in text
    ok = Settings(
        results=tmp_path / "r", cpus_per_container=0.5, memory_per_container="256m", min_free_cpus=0
    )
    selection, problems = validate(ok, cat, MachineFacts(cpus=2, memory_bytes=24 * GIB))
    assert problems == []
    assert selection.apis == ("fx-echo", "fx-never-ready", "fx-spec-in-image") and selection.tools == (
        "fx-crash",
        "fx-good",
        "fx-hog",
    )


def test_validation_refuses_a_spec_found_neither_on_disk_nor_in_the_image(tmp_path: Path):
    for name, toml in (("with-image", 'spec_in_image = "/spec.json"\n'), ("without", "")):
        folder = tmp_path / "catalog" / "apis" / name
        folder.mkdir(parents=True)
        (folder / "Dockerfile").write_text("FROM x\n")
        (folder / "api.toml").write_text(toml)
    tool = tmp_path / "catalog" / "tools" / "t"
    tool.mkdir(parents=True)
    (tool / "Dockerfile").write_text("FROM x\n")
    cat = catalog.load(tmp_path / "catalog")
    base = Settings(
        results=tmp_path / "r", cpus_per_container=0.5, memory_per_container="256m", min_free_cpus=0
    )
    facts = MachineFacts(cpus=2, memory_bytes=24 * GIB)
    _, problems = validate(replace(base, apis=("with-image",)), cat, facts)
    assert problems == []
    _, problems = validate(base, cat, facts)
    assert len(problems) == 1
    assert problems[0].startswith("API without: spec file ") and "spec_in_image" in problems[0]


def test_settings_json_round_trip():
    s = Settings(apis=("a",), upload=Upload("b"), labels=(("k", "v"),))
    again, problems = merge({k: v for k, v in s.to_json().items() if k != "batch_must_exist"}, {})
    assert problems == [] and again == s
