"""Presets expand to the settings docs/runner.md documents; flags and config keys override them and
the protocol block says what was overridden; the shuffled order is seeded and kept on resume."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from remote_runner.batch import driver, plan, presets
from remote_runner.batch import settings as schema
from remote_runner.batch.settings import Settings, merge
from remote_runner.experiment.run_key import RunKey

DOCS = Path(__file__).resolve().parents[2] / "docs" / "runner.md"
GIB = 1024**3


def documented() -> dict[str, dict[str, object]]:
    """preset -> setting -> value, from the table under "Presets" in docs/runner.md."""
    out: dict[str, dict[str, object]] = {}
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        m = re.fullmatch(r"\| `([a-z0-9-]+)` \| `([a-z_]+)` \| `(.*)` \|", line.strip())
        if m and m.group(1) in presets.PRESETS:
            out.setdefault(m.group(1), {})[m.group(2)] = m.group(3)
    return out


def test_the_docs_table_is_every_preset_setting() -> None:
    table = documented()
    assert set(table) == set(presets.PRESETS)
    for name, preset in presets.PRESETS.items():
        assert set(table[name]) == set(preset.settings), name
        for key, text in table[name].items():
            value = text if key == "memory_per_container" else json.loads(str(text))
            reader = schema.setting(key).read
            assert reader(value) == reader(preset.settings[key]), (name, key)


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_each_preset_expands_to_its_documented_settings(name: str) -> None:
    settings, problems = merge({}, {"preset": name})
    assert problems == []
    assert settings.preset == name
    for key, text in documented()[name].items():
        value = text if key == "memory_per_container" else json.loads(str(text))
        assert getattr(settings, key) == schema.setting(key).read(value), key
    block = presets.protocol(settings)
    assert block["preset"] == name and block["overridden"] == {}
    assert block["versions"] and all(v["why"] for v in block["versions"])


def test_restgym_is_restgyms_protocol() -> None:
    settings, _ = merge({"preset": "restgym"}, {})
    assert (settings.runs, settings.budget_seconds) == (10, 3600.0)
    assert (settings.cpus_per_container, settings.memory_per_container) == (8.0, 16 * GIB)
    assert settings.shuffle is True
    assert settings.env_by_tool == {
        "schemathesis": {"SCHEMATHESIS_WORKERS": "1", "SCHEMATHESIS_ARGS": "--max-examples 1500 --no-shrink"}
    }
    fse, _ = merge({}, {"preset": "llamaresttest-fse25"})
    assert fse.tools == ("llamaresttest", "arat-rl", "evomaster-bb", "schemathesis")
    assert (fse.runs, fse.budget_seconds, fse.shuffle) == (10, 3600.0, True)
    # what the preset does not set keeps the runner's default
    assert fse.cpus_per_container == Settings().cpus_per_container


def test_flags_and_config_override_a_preset_and_the_protocol_records_it() -> None:
    settings, problems = merge(
        {"preset": "restgym", "budget_seconds": "10m"}, {"runs": "2", "memory_per_container": "512m"}
    )
    assert problems == []
    assert (settings.runs, settings.budget_seconds, settings.memory_per_container) == (2, 600.0, 512 << 20)
    assert settings.cpus_per_container == 8.0  # not overridden: the preset's
    block = presets.protocol(settings)
    assert block["overridden"] == {
        "runs": {"preset": 10, "used": 2},
        "budget_seconds": {"preset": 3600.0, "used": 600.0},
        "memory_per_container": {"preset": 16 * GIB, "used": 512 << 20},
    }
    # a flag's preset wins over the config file's
    other, _ = merge({"preset": "restgym"}, {"preset": "llamaresttest-fse25"})
    assert other.preset == "llamaresttest-fse25" and other.cpus_per_container == Settings().cpus_per_container


def test_an_unknown_preset_is_one_problem_naming_the_known_ones() -> None:
    settings, problems = merge({"preset": "fuzzbench"}, {})
    assert problems == ["preset: unknown preset 'fuzzbench'; known: llamaresttest-fse25, restgym"]
    assert settings.preset is None and settings.runs == 1


def test_shuffled_order_is_seeded_and_keeps_repetitions_in_order() -> None:
    apis, tools = ("a", "b", "c", "d"), ("x", "y", "z")
    fixed = plan.expand(apis, tools, 3)
    one = plan.expand(apis, tools, 3, shuffle_seed=7)
    assert one == plan.expand(apis, tools, 3, shuffle_seed=7)  # the same seed, the same order
    assert one != plan.expand(apis, tools, 3, shuffle_seed=8) and one != fixed
    assert sorted(one) == sorted(fixed)  # the same runs
    assert [k.repetition for k in one] == sorted(k.repetition for k in one)
    first = [k for k in one if k.repetition == 1]
    assert first != [k for k in fixed if k.repetition == 1]  # repetition 1 is shuffled too
    key = RunKey(2, "a", "x")
    assert plan.run_seed(7, key) == plan.run_seed(7, key) != plan.run_seed(7, RunKey(3, "a", "x"))
    assert 0 <= plan.run_seed(7, key) < 2**31


def test_plan_json_records_order_seeds_and_protocol_and_a_resume_keeps_them(tmp_path: Path) -> None:
    settings, _ = merge(
        {}, {"preset": "restgym", "runs": "2", "seed": "12345", "apis": "a,b", "tools": "x,y"}
    )
    keys = plan.expand(settings.apis, settings.tools, settings.runs, settings.seed)
    plan.write(tmp_path, keys, settings.to_json(), presets.protocol(settings))
    data = json.loads((tmp_path / "plan.json").read_text())
    assert data["protocol"]["preset"] == "restgym" and data["protocol"]["shuffle_seed"] == 12345
    assert data["protocol"]["overridden"] == {"runs": {"preset": 10, "used": 2}}
    assert [r["order"] for r in data["runs"]] == list(range(len(keys)))
    assert [r["seed"] for r in data["runs"]] == [plan.run_seed(12345, k) for k in keys]
    # a resume reads the order back, and the stored settings (seed and preset included) win over today's
    again, stored = plan.read(tmp_path)
    assert again == keys
    today, _ = merge({}, {"seed": "1", "runs": "5", "preset": "llamaresttest-fse25"})
    resumed = driver.stored_settings(tmp_path, today)
    assert (resumed.seed, resumed.runs, resumed.preset, resumed.shuffle) == (12345, 2, "restgym", True)
    assert stored["seed"] == 12345
