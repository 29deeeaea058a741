"""The Pulumi project files and the docs agree with the code."""

from __future__ import annotations

import re

import yaml

from stacks.config import DEFAULTS, KNOWN_KEYS, NAMESPACE
from tests.pulumi.harness import ROOT


def test_project_file_names_the_namespace_and_the_virtualenv() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == NAMESPACE
    assert project["runtime"]["name"] == "python"
    assert project["runtime"]["options"]["virtualenv"] == ".venv"


def test_stack_files_use_only_known_keys() -> None:
    stack_files = sorted(ROOT.glob("Pulumi.*.yaml"))
    assert ROOT / "Pulumi.dev.yaml" in stack_files
    for path in stack_files:
        config = yaml.safe_load(path.read_text())["config"]
        ours = {k.split(":", 1)[1] for k in config if k.startswith(f"{NAMESPACE}:")}
        assert ours <= KNOWN_KEYS, (path.name, sorted(ours - KNOWN_KEYS))
        assert {k.split(":", 1)[0] for k in config} <= {NAMESPACE, "gcp"}, path.name
    dev = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    assert (dev["llamaresttest:machineType"], dev["gcp:zone"]) == ("n1-standard-32", "us-central1-a")


def test_docs_list_every_output() -> None:
    text = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `(\w+)` \|", text[text.index("## Outputs") :], flags=re.MULTILINE))
    exported = set(
        re.findall(r'^\s*pulumi\.export\(\s*"(\w+)"', (ROOT / "__main__.py").read_text(), flags=re.MULTILINE)
    )
    assert exported and documented == exported


def test_docs_list_every_key_with_its_default() -> None:
    text = (ROOT / "README.md").read_text()
    docs = text[text.index("## Config keys") : text.index("## Outputs")]
    rows = dict(re.findall(r"^\| `([A-Za-z:]+)` \| ([^|]+) \|", docs, flags=re.MULTILINE))
    assert set(rows) == KNOWN_KEYS | {"gcp:project", "gcp:zone", "gcp:region"}
    for key, default in DEFAULTS.items():
        if isinstance(default, bool | int | str) and default:
            assert f"`{str(default).lower() if isinstance(default, bool) else default}`" in rows[key], key
        elif default is False:
            assert "`false`" in rows[key], key
