from __future__ import annotations

import argparse
import json
from dataclasses import fields, replace
from pathlib import Path

import pytest

from remote_runner import cli
from remote_runner.batch import driver
from remote_runner.batch import settings as schema
from remote_runner.batch.settings import (
    MachineFacts,
    Settings,
    Upload,
    format_size,
    load_config,
    merge,
    parse_duration,
    parse_memory,
    validate,
)
from remote_runner.experiment import catalog
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
    assert settings.cpus_per_container == 8 and settings.memory_per_container == 16 * GIB  # defaults
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
        memory_per_container=16 * GIB,
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
        results=tmp_path / "r", cpus_per_container=0.5, memory_per_container=256 * 1024**2, min_free_cpus=0
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
        results=tmp_path / "r", cpus_per_container=0.5, memory_per_container=256 * 1024**2, min_free_cpus=0
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


# --- the schema: one definition of every setting -----------------------------------------------------
DOCS = Path(__file__).resolve().parents[2] / "docs" / "runner.md"


def test_the_dataclass_and_the_table_define_the_same_settings():
    names = [k.name for k in schema.KEYS]
    assert len(names) == len(set(names)), "a setting is defined twice"
    assert [f.name for f in fields(Settings) if f.name not in schema.DERIVED_FIELDS] == names
    assert set(names) == schema.CONFIG_KEYS and not schema.CONFIG_KEYS & set(schema.DERIVED_FIELDS)
    defaults = Settings()
    for key in schema.KEYS:
        assert getattr(defaults, key.name) == key.default, key.name
        # what --help and the docs show as the default is the default
        if key.shown is not None and key.default is not None and not isinstance(key.default, tuple):
            assert key.read(key.shown) == key.default, key.name
        # every default survives the JSON it is written as
        assert key.read(json.loads(json.dumps(Settings().to_json()[key.name]))) == key.default, key.name
    assert schema.RESUMABLE_KEYS == driver.RESUMABLE_KEYS
    assert "memory_per_container" in schema.RESUMABLE_KEYS and "ray" not in schema.RESUMABLE_KEYS
    assert schema.PATH_KEYS == ("catalog", "results", "models_dir")


def test_sizes_are_bytes_whatever_notation_they_came_in():
    settings, problems = merge({"memory_per_container": "16g", "min_free_disk": "500m"}, {})
    assert problems == [] and (settings.memory_per_container, settings.min_free_disk) == (16 * GIB, 500 << 20)
    flagged, _ = merge(
        {"memory_per_container": "16g"}, {"memory_per_container": "512m", "min_free_disk": "0"}
    )
    assert (flagged.memory_bytes, flagged.min_free_disk_bytes) == (512 << 20, 0)
    plain, _ = merge({"memory_per_container": 1 << 30, "min_free_disk": 0}, {})
    assert plain.to_json()["memory_per_container"] == 1 << 30 and plain.to_json()["min_free_disk"] == 0
    assert Settings().to_json()["memory_per_container"] == 16 * GIB  # written as bytes
    _, problems = merge({"memory_per_container": 1 << 20, "min_free_disk": -1}, {})
    assert problems == [
        "memory_per_container: memory size 1048576 is below Docker's minimum of 6m",
        "min_free_disk: size -1 is negative",
    ]
    assert [format_size(n) for n in (16 * GIB, 1536 << 20, 0, 1000)] == ["16g", "1536m", "0", "1000"]


def test_a_batch_planned_before_sizes_were_bytes_still_resumes(tmp_path: Path):
    """plan.json as a runner before this change wrote it: sizes in Docker's notation."""
    (tmp_path / "plan.json").write_text(
        '{"settings": {"catalog": ".", "apis": ["blog"], "tools": ["fx-good"], "runs": 2, '
        '"budget_seconds": 600.0, "cpus_per_container": 4.0, "memory_per_container": "16g", '
        '"min_free_cpus": 0.0, "min_free_disk": "1g", "stop_grace_seconds": 10.0, '
        '"coverage_interval": 5.0, "models_dir": "/opt/llamaresttest/models", "batch_must_exist": false}, '
        '"runs": [{"api": "blog", "tool": "fx-good", "repetition": 1, "dir": "blog/fx-good/run-1"}]}'
    )
    current, _ = merge({}, {"memory_per_container": "2g", "runs": "5", "ray": "auto"})
    stored = driver.stored_settings(tmp_path, current)
    assert (stored.memory_bytes, stored.runs, stored.cpus_per_container) == (16 * GIB, 2, 4.0)
    assert stored.ray == "auto"  # not resumable: a batch may go on on another cluster
    assert stored.min_free_disk == current.min_free_disk  # not resumable either: today's value


@pytest.mark.parametrize("address", ["auto", "10.128.0.2:6379", "head.internal:6380", "[::1]:6379"])
def test_ray_addresses(address):
    settings, problems = merge({"ray": address}, {})
    assert problems == [] and settings.ray == address


