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
    res = execute(
        ["docker", "build", "--no-cache", "-t", f"llamaresttest/api-{api}", f"apis/{api}"],
        cwd=ROOT,
        timeout=300,
    )
    return res.ok, res.output


def test_a_complete_standin_passes_the_self_check(infrastructure: str, tmp_path: Path) -> None:
    standin(tmp_path, "ncs", "server.port=8080\n")
    ok, output = build_api("ncs")
    assert ok, output[-3000:]
    assert "self-check of the ncs image: everything the recording layer needs is there" in output
    res = execute(["docker", "run", "--rm", "--entrypoint", "ls", "llamaresttest/api-ncs", "/specifications"])
    assert sorted(res.output.split()) == ["ncs-openapi.json", "ncs.yaml"]
    smoke_run_of_the_built_image("ncs", tmp_path / "smoke")


def smoke_run_of_the_built_image(api: str, results: Path) -> None:
    """The built image runs like on the VM (supervisor, proxy, agent, sampler) and passes the
    preflight's checks: a request recorded through the proxy, a coverage sample with classes."""
    import time
    import urllib.request

    from remote_runner import preflight

    results.mkdir()
    name, net = f"i9-standin-{api}", f"i9-standin-{api}-net"
    execute(["docker", "rm", "-f", name])
    execute(["docker", "network", "rm", net])
    assert execute(["docker", "network", "create", net]).ok
    try:
        run = execute(
            [
                "docker",
                "run",
                "-d",
                "--name",
                name,
                "--network",
                net,
                "--cpus",
                "0.5",
                "--memory",
                "512m",
                "-e",
                "COVERAGE_INTERVAL=1",
                "-v",
                f"{results}:/results",
                f"llamaresttest/api-{api}",
            ]
        )
        assert run.ok, run.tail()
        ip = execute(
            ["docker", "inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{net}").IPAddress}}}}', name]
        )
        url = f"http://{ip.output.strip()}:9090/api/triangle/3/4/5"
        answered = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not answered:
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    answered = resp.status == 200
            except OSError:
                time.sleep(0.5)
        assert answered, execute(["docker", "logs", name]).tail(30)
        time.sleep(3)  # a coverage sample or two
        assert execute(["docker", "stop", "-t", "10", name]).ok
        (results / "logs").mkdir()
        (results / "logs" / "api.log").write_text(execute(["docker", "logs", name]).output)
        evidence = preflight.read_evidence(results, "succeeded", None)
        assert preflight.judge(evidence) is None, (evidence, evidence.log_tail)
        assert evidence.requests is not None and evidence.requests >= 1
    finally:
        execute(["docker", "rm", "-f", name])
        execute(["docker", "network", "rm", net])


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
