"""The bundle is deterministic, holds exactly the runner's tree plus its settings, and nothing else."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from stacks.bundle import (
    EXPERIMENT_FILE,
    REQUIREMENTS_FILE,
    archive_bytes,
    build_bundle,
    experiment_json,
    runner_requirements,
    sha256_file,
)

PYPROJECT = """
[project]
name = "x"
dependencies = [
  "pulumi>=3.100,<4",
  "pulumi-gcp>=8,<11",
  "pulumi_docker>=4.5",
  "paramiko>=3.4,<5",
  "psutil>=5.9",
  "google-cloud-storage>=2.14,<4",
  "tenacity>=8.2",
]
"""


def make_tree(root: Path) -> Path:
    files = {
        "pyproject.toml": PYPROJECT,
        "remote_runner/__init__.py": "",
        "remote_runner/cli.py": "print('run')\n",
        "remote_runner/__pycache__/cli.cpython-311.pyc": "bytecode",
        "remote_runner/stale.pyc": "bytecode",
        "apis/demo/Dockerfile": "FROM debian:bookworm-slim\n",
        "apis/demo/results/old.csv": "not shipped\n",
        "tools/st/Dockerfile": "FROM debian:bookworm-slim\n",
        "tools/st/wheelhouse/.gitkeep": "",
        "tools/st/wheelhouse/big-1.0-py3-none-any.whl": "wheel",
        "tools/st/wheelhouse/src-1.0.tar.gz": "sdist",
        "tools/st/run.sh": "#!/bin/sh\nexec true\n",
        "infrastructure/Dockerfile": "FROM debian:bookworm-slim\n",
        "README.md": "not shipped\n",
        "stacks/deploy.py": "not shipped\n",
        "results/batch-1/plan.json": "{}",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "tools/st/run.sh").chmod(0o755)
    return root


SETTINGS = {"runs": 2, "apis": ["demo"], "tools": ["st"], "batch": "batch-20260101T000000Z"}


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return tar.getmembers()


def test_bundle_contains_the_runner_tree_and_settings_and_nothing_else(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "src")
    data, names = archive_bytes(root, SETTINGS)
    assert list(names) == [
        "apis/demo/Dockerfile",
        EXPERIMENT_FILE,
        "infrastructure/Dockerfile",
        "pyproject.toml",
        "remote_runner/__init__.py",
        "remote_runner/cli.py",
        REQUIREMENTS_FILE,
        "tools/st/Dockerfile",
        "tools/st/run.sh",
        "tools/st/wheelhouse/.gitkeep",
    ]
    infos = members(data)
    files = [m.name for m in infos if m.isfile()]
    assert files == list(names)  # sorted, in archive order
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" and m.gname == "" for m in infos)
    modes = {m.name: m.mode for m in infos}
    assert modes["tools/st/run.sh"] == 0o755
    assert modes["tools/st/Dockerfile"] == 0o644
    assert modes["remote_runner"] == 0o755
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        settings = tar.extractfile(EXPERIMENT_FILE).read()  # type: ignore[union-attr]
        reqs = tar.extractfile(REQUIREMENTS_FILE).read().decode()  # type: ignore[union-attr]
    assert settings == experiment_json(SETTINGS)
    assert reqs.split() == ["psutil>=5.9", "google-cloud-storage>=2.14,<4", "tenacity>=8.2"]
    # gzip header: no timestamp (bytes 4..8), no file name flag.
    assert data[4:8] == b"\0\0\0\0"
    assert data[3] & 0x08 == 0


def test_same_content_gives_the_same_bytes_whatever_the_mtimes_owners_and_umask(tmp_path: Path) -> None:
    first = build_bundle(make_tree(tmp_path / "a"), SETTINGS, tmp_path / "out-a")
    other = make_tree(tmp_path / "b")
    for path in other.rglob("*"):
        os.utime(path, (1_000_000, 1_000_000))
    (other / "apis/demo/Dockerfile").chmod(0o600)  # not executable: still 0644 in the archive
    reordered = dict(reversed(list(SETTINGS.items())))
    second = build_bundle(other, reordered, tmp_path / "out-b")
    assert first.sha256 == second.sha256
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.path.name == f"{first.sha256}.tar.gz"
    assert sha256_file(first.path) == first.sha256
    assert gzip.decompress(first.path.read_bytes())  # a valid gzip stream


def test_any_change_of_code_or_settings_changes_the_hash(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "src")
    base = build_bundle(root, SETTINGS, tmp_path / "out").sha256
    assert build_bundle(root, {**SETTINGS, "runs": 3}, tmp_path / "out").sha256 != base
    (root / "remote_runner/cli.py").write_text("print('changed')\n")
    changed = build_bundle(root, SETTINGS, tmp_path / "out").sha256
    assert changed != base
    (root / "remote_runner/new.py").write_text("")
    assert build_bundle(root, SETTINGS, tmp_path / "out").sha256 not in (base, changed)


def test_excluded_files_do_not_change_the_hash(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "src")
    base = build_bundle(root, SETTINGS, tmp_path / "out").sha256
    (root / "remote_runner/__pycache__/x.cpython-311.pyc").write_text("more")
    (root / "tools/st/wheelhouse/another-2.0-py3-none-any.whl").write_text("wheel")
    (root / "results/batch-2").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "docs/notes.md").write_text("not shipped")
    assert build_bundle(root, SETTINGS, tmp_path / "out").sha256 == base


def test_runner_requirements_of_this_project_leave_out_the_operator_side() -> None:
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    reqs = runner_requirements(pyproject)
    names = {r.split(">")[0].split("<")[0].split("=")[0].strip().lower() for r in reqs}
    assert "psutil" in names and "tenacity" in names
    assert not names & {"pulumi", "pulumi-gcp", "pulumi-docker", "pulumi-tls", "pulumi-random", "paramiko"}


def test_planted_secret_files_are_refused_each_named(tmp_path: Path) -> None:
    from stacks.bundle import SecretInBundle

    root = make_tree(tmp_path / "src")
    planted = {
        "apis/demo/.env": "DB_PASSWORD=hunter2\n",
        "tools/st/id_ed25519": "not a key by content, but by name\n",
        "infrastructure/deploy-key.txt": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbg==\n",
        "remote_runner/sa.json": '{"type": "service_account", "private_key_id": "x"}\n',
        "tools/st/.netrc": "machine example.org login me password pw\n",
        "tools/st/api_token.txt": "ghp_x\n",
    }
    for name, text in planted.items():
        (root / name).write_text(text)
    with pytest.raises(SecretInBundle) as caught:
        archive_bytes(root, SETTINGS)
    assert sorted(path for path, _ in caught.value.findings) == sorted(planted)
    message = str(caught.value)
    for name in planted:
        assert name in message
    assert "holds a private key" in message and "service-account" in message
    for name in planted:
        (root / name).unlink()
    data, files = archive_bytes(root, SETTINGS)  # without them the same tree builds
    assert "remote_runner/cli.py" in files and data