@pytest.mark.parametrize(
    ("address", "fix"),
    [
        ("ray://10.0.0.2:10001", "has a scheme; give the head's HOST:PORT alone, e.g. '10.0.0.2:10001'"),
        ("10.0.0.2", "has no port; give the head's GCS port too, e.g. '10.0.0.2:6379'"),
        ("head:99999", "the port must be 1-65535"),
        ("", "expected auto or HOST:PORT"),
        (6379, "expected auto or HOST:PORT"),
    ],
)
def test_bad_ray_addresses_say_how_to_fix_them(address, fix):
    settings, problems = merge({}, {"ray": address})
    assert len(problems) == 1 and problems[0].startswith("ray: ") and fix in problems[0]
    assert settings.ray is None


@pytest.mark.parametrize(
    "prefix",
    [
        "127.0.0.1:5000/llamaresttest",
        "us-central1-docker.pkg.dev/my-project/my-repo",
        "localhost:5000",
        "lab",
    ],
)
def test_registry_prefixes(prefix):
    settings, problems = merge({"registry": prefix}, {})
    assert problems == [] and settings.registry == prefix


@pytest.mark.parametrize(
    ("prefix", "fix"),
    [
        ("https://127.0.0.1:5000/x", "has a scheme; image names have none: use '127.0.0.1:5000/x'"),
        ("127.0.0.1:5000/llamaresttest/", "ends with '/'; the image name is appended with one: use "),
        ("us-central1-docker.pkg.dev/My-Project/repo", "repository paths are lower case"),
        ("reg istry.io/x", "is not an image registry prefix"),
        ("", "leave it out for none"),
    ],
)
def test_bad_registry_prefixes_say_how_to_fix_them(prefix, fix):
    _, problems = merge({"registry": prefix}, {})
    assert len(problems) == 1 and problems[0].startswith("registry: ") and fix in problems[0]


def _run_args(*argv: str) -> argparse.Namespace:
    return cli._parser().parse_args(["run", *argv])


def test_run_flags_come_from_the_table(tmp_path: Path):
    config = tmp_path / "experiment.json"
    config.write_text(json.dumps({"catalog": "cat", "labels": {"team": "a"}, "build": True, "runs": 2}))
    args = _run_args(
        "--config", str(config), "--budget", "10m", "--memory-per-container", "512m", "--no-build",
        "--no-preflight", "--skip-broken-apis", "--label", "x=1", "--label", "team=b", "--stop-grace", "5",
        "--engine-wait", "30", "--ray", "auto", "--registry", "127.0.0.1:5000/t",
    )  # fmt: skip
    settings, problems = cli._settings_from(args)
    assert problems == []
    assert settings.catalog == tmp_path / "cat"  # relative to the config file's folder
    assert (settings.budget_seconds, settings.memory_per_container, settings.runs) == (600, 512 << 20, 2)
    assert (settings.build, settings.preflight, settings.skip_broken_apis) == (False, False, True)
    assert settings.labels == (("team", "b"), ("x", "1"))  # the flags over the file's labels
    assert (settings.stop_grace_seconds, settings.engine_wait_seconds) == (5, 30)
    assert (settings.ray, settings.registry) == ("auto", "127.0.0.1:5000/t")
    untouched, _ = cli._settings_from(_run_args())
    assert (untouched.build, untouched.preflight, untouched.skip_broken_apis) == (True, True, False)
    _, problems = cli._settings_from(_run_args("--label", "novalue", "--ray", "x:1:2", "--stop-grace", "30"))
    assert [p.split(":", 1)[0] for p in problems] == ["--label 'novalue'", "stop_grace_seconds", "ray"]


def test_run_help_shows_every_flag_with_its_default(capsys):
    with pytest.raises(SystemExit):
        _run_args("--help")
    text = " ".join(capsys.readouterr().out.split())
    for key in schema.KEYS:
        if key.flag is None:
            assert f"--{key.name.replace('_', '-')} " not in text
            continue
        assert key.flag in text
        if key.kind == "value" and key.default_text is not None:
            assert f"{key.help} (default: {key.default_text})" in text, key.name
    assert "(default: 16g)" in text and "(default: 1h)" in text and "(default: 1g)" in text


def test_the_docs_table_lists_every_setting_with_its_flag_default_and_resume():
    rows = {}
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 5 and cells[1].startswith("`"):
            rows[cells[1].strip("`")] = cells
    assert set(rows) == schema.CONFIG_KEYS
    for key in schema.KEYS:
        flag, _, default, resume, _ = rows[key.name]
        wanted = (
            ""
            if key.flag is None
            else f"`{key.flag}`"
            if key.metavar is None
            else f"`{key.flag} {key.metavar}`"
        )
        assert flag == wanted, key.name
        assert (resume == "kept") == key.resumable, key.name
        if isinstance(key.default, int | float) and not isinstance(key.default, bool):
            assert f"`{key.shown}`" in default or f"`{key.default:g}`" in default, key.name
