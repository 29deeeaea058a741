"""The benchmark API Dockerfiles, unchanged, built against stand-ins for the published images (made
here from tests/images/standin/, tagged restgym/<api>-api:1.0.0 locally, with the real specs from
../shared/benchmark-specs): the build-time self-check passes on a complete stand-in and fails the
build with one message naming everything missing on an incomplete one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from remote_runner.process import execute

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT.parent / "shared" / "benchmark-specs"
pytestmark = [pytest.mark.docker]


def standin(tmp: Path, api: str, properties: str, omit: str = "") -> str:
    """Builds a stand-in for restgym/<api>-api:1.0.0 and returns its tag."""
    context = tmp / f"standin-{api}"
    shutil.copytree(ROOT / "tests" / "images" / "standin", context)
    (context / "specifications").mkdir()
    for name in (f"{api}-openapi.json", f"{api}.yaml"):
        shutil.copy(SPECS / name, context / "specifications" / name)
    (context / "application.properties").write_text(properties)
    tag = f"restgym/{api}-api:1.0.0"
    res = execute(
        [
            "docker",
            "build",
            "-q",
            "-t",
            tag,
            "--build-arg",
            f"API={api}",
            "--build-arg",
            f"OMIT={omit}",
            str(context),
        ],
        timeout=300,
    )
    assert res.ok, res.tail(30)
    return tag


@pytest.fixture(scope="module")
def infrastructure(docker_engine: str) -> str:
    res = execute(
        ["docker", "build", "-q", "-t", "llamaresttest/infrastructure", "infrastructure"],
        cwd=ROOT,
        timeout=900,
    )
    assert res.ok, res.tail(30)
    return "llamaresttest/infrastructure"


def build_api(api: str) -> tuple[bool, str]:
    res = execute(["docker", "build", "-t", f"llamaresttest/api-{api}", f"apis/{api}"], cwd=ROOT, timeout=300)
    return res.ok, res.output


def test_a_complete_standin_passes_the_self_check(infrastructure: str, tmp_path: Path) -> None:
    standin(tmp_path, "ncs", "server.port=8080\n")
    ok, output = build_api("ncs")
    assert ok, output[-3000:]
    assert "self-check of the ncs image: everything the recording layer needs is there" in output
    res = execute(["docker", "run", "--rm", "--entrypoint", "ls", "llamaresttest/api-ncs", "/specifications"])
    assert sorted(res.output.split()) == ["ncs-openapi.json", "ncs.yaml"]


def test_an_incomplete_standin_fails_the_build_naming_everything_missing(
    infrastructure: str, tmp_path: Path
) -> None:
    standin(tmp_path, "ncs", "server.port=8080\n", omit="classes specifications/ncs.yaml")
    ok, output = build_api("ncs")
    assert not ok
    assert "self-check of the ncs image FAILED, 2 problem(s)" in output, output[-3000:]
    assert "the classes folder /api/classes (COVERAGE_CLASSES) is missing" in output
    assert "the spec /api/specifications/ncs.yaml is missing or empty" in output


def test_a_database_api_checks_its_database_program_and_the_jars_config(
    infrastructure: str, tmp_path: Path
) -> None:
    # configured like the real jar except for the port: our sidecar listens on 27019
    standin(tmp_path, "person-controller", "spring.data.mongodb.uri=mongodb://localhost:27017/person\n")
    ok, output = build_api("person-controller")
    assert not ok
    assert "self-check of the person-controller image FAILED, 2 problem(s)" in output, output[-3000:]
    assert "sidecar mongodb: mongod is not in the image" in output
    assert "contains '27019'" in output
