"""Stand-ins for the published restgym/<api>-api:1.0.0 images (image tests only): how each is
configured, and the builds of the stand-ins and of the unchanged API Dockerfiles on them. Used by
test_standins.py and test_standin_batch.py through the ``benchmark_images`` fixture (conftest.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from remote_runner.common.process import execute

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT.parent / "shared" / "benchmark-specs"
STANDIN = ROOT / "tests" / "images" / "standin"
STANDIN_BASE = "llamaresttest-test/standin-base"
INFRASTRUCTURE = "llamaresttest/infrastructure"

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
