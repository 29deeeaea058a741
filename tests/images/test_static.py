"""Static checks of every image folder, including the images that cannot be built here (the 11
benchmark APIs need Docker Hub; LlamaRestTest needs GitHub): Dockerfiles parse, everything they copy
exists, specs parse and name every operation, ports and metadata agree with the Dockerfiles, and
the runner's catalog reads the folders without a problem."""

from __future__ import annotations

import glob
import json
import re
import sys
import tomllib
from pathlib import Path

import pytest

from remote_runner.experiment import catalog
from stacks.config import BENCHMARK_APIS
from tests.images.dockerfile import Dockerfile, DockerfileError, Instruction, copy_sources, parse, parse_pairs

ROOT = Path(__file__).resolve().parents[2]
INFRA_IMAGE = "llamaresttest/infrastructure"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
BENCHMARK = set(BENCHMARK_APIS)  # the 11 services, as the stack's default batch names them
DEMO = "demo-shop"


def dockerfiles() -> list[Path]:
    return sorted(
        [
            ROOT / "infrastructure" / "Dockerfile",
            *(ROOT / "apis").glob("*/Dockerfile"),
            *(ROOT / "tools").glob("*/Dockerfile"),
        ]
    )


def tool_dirs() -> list[Path]:
    return sorted(p.parent for p in (ROOT / "tools").glob("*/Dockerfile"))


def api_dirs() -> list[Path]:
    return sorted(p.parent for p in (ROOT / "apis").glob("*/Dockerfile"))


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def toml(path: Path) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))


# --- the parser itself ----------------------------------------------------------------------------
def test_parser_rejects_what_docker_rejects(tmp_path: Path) -> None:
    bad = {
        "unknown": "FROM x\nRUNN echo\n",
        "no from": "RUN echo\n",
        "dangling continuation": "FROM x\nRUN echo \\\n",
        "bad env quotes": "FROM x\nENV A='open\n",
        "bad json": 'FROM x\nENTRYPOINT ["a", \n',
        "copy without destination": "FROM x\nCOPY onlyone\n",
        "bad from": "FROM x y z\n",
    }
    for name, text in bad.items():
        path = tmp_path / name.replace(" ", "_")
        path.write_text(text)
        with pytest.raises(DockerfileError):
            parse(path)


