"""Issue 10 on the real engine: each tool gets the spec in the format it declares (a Swagger 2
conversion for ``spec_format = "swagger2"``, the OpenAPI 3 file by default), and an API whose name
is over 50 characters is reached by its tool through the short alias ``api`` (HOST) at BASE_URL,
which carries the spec's base path. One short batch of both tools against that API."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runner.conftest import (
    FIXTURES,
    cli,
    journal_rows,
    labelled,
    only_batch,
    read_json,
    runner_env,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

FORMATS = FIXTURES / "formats"
LONG_API = "fx-an-api-whose-name-is-longer-than-fifty-characters-alias"
TOOLS = ("fx-swagger2-reader", "fx-openapi3-reader")
IMAGES = [f"llamaresttest/api-{LONG_API}", *(f"llamaresttest/tool-{t}" for t in TOOLS)]


@pytest.fixture(scope="module")
def formats_catalog(fixture_images: Path) -> Iterator[Path]:
    """The formats catalog built by the runner on the session's base image; its images removed after."""
    built = cli("build", "--catalog", str(FORMATS), timeout=600)
    assert built.returncode == 0, f"runner build failed:\n{built.stdout}\n{built.stderr}"
    yield FORMATS
    subprocess.run(["docker", "rmi", "-f", *IMAGES], env=runner_env(), capture_output=True, check=False)


def test_each_tool_gets_its_spec_format_and_reaches_a_long_named_api_through_the_alias(
    formats_catalog, tmp_path, test_label
):
    assert len(LONG_API) > 50
    results = tmp_path / "results"
    res = cli(
        "run",
        "--no-preflight",
        "--catalog",
        str(formats_catalog),
        "--results",
        str(results),
        "--min-free-cpus",
        "0",
        "--label",
        test_label,
        "--no-build",
        "--apis",
        LONG_API,
        "--tools",
        ",".join(TOOLS),
        "--budget",
        "3s",
        "--cpus-per-container",
        "0.5",
        "--memory-per-container",
        "128m",
    )
    batch = only_batch(results)
    rows = journal_rows(batch)
    logs = {t: (batch / LONG_API / t / "run-1" / "logs" / "tool.log") for t in TOOLS}
    shown = "\n".join(f"--- {t}\n{p.read_text() if p.is_file() else '(no log)'}" for t, p in logs.items())
    assert res.returncode == 0, f"{res.stderr}\n{shown}"
    assert sorted((r["tool"], r["status"], r["attempts"]) for r in rows) == sorted(
        (t, "succeeded", 1) for t in TOOLS
    ), shown

    # the batch keeps the OpenAPI 3 copy and, for the swagger2 tool, our conversion of it
    openapi3 = batch / "specifications" / LONG_API / f"{LONG_API}-openapi.json"
    swagger2 = batch / "specifications" / LONG_API / "swagger2" / f"{LONG_API}-swagger2.json"
    assert json.loads(openapi3.read_text())["openapi"] == "3.0.3"
    converted = json.loads(swagger2.read_text())
    assert converted["swagger"] == "2.0" and converted["basePath"] == "/api/v1"

    swagger_log = logs["fx-swagger2-reader"].read_text()
    assert f"tool: swagger 2.0 ok (/specifications/{swagger2.name})" in swagger_log, swagger_log
    assert f"tool: API name of {len(LONG_API)} characters reached as HOST=api at http://api:9090/api/v1" in (
        swagger_log
    )
    assert "tool: first request answered" in swagger_log
    openapi_log = logs["fx-openapi3-reader"].read_text()
    assert f"tool: openapi 3 ok (/specifications/{openapi3.name})" in openapi_log, openapi_log

    for tool in TOOLS:
        run_dir = batch / LONG_API / tool / "run-1"
        meta = read_json(run_dir / "metadata.json")
        # the tool ran until the budget's end (a failed check exits 4, an unreachable API 5)
        assert meta["status"] == "succeeded" and meta["stopped_by"] == "budget", meta
        summary = read_json(run_dir / "summary.json")
        assert summary["tool_restarts"] == 0 and summary["tool_crashes"] == [], summary
        # the results code reads the OpenAPI 3 copy whatever the tool's format
        assert summary["spec"] == str(openapi3)
    assert labelled(test_label) == ([], [])
