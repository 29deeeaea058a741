"""Build-time self-check of an API image: one ``RUN python3 /opt/recording/selfcheck.py`` step that
fails the build with ONE message naming everything missing or wrong.

It reads the same environment the supervisor reads (``SERVICE_CMD``, ``COVERAGE_CLASSES``,
``SIDECARS``, ``AUTH_STEPS``) plus ``SELFCHECK``, a JSON object of what the image must hold beyond
that:

    {"specs": ["/api/specifications/blog-openapi.json", "/api/specifications/blog.yaml"],
     "java_min": 11,
     "config": [{"glob": "/api/classes/application*", "contains": "localhost:3307/blogapi",
                 "why": "the jar's datasource URL"}]}

Checked (docs/images.md lists the same):
- the service's jar/war: every absolute argument of ``SERVICE_CMD`` with a wildcard matches exactly
  one file, every other absolute argument exists;
- ``COVERAGE_CLASSES``: each folder exists and holds at least one ``.class`` file;
- each spec file exists and is not empty (JSON specs must parse);
- ``java`` is on PATH and its major version is at least ``java_min``;
- ``python3`` is at least 3.8 and ``mitmdump`` is on PATH and at least 8.0 (the oldest versions our
  supervisor and addons are written for; the stand-in images test Debian's 3.11 and 8.1.1);
- each sidecar's program (``argv[0]``) and the programs of its ``init``/``after_start`` commands;
- each ``config`` expectation: some file matching ``glob`` contains the text (how the image's own
  service configuration says where its database is: the port and database name our sidecar must
  serve).

Runs on the image's own python3 (3.8 or later), standard library only. Exit 0 and one line when
everything is there; exit 1 and the list otherwise.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys

MIN_PYTHON = (3, 8)
MIN_MITMPROXY = (8, 0)


def _json(env: dict, name: str, default: str, kind: type, problems: list) -> object:
    raw = env.get(name, "") or default
    try:
        value = json.loads(raw)
    except ValueError as exc:
        problems.append(f"{name} is not valid JSON: {exc}")
        return kind()
    if not isinstance(value, kind):
        problems.append(f"{name} must be a JSON {kind.__name__}")
        return kind()
    return value


def _version(text: str) -> tuple:
    m = re.search(r"(\d+)(?:\.(\d+))?", text)
    if not m:
        return ()
    return (int(m.group(1)), int(m.group(2) or 0))


def java_major(output: str) -> int | None:
    """``openjdk version "11.0.20"`` -> 11, ``java version "1.8.0_372"`` -> 8."""
    m = re.search(r'version "(\d+)(?:\.(\d+))?', output)
    if not m:
        return None
    major = int(m.group(1))
    if major == 1 and m.group(2):
        return int(m.group(2))
    return major


def _run(argv: list) -> tuple:
    try:
        res = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return res.returncode, res.stdout.decode("utf-8", "replace")


def _program(argv: object) -> str | None:
    if isinstance(argv, list) and argv and isinstance(argv[0], str):
        return argv[0]
    return None


def check(env: dict, run=_run, which=shutil.which, version=sys.version_info) -> list:
    """Every problem of the image, as sentences that say what to fix (empty: all good)."""
    problems: list = []
    spec = _json(env, "SELFCHECK", "{}", dict, problems)
    service_cmd = _json(env, "SERVICE_CMD", "[]", list, problems)
    sidecars = _json(env, "SIDECARS", "[]", list, problems)
    if not service_cmd:
        problems.append("SERVICE_CMD (the service's command, a JSON array) is not set")
    for arg in service_cmd:  # type: ignore[union-attr]
        if not isinstance(arg, str) or not arg.startswith("/"):
            continue
        if "*" in arg:
            matches = sorted(glob.glob(arg))
            if len(matches) != 1:
                problems.append(f"the service file {arg} must match exactly one file, matches {matches}")
        elif not os.path.exists(arg):
            problems.append(f"{arg} (in SERVICE_CMD) does not exist")
    classes = env.get("COVERAGE_CLASSES", "")
    if not classes:
        problems.append("COVERAGE_CLASSES (the service's compiled classes, for coverage) is not set")
    for folder in [c for c in classes.split(":") if c]:
        if not os.path.isdir(folder):
            problems.append(f"the classes folder {folder} (COVERAGE_CLASSES) is missing")
        elif not glob.glob(os.path.join(folder, "**", "*.class"), recursive=True):
            problems.append(f"the classes folder {folder} (COVERAGE_CLASSES) holds no .class file")
    for path in spec.get("specs", []):  # type: ignore[union-attr]
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            problems.append(f"the spec {path} is missing or empty")
        elif path.endswith(".json"):
            try:
                with open(path, encoding="utf-8") as fh:
                    json.load(fh)
            except ValueError as exc:
                problems.append(f"the spec {path} is not valid JSON: {exc}")
    java_min = int(spec.get("java_min", 8))  # type: ignore[union-attr]
    if which("java") is None:
        problems.append(f"java is not on PATH (the service needs a JDK {java_min} or later)")
    else:
        code, out = run(["java", "-version"])
        major = java_major(out)
        if code != 0 or major is None:
            problems.append(f"java -version failed ({code}): {out.strip()[-200:]}")
        elif major < java_min:
            problems.append(f"java is version {major}, the service needs {java_min} or later")
    if tuple(version[:2]) < MIN_PYTHON:
        problems.append(
            f"python3 is {version[0]}.{version[1]}, the recording layer needs "
            f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} or later"
        )
    if which("mitmdump") is None:
        problems.append("mitmdump (mitmproxy, the recording proxy) is not on PATH")
    else:
        code, out = run(["mitmdump", "--version"])
        found = _version(out.split("Mitmproxy:", 1)[-1]) if code == 0 else ()
        if not found:
            problems.append(f"mitmdump --version failed ({code}): {out.strip()[-200:]}")
        elif found < MIN_MITMPROXY:
            problems.append(
                f"mitmproxy is {found[0]}.{found[1]}, the recording addons need "
                f"{MIN_MITMPROXY[0]}.{MIN_MITMPROXY[1]} or later"
            )
    for car in sidecars:  # type: ignore[union-attr]
        if not isinstance(car, dict):
            problems.append("every SIDECARS entry must be a JSON object")
            continue
        name = car.get("name", "sidecar")
        commands = [car.get("argv"), *list(car.get("init", [])), *list(car.get("after_start", []))]
        for argv in commands:
            program = _program(argv)
            if program is None:
                problems.append(f"sidecar {name}: a command is not a JSON array of strings")
            elif which(program) is None and not (program.startswith("/") and os.access(program, os.X_OK)):
                problems.append(f"sidecar {name}: {program} is not in the image (not on PATH)")
            elif (
                program in ("sh", "bash")
                and len(argv) > 1
                and argv[1].startswith("/")
                and not os.path.isfile(argv[1])
            ):
                problems.append(f"sidecar {name}: the script {argv[1]} is missing")
    for want in spec.get("config", []):  # type: ignore[union-attr]
        pattern, text = want.get("glob", ""), want.get("contains", "")
        files = sorted(f for f in glob.glob(pattern) if os.path.isfile(f))
        hit = False
        for path in files:
            with open(path, encoding="utf-8", errors="replace") as fh:
                if text in fh.read():
                    hit = True
                    break
        if not hit:
            why = want.get("why", "the service's configuration")
            problems.append(
                f"no file matching {pattern} contains {text!r} ({why}; files seen: {files}): the image's "
                "service is configured differently from what this Dockerfile starts for it"
            )
    return problems


def main() -> int:
    problems = check(dict(os.environ))
    api = os.environ.get("API", "this API")
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        print(f"self-check of the {api} image FAILED, {len(problems)} problem(s):\n{lines}", file=sys.stderr)
        return 1
    print(f"self-check of the {api} image: everything the recording layer needs is there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
