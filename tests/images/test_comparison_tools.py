"""ARAT-RL and EvoMaster black-box, the two comparison tools whose images cannot be built here
(GitHub, Docker Hub): their Dockerfiles and tool.toml pin what they run, and their entrypoints,
run with stand-ins for the tool, keep one deadline, pass the tool its arguments as its authors ran
it, and report every restart the way remote_runner/analysis/tool_log.py reads it."""

from __future__ import annotations

import os
import re
import time
import tomllib
from pathlib import Path

from remote_runner.analysis import tool_log
from remote_runner.common.process import execute
from tests.images.dockerfile import copy_sources, parse, parse_pairs

ROOT = Path(__file__).resolve().parents[2]
ARAT = ROOT / "tools" / "arat-rl"
EVO = ROOT / "tools" / "evomaster-bb"
SPEC_FORMATS = {"openapi3", "swagger2"}


def toml(path: Path) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def args_of(df_path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for ins in parse(df_path).instructions:
        if ins.keyword == "ARG":
            out.update(parse_pairs(ins))
    return out


# --- static: pins and declarations ----------------------------------------------------------------
def test_arat_rl_dockerfile_pins_upstream_and_its_code() -> None:
    df = parse(ARAT / "Dockerfile")
    assert [s.base for s in df.stages] == ["debian:bookworm-slim"]
    args = args_of(ARAT / "Dockerfile")
    assert args["ARAT_RL_REPO"] == "https://github.com/codingsoo/ARAT-RL.git"
    assert re.fullmatch(r"[0-9a-f]{40}", args["ARAT_RL_COMMIT"])
    assert re.fullmatch(r"[0-9a-f]{40}", args["ARAT_RL_BLOB"])
    run = " ".join(i.args for i in df.final.of("RUN"))
    # the build fails unless arat-rl.py is the pinned blob, whichever repository or commit served it
    assert '"$ARAT_RL_COMMIT:arat-rl.py"' in run and '"$blob" != "$ARAT_RL_BLOB"' in run
    assert "--no-index --find-links /tmp/wheelhouse -r /opt/tool/requirements.txt" in run
    copied = " ".join(s for i in df.final.of("COPY") for s in copy_sources(i))
    for name in ("requirements.txt", "wheelhouse/", "entrypoint.sh", "request_counter.py"):
        assert name in copied
    assert df.final.of("ENTRYPOINT")[-1].json_form() == ["/opt/tool/entrypoint.sh"]


def test_arat_rl_requirements_are_pinned_and_cover_its_imports() -> None:
    pins = {}
    for line in (ARAT / "requirements.txt").read_text().splitlines():
        spec = line.split("#", 1)[0].strip()
        if spec:
            name, sep, version = spec.partition("==")
            assert sep and version, f"{spec!r} is not pinned with =="
            pins[name.lower()] = version
    # upstream's requirements.txt: pyyaml, prance, openapi-spec-validator, rstr, requests==2.28.2
    assert set(pins) == {"pyyaml", "prance", "openapi-spec-validator", "rstr", "requests"}
    assert pins["requests"] == "2.28.2"


def test_evomaster_dockerfile_pins_the_published_image() -> None:
    df = parse(EVO / "Dockerfile")
    image = args_of(EVO / "Dockerfile")["EVOMASTER_IMAGE"]
    repo, _, tag = image.partition(":")
    assert repo == "webfuzzing/evomaster" and tag and tag != "latest"
    assert df.final.base == "${EVOMASTER_IMAGE}"
    # Alpine base: busybox sh, no bash
    assert df.final.of("ENTRYPOINT")[-1].json_form() == ["/opt/tool/entrypoint.sh"]
    assert (EVO / "entrypoint.sh").read_text().startswith("#!/bin/sh\n")
    assert os.access(EVO / "entrypoint.sh", os.X_OK)


def test_tool_toml_declares_format_models_and_the_build_arguments_the_dockerfile_has() -> None:
    for folder, fmt in ((ARAT, "swagger2"), (EVO, "openapi3")):
        meta = toml(folder / "tool.toml")
        assert meta["needs_models"] is False
        assert meta["spec_format"] == fmt and fmt in SPEC_FORMATS
        defaults = args_of(folder / "Dockerfile")
        # every build argument given is one the Dockerfile takes, with the Dockerfile's own default
        for key, value in meta["build_args"].items():
            assert defaults.get(key) == value, f"{folder.name}: build_args.{key}"


# --- the entrypoints, run with stand-ins for the tools -------------------------------------------
FAKE_ARAT = """\
import pathlib, sys, time
calls = pathlib.Path(sys.argv[0]).with_name("calls.txt")
with calls.open("a") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
if len(calls.read_text().splitlines()) <= 2:
    print("Traceback (most recent call last):")
    print('  File "arat-rl.py", line 715, in main')
    raise KeyError("description")
time.sleep(int(sys.argv[3]))
"""


def run_script(script: Path, tmp_path: Path, shell: str, **env: str):
    spec = tmp_path / "spec.json"
    spec.write_text('{"swagger": "2.0", "paths": {}}')
    base = {"PATH": os.environ["PATH"], "HOST": "api", "PORT": "9090", "SPEC": str(spec), "TIME_BUDGET": "6"}
    base.update(env)
    started = time.monotonic()
    res = execute(["env", "-i", *(f"{k}={v}" for k, v in base.items()), shell, str(script)], timeout=60)
    return res, time.monotonic() - started


def test_arat_rl_runs_to_one_deadline_and_reports_each_restart(tmp_path: Path) -> None:
    home = tmp_path / "upstream"
    home.mkdir()
    (home / "arat-rl.py").write_text(FAKE_ARAT)
    res, took = run_script(
        ARAT / "entrypoint.sh",
        tmp_path,
        "bash",
        ARAT_RL_HOME=str(home),
        STATE_DIR=str(tmp_path / "state"),
        MIN_RUN_SECONDS="1",
        BASE_URL="http://api:9090/v2/",
    )
    assert res.ok, res.output
    assert took < 6 + 3, f"deadline overrun: {took:.1f}s"
    calls = (home / "calls.txt").read_text().splitlines()
    assert len(calls) == 3
    seconds = []
    for call in calls:
        spec, url, left = call.split()
        assert spec == str(tmp_path / "spec.json")
        assert url == "http://api:9090/v2"  # BASE_URL, the trailing slash dropped
        seconds.append(int(left))
    assert seconds[0] <= 6 and seconds == sorted(seconds, reverse=True)
    report = tool_log.parse_text(res.output)
    assert report.unreadable == ()
    assert [(r.run, r.exit, r.reason) for r in report.restarts] == [
        (1, 1, "KeyError: 'description'"),
        (2, 1, "KeyError: 'description'"),
    ]
    assert report.restarts[0].tail[-1] == "KeyError: 'description'"
    assert report.requests is not None and report.requests.runs == 3
    assert "does not look like Swagger 2.0" not in res.output


def test_arat_rl_falls_back_to_host_and_port_and_names_what_is_missing(tmp_path: Path) -> None:
    home = tmp_path / "upstream"
    home.mkdir()
    (home / "arat-rl.py").write_text("import sys; print('ARGS', *sys.argv[1:])\n")
    res, _ = run_script(
        ARAT / "entrypoint.sh",
        tmp_path,
        "bash",
        ARAT_RL_HOME=str(home),
        STATE_DIR=str(tmp_path / "s"),
        TIME_BUDGET="2",
        MIN_RUN_SECONDS="1",
    )
    assert res.ok, res.output
    assert f"ARGS {tmp_path / 'spec.json'} http://api:9090 " in res.output
    bad, _ = run_script(ARAT / "entrypoint.sh", tmp_path, "bash", ARAT_RL_HOME=str(home), HOST="", SPEC="")
    assert bad.returncode == 2 and "missing environment: HOST SPEC" in bad.output
    oas3 = tmp_path / "oas3.json"
    oas3.write_text('{"openapi": "3.0.0", "paths": {}}')
    warned, _ = run_script(
        ARAT / "entrypoint.sh",
        tmp_path,
        "bash",
        ARAT_RL_HOME=str(home),
        STATE_DIR=str(tmp_path / "w"),
        SPEC=str(oas3),
        TIME_BUDGET="0",
    )
    assert warned.ok and "does not look like Swagger 2.0" in warned.output


FAKE_JAVA = """\
#!/bin/sh
echo "$@" >> "$CALLS"
n=$(wc -l < "$CALLS")
if [ "$n" -le 1 ]; then
  echo "ERROR: java.lang.IllegalStateException: \\"schema\\" cannot be read"
  exit 3
fi
for a in "$@"; do case $a in *s) t=${a%s} ;; esac; done
sleep "$t"
"""


def test_evomaster_loops_to_the_deadline_with_black_box_arguments(tmp_path: Path) -> None:
    java = tmp_path / "java"
    java.write_text(FAKE_JAVA)
    java.chmod(0o755)
    calls = tmp_path / "calls.txt"
    res, took = run_script(
        EVO / "entrypoint.sh",
        tmp_path,
        "sh",  # dash: POSIX sh, as busybox on the Alpine image
        JAVA=str(java),
        CALLS=str(calls),
        OUTPUT_DIR=str(tmp_path / "out"),
        STATE_DIR=str(tmp_path / "state"),
        TIME_BUDGET="8",
        STOP_MARGIN="1",
        MIN_RUN_SECONDS="2",
    )
    assert res.ok, res.output
    assert took < 8 + 3, f"deadline overrun: {took:.1f}s"
    lines = calls.read_text().splitlines()
    assert len(lines) == 2
    for k, line in enumerate(lines, start=1):
        words = line.split()
        assert words[:3] == ["-XX:MaxRAMPercentage=75", "-jar", "/evomaster.jar"]
        pairs = dict(zip(words[3::2], words[4::2], strict=True))
        assert pairs["--runningInDocker"] == "true"
        assert pairs["--blackBox"] == "true"
        assert pairs["--bbSwaggerUrl"] == f"file://{tmp_path / 'spec.json'}"
        assert pairs["--bbTargetUrl"] == "http://api:9090"
        assert pairs["--outputFolder"] == f"{tmp_path / 'out'}/run-{k}"
        assert re.fullmatch(r"\d+s", pairs["--maxTime"]) and int(pairs["--maxTime"][:-1]) <= 8 - 1
    report = tool_log.parse_text(res.output)
    assert report.unreadable == ()
    assert len(report.restarts) == 1
    restart = report.restarts[0]
    assert (restart.run, restart.exit) == (1, 3)
    assert restart.reason == 'ERROR: java.lang.IllegalStateException: "schema" cannot be read'
    assert report.requests is None
