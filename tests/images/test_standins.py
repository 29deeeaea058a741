"""The 11 benchmark API Dockerfiles, unchanged, built against stand-ins for the published images
(tests/images/standin/: one shared base with Debian's MariaDB and a mongod stand-in, a thin layer per
API, tagged restgym/<api>-api:1.0.0 locally, with the real specs from ../shared/benchmark-specs and
an application.properties configured the way the real jar's is): the build-time self-check passes on
every complete stand-in and fails the build with one message naming everything missing on an
incomplete one. test_standin_batch.py then runs them through the runner."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from remote_runner.process import execute

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT.parent / "shared" / "benchmark-specs"
STANDIN = ROOT / "tests" / "images" / "standin"
STANDIN_BASE = "llamaresttest-test/standin-base"
INFRASTRUCTURE = "llamaresttest/infrastructure"
pytestmark = [pytest.mark.docker]

# How each real jar is configured (the facts behind the API Dockerfiles, docs/images.md: SeUniVr/
# RESTgym@56a9300 apis/<api>/classes/application.properties). The stand-in service reads its port
# and its database URL from here, as the jar does; the property spelling of the MongoDB port for
# person-controller is ours (the self-check looks for "27019" only).
PROPERTIES = {
    "blog": "server.port=8080\n"
    "spring.datasource.url=jdbc:mysql://localhost:3307/blogapi?useSSL=false\n"
    "spring.datasource.username=blog\nspring.datasource.password=blog\n",
    "features-service": "server.port=8080\n",
    "genome-nexus": "server.port=8080\nspring.data.mongodb.uri=mongodb://c-net.ddns.net:27017/annotator\n",
    "languagetool": "server.port=8081\n",
    "market": "server.port=8080\n",
    "ncs": "server.port=8080\n",
    "person-controller": "server.port=8080\nspring.data.mongodb.uri=mongodb://localhost:27019/person\n",
    "project-tracking-system": "server.port=8080\nspring.profiles.active=dev\n",
    "restcountries": "server.port=8080\n",
    "scs": "server.port=8080\n",
    "user-management": "server.port=8080\n"
    "spring.datasource.url=jdbc:mysql://localhost:3306/users?useSSL=false\n"
    "spring.datasource.username=root\nspring.datasource.password=root\n"
    "spring.datasource.initialization-mode=always\n",
}
APIS = sorted(PROPERTIES)
# Database files the stand-in carries in /api/database/ (ours: the real blogapi.sql is the
# benchmark's data, not in the repository).
DATABASE = {"blog": {"blogapi.sql": "CREATE TABLE standin_post (id INT PRIMARY KEY, title VARCHAR(80));\n"}}


def build_standin_base() -> str:
    """The infrastructure image and the shared stand-in base (cached after the first build)."""
    for tag, context in ((INFRASTRUCTURE, ROOT / "infrastructure"), (STANDIN_BASE, STANDIN / "base")):
        res = execute(["docker", "build", "-q", "-t", tag, str(context)], timeout=900)
        assert res.ok, f"building {tag} failed:\n{res.tail(30)}"
    return STANDIN_BASE


def standin(
    tmp: Path,
    api: str,
    properties: str | None = None,
    omit: str = "",
    base: str = STANDIN_BASE,
) -> str:
    """Builds a stand-in for restgym/<api>-api:1.0.0 and returns its tag."""
    context = tmp / f"standin-{api}"
    context.mkdir(parents=True)
    shutil.copy(STANDIN / "Dockerfile", context / "Dockerfile")
    shutil.copy(STANDIN / "base" / "StandIn.java", context / "StandIn.java")
    (context / "specifications").mkdir()
    for name in (f"{api}-openapi.json", f"{api}.yaml"):
        shutil.copy(SPECS / name, context / "specifications" / name)
    (context / "database").mkdir()
    (context / "database" / "README").write_text("stand-in database files\n")
    for name, text in DATABASE.get(api, {}).items():
        (context / "database" / name).write_text(text)
    (context / "application.properties").write_text(PROPERTIES[api] if properties is None else properties)
    tag = f"restgym/{api}-api:1.0.0"
    args = ["--build-arg", f"API={api}", "--build-arg", f"OMIT={omit}", "--build-arg", f"BASE={base}"]
    res = execute(["docker", "build", "-q", "-t", tag, *args, str(context)], timeout=300)
    assert res.ok, res.tail(30)
    return tag


def build_api(api: str) -> tuple[bool, str]:
    """The API's own Dockerfile, unchanged; --no-cache so the self-check really runs."""
    res = execute(
        ["docker", "build", "--no-cache", "-t", f"llamaresttest/api-{api}", f"apis/{api}"],
        cwd=ROOT,
        timeout=300,
    )
    return res.ok, res.output


def build_all_standins(tmp: Path) -> dict[str, str]:
    """Every API image built on its stand-in: api -> the build output (asserted to pass)."""
    build_standin_base()
    outputs: dict[str, str] = {}
    for api in APIS:
        standin(tmp, api)
        ok, output = build_api(api)
        assert ok, f"{api}: {output[-3000:]}"
        outputs[api] = output
    return outputs


@pytest.fixture(scope="session")
def benchmark_images(docker_engine: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return build_all_standins(tmp_path_factory.mktemp("standins"))


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
