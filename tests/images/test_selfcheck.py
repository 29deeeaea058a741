"""The self-check's rules on a fake image tree (real files in a temporary folder; java and mitmdump
answers given in): versions too old, several problems reported together."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("selfcheck", ROOT / "infrastructure" / "selfcheck.py")
assert _spec and _spec.loader
selfcheck = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(selfcheck)


def tree(tmp: Path) -> dict[str, str]:
    (tmp / "classes" / "x").mkdir(parents=True)
    (tmp / "classes" / "x" / "A.class").write_bytes(b"\xca\xfe")
    (tmp / "classes" / "application.properties").write_text("url=jdbc:mysql://localhost:3307/blogapi\n")
    (tmp / "svc-sut.jar").write_bytes(b"PK")
    (tmp / "spec.json").write_text("{}")
    return {
        "SERVICE_CMD": json.dumps(["java", "-jar", f"{tmp}/*.[jw]ar"]),
        "COVERAGE_CLASSES": str(tmp / "classes"),
        "SIDECARS": json.dumps(
            [{"name": "mysql", "argv": ["mysqld"], "after_start": [["sh", f"{tmp}/init.sh"]]}]
        ),
        "SELFCHECK": json.dumps(
            {
                "specs": [str(tmp / "spec.json")],
                "java_min": 11,
                "config": [{"glob": f"{tmp}/classes/application*", "contains": "localhost:3307/blogapi"}],
            }
        ),
    }


def answers(java: str, mitm: str):  # type: ignore[no-untyped-def]
    def run(argv: list[str]) -> tuple[int, str]:
        return (0, java) if argv[0] == "java" else (0, mitm)

    return run


def which_all(name: str) -> str:
    return f"/usr/bin/{name}"


def test_java_versions_old_and_new_style() -> None:
    assert selfcheck.java_major('openjdk version "11.0.20" 2023-07-18') == 11
    assert selfcheck.java_major('java version "1.8.0_372"') == 8
    assert selfcheck.java_major("nonsense") is None


def test_everything_there_is_no_problem(tmp_path: Path) -> None:
    env = tree(tmp_path)
    (tmp_path / "init.sh").write_text("true\n")
    ok = answers('openjdk version "11.0.20"', "Mitmproxy: 8.1.1\nPython: 3.11.2")
    assert selfcheck.check(env, run=ok, which=which_all, version=(3, 11)) == []


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    env = tree(tmp_path)
    (tmp_path / "svc-sut.jar").rename(tmp_path / "svc-sut.war.bak")
    (tmp_path / "classes" / "application.properties").write_text("url=jdbc:mysql://localhost:3306/blogapi\n")
    old = answers('java version "1.8.0_372"', "Mitmproxy: 7.0.4")
    problems = selfcheck.check(
        env, run=old, which=lambda n: None if n == "mysqld" else which_all(n), version=(3, 7)
    )
    text = "\n".join(problems)
    assert len(problems) == 7, text
    for needle in (
        "must match exactly one file",
        "java is version 8, the service needs 11",
        "python3 is 3.7",
        "mitmproxy is 7.0",
        "mysqld is not in the image",
        "init.sh is missing",
        "contains 'localhost:3307/blogapi'",
    ):
        assert needle in text
