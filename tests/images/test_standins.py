"""The 11 benchmark API Dockerfiles, unchanged, built against stand-ins for the published images
(tests/images/standin/: one shared base with Debian's MariaDB and a mongod stand-in, a thin layer per
API, tagged restgym/<api>-api:1.0.0 locally, with the real specs from ../shared/benchmark-specs and
an application.properties configured the way the real jar's is): the build-time self-check passes on
every complete stand-in and fails the build with one message naming everything missing on an
incomplete one. test_standin_batch.py then runs them through the runner."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from remote_runner.common.process import execute
from tests.images.standin_images import APIS, INFRASTRUCTURE, SPECS, build_api, standin

pytestmark = [pytest.mark.docker]


@pytest.mark.parametrize("api", APIS)
def test_every_api_dockerfile_builds_on_its_standin_and_passes_the_self_check(
    benchmark_images: dict[str, str], api: str
) -> None:
    output = benchmark_images[api]
    assert f"self-check of the {api} image: everything the recording layer needs is there" in output
    res = execute(
        ["docker", "run", "--rm", "--entrypoint", "ls", f"llamaresttest/api-{api}", "/specifications"]
    )
    assert sorted(res.output.split()) == [f"{api}-openapi.json", f"{api}.yaml"]
    real = hashlib.sha256((SPECS / f"{api}-openapi.json").read_bytes()).hexdigest()
    inside = execute(
        [
            "docker",
            "run",
            "--rm",
            "--entrypoint",
            "sha256sum",
            f"llamaresttest/api-{api}",
            f"/specifications/{api}-openapi.json",
        ]
    )
    assert inside.ok and inside.output.split()[0] == real, f"{api}: the image's spec is not the benchmark's"


def test_the_ncs_image_runs_like_on_the_vm(benchmark_images: dict[str, str], tmp_path: Path) -> None:
    smoke_run_of_the_built_image("ncs", tmp_path / "smoke")


def smoke_run_of_the_built_image(api: str, results: Path) -> None:
    """The built image runs like on the VM (supervisor, proxy, agent, sampler) and passes the
    preflight's checks: a request recorded through the proxy, a coverage sample with classes."""
    import time
    import urllib.request

    from remote_runner.experiment import preflight

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
    benchmark_images: dict[str, str], tmp_path: Path
) -> None:
    try:
        standin(tmp_path, "ncs", omit="classes specifications/ncs.yaml")
        ok, output = build_api("ncs")
        assert not ok
        assert "self-check of the ncs image FAILED, 2 problem(s)" in output, output[-3000:]
        assert "the classes folder /api/classes (COVERAGE_CLASSES) is missing" in output
        assert "the spec /api/specifications/ncs.yaml is missing or empty" in output
    finally:  # the complete stand-in back, for the tests that use the built images
        standin(tmp_path / "again", "ncs")
        assert build_api("ncs")[0]


def test_a_database_api_checks_its_database_program_and_the_jars_config(
    benchmark_images: dict[str, str], tmp_path: Path
) -> None:
    # no mongod in the image (the bare infrastructure base), and configured like the real jar
    # except for the port: our sidecar listens on 27019
    try:
        standin(
            tmp_path,
            "person-controller",
            "spring.data.mongodb.uri=mongodb://localhost:27017/person\n",
            base=INFRASTRUCTURE,
        )
        ok, output = build_api("person-controller")
        assert not ok
        assert "self-check of the person-controller image FAILED, 2 problem(s)" in output, output[-3000:]
        assert "sidecar mongodb: mongod is not in the image" in output
        assert "contains '27019'" in output
    finally:
        standin(tmp_path / "again", "person-controller")
        assert build_api("person-controller")[0]