def test_parser_reads_continuations_pairs_and_stages(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(
        "# escape=\\\nARG V=1\nFROM a:1 AS one\nFROM b\n# comment\nENV X=1 \\\n    # inside\n"
        '    Y=\'{"k": [1]}\' Z="two words"\nCOPY --from=one /x /y\nEXPOSE 9090\n'
        'ENTRYPOINT ["python3", "s.py"]\n'
    )
    df = parse(path)
    assert [s.base for s in df.stages] == ["a:1", "b"]
    assert df.stages[0].name == "one"
    assert df.final.env() == {"X": "1", "Y": '{"k": [1]}', "Z": "two words"}
    copy = df.final.of("COPY")[0]
    assert copy.flags == {"from": "one"} and copy_sources(copy) == ["/x"]
    assert df.final.of("ENTRYPOINT")[0].json_form() == ["python3", "s.py"]


# --- every Dockerfile -------------------------------------------------------------------------------
@pytest.mark.parametrize("path", dockerfiles(), ids=rel)
def test_dockerfile_parses_and_copies_what_exists(path: Path) -> None:
    df = parse(path)
    context = path.parent
    stages = df.stage_names()
    for ins in df.instructions:
        if ins.keyword not in {"COPY", "ADD"}:
            continue
        source_stage = ins.flags.get("from")
        if source_stage is not None:
            assert source_stage in stages or ":" in source_stage or "/" in source_stage, (
                f"{rel(path)}:{ins.line}: COPY --from={source_stage} names no stage"
            )
            continue
        for source in copy_sources(ins):
            assert not source.startswith(("http://", "https://")), f"{rel(path)}:{ins.line}: no remote ADD"
            matches = glob.glob(str(context / source))
            assert matches, f"{rel(path)}:{ins.line}: {source} is not in the build context {rel(context)}"
    for ins in df.final.of("ENTRYPOINT") + df.final.of("CMD"):
        if ins.keyword == "ENTRYPOINT":
            assert ins.json_form() is not None, f"{rel(path)}:{ins.line}: ENTRYPOINT must be exec form"


def test_all_image_folders_are_there() -> None:
    names = {p.name for p in api_dirs()}
    assert names == BENCHMARK | {DEMO}
    assert {p.name for p in tool_dirs()} >= {"schemathesis", "llamaresttest"}


def test_infrastructure_image_is_debian_only_and_exec_form() -> None:
    df = parse(ROOT / "infrastructure" / "Dockerfile")
    assert [s.base for s in df.stages] == ["debian:bookworm-slim"]
    entry = df.final.of("ENTRYPOINT")[-1].json_form()
    assert entry == ["python3", "/opt/recording/supervisor.py"]
    assert "9090" in " ".join(i.args for i in df.final.of("EXPOSE"))
    run = " ".join(i.args for i in df.final.of("RUN"))
    for package in ("openjdk-17-jdk-headless", "libjacoco-java", "mitmproxy", "python3"):
        assert package in run


# --- API folders -------------------------------------------------------------------------------------
def api_config(folder: Path) -> tuple[dict, dict, Dockerfile, dict[str, str]]:
    meta = toml(folder / "api.toml")
    service = toml(folder / "service.toml")
    df = parse(folder / "Dockerfile")
    env = inherited_env(df)
    return meta, service, df, env


def inherited_env(df: Dockerfile) -> dict[str, str]:
    """The final stage's environment, on top of the infrastructure image's when built FROM it."""
    env: dict[str, str] = {}
    if df.final.base == INFRA_IMAGE:
        env.update(parse(ROOT / "infrastructure" / "Dockerfile").final.env())
    env.update(df.final.env())
    return env


def entrypoint(df: Dockerfile) -> list[str] | None:
    own = df.final.of("ENTRYPOINT")
    if own:
        return own[-1].json_form()
    if df.final.base == INFRA_IMAGE:
        return parse(ROOT / "infrastructure" / "Dockerfile").final.of("ENTRYPOINT")[-1].json_form()
    return None


@pytest.mark.parametrize("folder", api_dirs(), ids=lambda p: p.name)
def test_api_image_records_with_our_infrastructure(folder: Path) -> None:
    _, _, df, env = api_config(folder)
    assert entrypoint(df) == ["python3", "/opt/recording/supervisor.py"]
    if df.final.base != INFRA_IMAGE:
        # Layered on another base: the whole recording layer comes from our infrastructure stage.
        infra_stages = {s.name for s in df.stages if s.base == INFRA_IMAGE and s.name}
        copies = [i for i in df.final.of("COPY") if i.flags.get("from") in infra_stages]
        assert any(copy_sources(i) == ["/opt/recording"] for i in copies), "no COPY of /opt/recording"
        # The base's own (shell-form) CMD must not reach the supervisor as arguments.
        assert df.final.of("CMD") and df.final.of("CMD")[-1].json_form() == []
    exposed = " ".join(i.args for s in df.stages for i in s.of("EXPOSE"))
    if df.final.base == INFRA_IMAGE:
        infra = parse(ROOT / "infrastructure" / "Dockerfile")
        exposed += " " + " ".join(i.args for i in infra.final.of("EXPOSE"))
    assert "9090" in exposed.split()
    assert env.get("PROXY_PORT", "9090") == "9090"
    assert env.get("JACOCO_PORT", "12345") == "12345"
    assert env.get("API") == folder.name


@pytest.mark.parametrize("folder", api_dirs(), ids=lambda p: p.name)
def test_api_ports_and_metadata_agree(folder: Path) -> None:
    meta, service, _, env = api_config(folder)
    assert set(meta) <= {
        "spec",
        "spec_in_image",
        "readiness_path",
        "readiness_timeout",
        "service_port",
        "demo",
        "analysis",  # issue 14's per-API fault analysis table
    }
    assert meta["service_port"] == int(env["SERVICE_PORT"])
    assert meta["service_port"] == (8081 if folder.name == "languagetool" else 8080)
    assert meta.get("demo", False) is (folder.name == DEMO)
    assert meta["readiness_path"].startswith("/")
    command = json.loads(env["SERVICE_CMD"])
    assert isinstance(command, list) and command and all(isinstance(a, str) for a in command)
    assert "java" in Path(command[0]).name
    if any(a.startswith("-Dserver.port=") for a in command):
        assert f"-Dserver.port={meta['service_port']}" in command
    assert env.get("COVERAGE_CLASSES", "").startswith("/")
    # Databases run inside the container, declared as sidecars; the metadata says which.
    sidecars = json.loads(env.get("SIDECARS", "[]"))
    assert sorted(s["name"] for s in sidecars) == sorted(service["databases"])
    # The ports each jar's own configuration expects (SeUniVr/RESTgym@56a9300
    # apis/<api>/classes/application.properties): blog's MySQL on 3307, person-controller's MongoDB
    # on 27019; the self-check confirms them against the image's own file at build time.
    ports = {("blog", "mysql"): 3307, ("person-controller", "mongodb"): 27019}
    defaults = {"mysql": 3306, "mongodb": 27017}
    for car in sidecars:
        assert isinstance(car["argv"], list) and car["argv"]
        want = ports.get((folder.name, car["name"]), defaults[car["name"]])
        assert car["port"] == want
        assert str(want) in " ".join(car["argv"]), f"{car['name']} must listen on {want}"
    # Auth injection exactly where the service needs a logged-in client.
    auth = env.get("AUTH_STEPS")
    assert (auth is not None) == (service["auth"] != "none")
    if auth is not None:
        steps = json.loads(auth)
        assert steps["steps"] and steps["header"] and "{token}" in steps["template"]
        assert any("token_json" in s or "token_cookie" in s for s in steps["steps"])
    assert service["jdk"] in (8, 11, 17)
    assert isinstance(service["operations"], int) and service["operations"] > 0


def test_auth_where_the_reference_says() -> None:
    auth = {p.name: toml(p / "service.toml")["auth"] for p in api_dirs()}
    assert {name for name, kind in auth.items() if kind != "none"} == {"blog", "market"}
    dbs = {p.name: toml(p / "service.toml")["databases"] for p in api_dirs()}
    assert {n for n, d in dbs.items() if "mysql" in d} == {"blog", "user-management"}
    assert {n for n, d in dbs.items() if "mongodb" in d} == {"genome-nexus", "person-controller"}


@pytest.mark.parametrize("folder", api_dirs(), ids=lambda p: p.name)
def test_spec_exists_and_names_every_operation_or_comes_from_the_image(folder: Path) -> None:
    meta, service, df, _ = api_config(folder)
    spec = folder / meta["spec"]
    # Where the spec comes from is said once, in api.toml (what the runner reads), not in service.toml.
    assert "image:" not in str(service.get("spec_source", ""))
    inside = meta.get("spec_in_image")
    if inside is not None:
        # The runner copies it out of the image into each batch; the Dockerfile also puts a copy in
        # /specifications/, where the optional scripts/api-specs.sh takes it from.
        assert inside.startswith("/api/specifications/"), "RESTgym's images keep their specs there"
        assert Path(inside).name == spec.name
        run = " ".join(i.args for i in df.final.of("RUN"))
        assert f"cp {inside} " in run and "/specifications/" in run
    if spec.is_file():
        check_spec(spec)
        assert service.get("operations") == count_operations(spec)
        return
    # Not in the repository: the runner must be able to take it from the image.
    assert folder.name != DEMO, "the demo's spec must be in the repository"
    assert inside is not None, f"{rel(spec)} is missing and api.toml has no spec_in_image"


def test_every_benchmark_spec_comes_from_its_image_never_from_the_repository() -> None:
    from_image = {p.name for p in api_dirs() if "spec_in_image" in toml(p / "api.toml")}
    assert from_image == BENCHMARK
    for name in BENCHMARK:
        held = sorted((ROOT / "apis" / name).glob("specifications/*.json"))
        held += sorted((ROOT / "apis" / name).glob("specifications/*.yaml"))
        assert not held, f"hand-written or copied specs in the repository: {held}"
    assert (ROOT / "apis" / DEMO / "specifications" / "demo-shop-openapi.json").is_file()


SHARED_SPECS = ROOT.parent / "shared" / "benchmark-specs"


@pytest.mark.parametrize("name", sorted(BENCHMARK))
def test_the_real_benchmark_spec_agrees_with_the_folder(name: str) -> None:
    """The real spec (data in ../shared/benchmark-specs, RESTgym's own file) is what the image holds
    at spec_in_image: it parses, names every operation, and has the operations service.toml says."""
    meta = toml(ROOT / "apis" / name / "api.toml")
    real = SHARED_SPECS / Path(meta["spec_in_image"]).name
    check_spec(real)
    assert toml(ROOT / "apis" / name / "service.toml")["operations"] == count_operations(real)


def operations(spec: dict) -> list[tuple[str, str, dict]]:
    out = []
    for path, item in spec.get("paths", {}).items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                out.append((method, path, op))
    return out


def count_operations(path: Path) -> int:
    return len(operations(json.loads(path.read_text())))


def check_spec(path: Path) -> None:
    spec = json.loads(path.read_text(encoding="utf-8"))
    assert str(spec.get("openapi", "")).startswith("3."), f"{path} is not OpenAPI 3"
    ops = operations(spec)
    assert ops, f"{path} has no operations"
    ids = [op.get("operationId") for _, _, op in ops]
    missing = [f"{m.upper()} {p}" for m, p, op in ops if not op.get("operationId")]
    assert not missing, f"{path}: operations without operationId: {missing}"
    assert len(set(ids)) == len(ids), f"{path}: duplicate operationIds"
    for _, template, op in ops:
        declared = {p["name"] for p in op.get("parameters", []) if p.get("in") == "path"}
        shared = spec["paths"][template].get("parameters", [])
        declared |= {p["name"] for p in shared if p.get("in") == "path"}
        used = set(re.findall(r"{([^}]+)}", template))
        assert used == declared, f"{path}: {template} path parameters {used} vs declared {declared}"
    # Every local $ref resolves.
    for ref in refs(spec):
        node: object = spec
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(node, dict) and part in node, f"{path}: unresolved $ref {ref}"
            node = node[part]


def refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def test_demo_spec_has_what_the_demo_needs() -> None:
    spec = json.loads((ROOT / "apis" / DEMO / "specifications" / "demo-shop-openapi.json").read_text())
    ops = operations(spec)
    assert len(ops) >= 8
    assert any("{" in path for _, path, _ in ops), "path templates"
    assert any(p.get("in") == "query" for _, _, op in ops for p in op.get("parameters", [])), "query params"
    assert any("requestBody" in op for _, _, op in ops), "JSON bodies"
    assert "/products/{productId}/quote" in spec["paths"]


# --- tool folders --------------------------------------------------------------------------------------
@pytest.mark.parametrize("folder", tool_dirs(), ids=lambda p: p.name)
def test_tool_image_contract(folder: Path) -> None:
    df = parse(folder / "Dockerfile")
    bases = {s.base for s in df.stages}
    # A tool published as an image (evomaster-bb) is built FROM it: an ARG with a pinned tag.
    args = {k: v for i in df.instructions if i.keyword == "ARG" for k, v in parse_pairs(i).items()}
    pinned = {args.get(b[2:-1], "") for b in bases if b.startswith("${") and b.endswith("}")}
    assert "debian:bookworm-slim" in bases or any(":" in p and not p.endswith(":latest") for p in pinned)
    entry = df.final.of("ENTRYPOINT")[-1].json_form()
    assert entry, "exec-form ENTRYPOINT"
    script = folder / Path(entry[0]).name
    assert script.is_file(), f"{entry[0]} is not in {rel(folder)}"
    text = script.read_text()
    for name in ("HOST", "PORT", "SPEC", "TIME_BUDGET"):
        assert name in text, f"{script.name} ignores {name}"
    copied = [s for i in df.final.of("COPY") for s in copy_sources(i)]
    assert script.name in " ".join(copied)
    meta = toml(folder / "tool.toml")
    assert set(meta) <= {"needs_models", "spec_format", "build_args", "accepts_seed"}
    # Offline builds read wheels from the context; the folder exists even when empty. The stage that
    # installs the requirements copies the wheelhouse (a builder stage of a multi-stage image).
    if (folder / "requirements.txt").is_file():
        installing = [
            s for s in df.stages if "-r /opt/tool/requirements.txt" in " ".join(i.args for i in s.of("RUN"))
        ]
        assert len(installing) == 1, "exactly one stage installs the requirements"
        stage = installing[0]
        assert any("wheelhouse" in s for i in stage.of("COPY") for s in copy_sources(i)), "no wheelhouse COPY"
        assert (folder / "wheelhouse").is_dir()
        assert "--no-index --find-links" in " ".join(i.args for i in stage.of("RUN"))
        if stage is not df.final:
            assert not any("wheelhouse" in s for s in copied), "the wheelhouse layer stays in the builder"


def test_llamaresttest_image_is_multi_stage_without_wheelhouse_compilers_or_git() -> None:
    folder = ROOT / "tools" / "llamaresttest"
    df = parse(folder / "Dockerfile")
    # builder -> venv -> source -> final, in that order so `--target venv` builds no checkout
    assert [(s.name, s.base) for s in df.stages] == [
        ("builder", "debian:bookworm-slim"),
        ("venv", "debian:bookworm-slim"),
        ("source", "debian:bookworm-slim"),
        (None, "venv"),
    ]
    _builder, venv, source, final = df.stages
    words = [set(" ".join(i.args for i in s.of("RUN")).split()) for s in df.stages]
    assert {"build-essential", "cmake", "ninja-build", "python3-dev"} <= words[0]
    assert "git" in words[2]
    for n, stage in ((1, venv), (3, final)):  # what the image holds: no compilers, git or wheelhouse
        assert not words[n] & {"build-essential", "cmake", "ninja-build", "python3-dev", "git", "gcc"}
        assert not any("wheelhouse" in s for i in stage.of("COPY") for s in copy_sources(i))
    assert "python3" in words[1]
    venv_copies = [(i.flags.get("from"), copy_sources(i)) for i in venv.of("COPY")]
    assert ("builder", ["/opt/tool/venv"]) in venv_copies
    final_copies = [(i.flags.get("from"), copy_sources(i)) for i in final.of("COPY")]
    assert ("source", ["/opt/LlamaRestTest"]) in final_copies
    assert all(src in {None, "source"} for src, _ in final_copies)
    # the checkout is pinned; the repository is a build argument (mirrors, tool.toml's [build_args])
    args = dict(i.args.split("=", 1) for i in source.of("ARG"))
    assert args["LLAMARESTTEST_COMMIT"] == "69f2e95e78a9a58cf0492613cde94f90fe57ea61"
    assert "LLAMARESTTEST_REPO" in args


def test_llamaresttest_declares_models() -> None:
    assert toml(ROOT / "tools" / "llamaresttest" / "tool.toml")["needs_models"] is True
    assert toml(ROOT / "tools" / "schemathesis" / "tool.toml").get("needs_models", False) is False


# --- the runner reads it all -------------------------------------------------------------------------
def test_runner_catalog_reads_every_folder_without_problems() -> None:
    cat = catalog.load(ROOT)
    assert cat.problems == ()
    assert set(cat.apis) == BENCHMARK | {DEMO}
    assert cat.infrastructure is not None
    assert cat.apis[DEMO].demo and cat.apis[DEMO].spec_path.is_file()
    assert cat.apis["blog"].spec_in_image == "/api/specifications/blog-openapi.json"
    assert cat.apis[DEMO].spec_in_image is None
    # every API's spec can be had without a manual step: on disk or out of its image
    assert [a.spec_problem() for a in cat.apis.values() if a.spec_problem()] == []
    assert cat.apis["languagetool"].service_port == 8081


# --- the supervisor's configuration (pure part, runs without Docker) ---------------------------------
def load_supervisor():
    sys.path.insert(0, str(ROOT / "infrastructure"))
    try:
        import supervisor
    finally:
        sys.path.pop(0)
    return supervisor


def test_supervisor_reports_every_configuration_problem_at_once() -> None:
    sup = load_supervisor()
    cfg = sup.load_config({"SERVICE_CMD": "not json", "COVERAGE_INTERVAL": "-1", "SIDECARS": "{}"})
    text = "\n".join(cfg.problems)
    assert "SERVICE_CMD is not valid JSON" in text
    assert "COVERAGE_INTERVAL must be positive" in text
    assert "SIDECARS must be a JSON list" in text


def test_supervisor_expands_a_wildcard_to_exactly_one_file(tmp_path: Path) -> None:
    sup = load_supervisor()
    (tmp_path / "svc-1.2.jar").write_text("")
    cfg = sup.load_config({"SERVICE_CMD": json.dumps(["java", "-jar", f"{tmp_path}/*.[jw]ar"])})
    assert cfg.problems == []
    assert cfg.service_cmd == ["java", "-jar", str(tmp_path / "svc-1.2.jar")]
    (tmp_path / "other.war").write_text("")
    cfg = sup.load_config({"SERVICE_CMD": json.dumps(["java", "-jar", f"{tmp_path}/*.[jw]ar"])})
    assert any("must match exactly one file" in p for p in cfg.problems)


def test_every_api_dockerfile_env_is_a_valid_supervisor_configuration() -> None:
    sup = load_supervisor()
    for folder in api_dirs():
        env = inherited_env(parse(folder / "Dockerfile"))
        # Wildcards name files of the upstream image; only their syntax can be checked here.
        cfg = sup.load_config(env)
        problems = [p for p in cfg.problems if "must match exactly one file" not in p]
        assert problems == [], f"{folder.name}: {problems}"


def test_dockerfile_pairs_keep_json_intact() -> None:
    ins = Instruction(1, "ENV", {}, 'A=\'["java", "-jar"]\' B="{\\"k\\": 1}"')
    assert parse_pairs(ins) == {"A": '["java", "-jar"]', "B": '{"k": 1}'}
