"""Every shell script the project ships passes shellcheck (the startup script is checked after
rendering, in tests/stacks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from remote_runner.common.process import execute

ROOT = Path(__file__).resolve().parent.parent


def _shell_scripts() -> list[Path]:
    found = [ROOT / ".ci" / "run"]
    for folder in ("scripts", "infrastructure", "apis", "tools", "stacks"):
        for path in sorted((ROOT / folder).rglob("*.sh")):
            if "wheelhouse" not in path.parts:
                found.append(path)
    return found


def test_there_are_scripts_to_check() -> None:
    names = {p.name for p in _shell_scripts()}
    assert {"run", "bootstrap.sh", "test.sh"} <= names


@pytest.mark.parametrize("script", _shell_scripts(), ids=lambda p: str(p.relative_to(ROOT)))
def test_shellcheck_clean(script: Path) -> None:
    res = execute(["shellcheck", "--shell=bash", "--severity=style", str(script)], timeout=60)
    assert res.returncode != 127, "shellcheck missing: scripts/bootstrap.sh installs it"
    assert res.ok, res.output


def _rendered_startup_scripts() -> dict[str, str]:
    """The scripts stacks/startup.py renders from templates: the one VM's, a cluster head's and a
    cluster worker's (the values of tests/stacks)."""
    from stacks.ray_nodes import RayNode
    from stacks.startup import ClusterParams, render_cluster_script, render_startup_script
    from tests.stacks.test_cluster_startup import WORKER_PARAMS
    from tests.stacks.test_startup import PARAMS

    requirements = ("psutil>=5.9", "ray[default]==2.49.2")
    registry = "us-central1-docker.pkg.dev"
    return {
        "vm": render_startup_script(PARAMS),
        "head": render_cluster_script(PARAMS, ClusterParams(RayNode("head"), requirements, registry)),
        "worker": render_cluster_script(
            WORKER_PARAMS, ClusterParams(RayNode("worker", "10.128.0.7", 2), requirements, registry)
        ),
        # the baked worker image's builder (bakeWorkerImage, stacks/worker_image.py)
        "builder": render_cluster_script(
            WORKER_PARAMS,
            ClusterParams(
                RayNode("worker", "127.0.0.1", 2),
                requirements,
                registry,
                bake_version="0123456789abcdef",
                bake_images=("debian:bookworm-slim",),
                image_builder=True,
            ),
        ),
    }


@pytest.mark.parametrize("role", ["vm", "head", "worker", "builder"])
def test_rendered_startup_scripts_parse_and_pass_shellcheck(tmp_path: Path, role: str) -> None:
    script = tmp_path / f"{role}.sh"
    script.write_text(_rendered_startup_scripts()[role])
    parsed = execute(["bash", "-n", str(script)], timeout=60)
    assert parsed.ok, parsed.output
    res = execute(["shellcheck", "--shell=bash", "--severity=style", str(script)], timeout=60)
    assert res.returncode != 127, "shellcheck missing: scripts/bootstrap.sh installs it"
    assert res.ok, res.output
