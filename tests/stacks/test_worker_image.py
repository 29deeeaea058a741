"""The baked worker image: the base images found in the Dockerfiles, the builder's and the worker's
scripts (rendered, shellcheck, the skip only on a matching version marker), and the wait for the
builder against the Compute stand-in (tests/google_standin.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from remote_runner.common.process import execute
from stacks import compute
from stacks.ray_nodes import RayNode
from stacks.startup import ClusterParams, bake_version, render_cluster_script
from stacks.worker_image import (
    BakeFailed,
    BuilderWaitProvider,
    base_images,
    compute_client,
    wait_for_builder,
)
from tests.google_standin import PROJECT, ZONE, Standin, google_standin
from tests.stacks.test_cluster_startup import REQUIREMENTS, WORKER, WORKER_PARAMS

ROOT = Path(__file__).resolve().parents[2]
BUILDER = "llamaresttest-dev-bake-0123456789ab"
REF = compute.InstanceRef(PROJECT, ZONE, BUILDER)
VERSION = "0123456789abcdef"
KEY = "llamaresttest/bake"


def test_base_images_are_the_public_froms_of_the_dockerfiles() -> None:
    images = base_images(ROOT)
    assert "debian:bookworm-slim" in images and "restgym/blog-api:1.0.0" in images
    assert len([i for i in images if i.startswith("restgym/")]) == 11
    # the batch's own images, a stage of the same file and a build argument's image are not baked
    assert not [i for i in images if i.startswith("llamaresttest/") or "$" in i or i == "venv"]
    assert images == tuple(sorted(images))


def test_the_version_changes_with_what_is_baked() -> None:
    one = bake_version(REQUIREMENTS, ("debian:bookworm-slim",))
    assert len(one) == 16 and one == bake_version(REQUIREMENTS, ("debian:bookworm-slim",))
    assert one != bake_version((*REQUIREMENTS, "rich"), ("debian:bookworm-slim",))
    assert one != bake_version(REQUIREMENTS, ("debian:bookworm-slim", "restgym/ncs-api:1.0.0"))


def _builder_script() -> str:
    params = ClusterParams(
        RayNode("worker", "127.0.0.1", 2),
        REQUIREMENTS,
        "us-central1-docker.pkg.dev",
        bake_version=VERSION,
        bake_images=("debian:bookworm-slim", "restgym/blog-api:1.0.0"),
        image_builder=True,
    )
    return render_cluster_script(WORKER_PARAMS, params)


def test_the_builder_script_parses_passes_shellcheck_and_bakes_without_ray(tmp_path: Path) -> None:
    script = tmp_path / "builder.sh"
    script.write_text(_builder_script())
    assert execute(["bash", "-n", str(script)], timeout=60).ok
    res = execute(["shellcheck", "--shell=bash", "--severity=style", str(script)], timeout=60)
    assert res.returncode != 127, "shellcheck missing: scripts/bootstrap.sh installs it"
    assert res.ok, res.output
    text = script.read_text()
    assert "IMAGE_BUILDER=1\n" in text and f"BAKE_VERSION={VERSION}\n" in text
    body = text[text.rindex("\nbake_main() {") :]
    body = body[: body.index("\n}\n")]
    order = ["install_packages", "install_node_venv", "pull_base_images", 'write_marker "$BAKE_MARKER"']
    assert [body.index(s) for s in order] == sorted(body.index(s) for s in order)
    assert 'set_bake_attribute "ok $BAKE_VERSION"' in body and "bake_power_off" in body
    for absent in ("install_ray_token", "install_ray_unit", "guard_containers", "cluster_node_steps"):
        assert absent not in body


def _install_base(tmp_path: Path, marker: str | None) -> tuple[str, bool, bool]:
    """Runs the worker script's install_base with packages and systemctl stubbed: (its output,
    whether it installed packages, whether the venv is still there)."""
    script = tmp_path / "worker.sh"
    script.write_text(render_cluster_script(WORKER_PARAMS, WORKER))
    venv = tmp_path / "venv"
    venv.mkdir(exist_ok=True)
    (venv / "kept").write_text("")
    marker_file = tmp_path / "baked-version"
    marker_file.unlink(missing_ok=True)
    if marker is not None:
        marker_file.write_text(marker + "\n")
    driver = f"""
source {script}
install_packages() {{ echo INSTALLED; }}
systemctl() {{ :; }}
BAKE_MARKER={marker_file}
VENV_DIR={venv}
BAKE_VERSION={VERSION}
install_base
"""
    res = subprocess.run(["bash", "-c", driver], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout, "INSTALLED" in res.stdout, (venv / "kept").exists()


def test_a_worker_skips_the_install_only_on_an_image_of_its_version(tmp_path: Path) -> None:
    out, installed, venv_kept = _install_base(tmp_path, VERSION)
    assert not installed and venv_kept and f"baked image {VERSION}" in out
    # a stale image: its venv goes and everything installs afresh
    out, installed, venv_kept = _install_base(tmp_path, "fedcba9876543210")
    assert installed and not venv_kept and "installing afresh" in out
    assert not (tmp_path / "baked-version").exists()
    # Debian 12 (no baked image): installs as before, nothing removed
    out, installed, venv_kept = _install_base(tmp_path, None)
    assert installed and venv_kept


# --- the wait, against the stand-in ---------------------------------------------------------------


def _client(standin: Standin, monkeypatch: pytest.MonkeyPatch) -> compute.ComputeClient:
    """The client the provider builds: gcloud's endpoint variable, the operator's token."""
    monkeypatch.delenv(compute.ENDPOINT_ENV, raising=False)
    monkeypatch.setenv(
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE", standin.env()["CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE"]
    )
    monkeypatch.setenv("GOOGLE_OAUTH_ACCESS_TOKEN", "token-operator")
    import os

    return compute_client(os.environ)


def _steps(standin: Standin, *changes: Callable[[], None]) -> Callable[[float], None]:
    """A sleep that applies the next change to the stand-in's builder at each poll."""
    pending = list(changes)

    def sleep(_seconds: float) -> None:
        if pending:
            pending.pop(0)()

    return sleep


def test_the_wait_returns_once_the_builder_is_terminated_with_its_verdict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with google_standin() as standin:
        standin.instance_status[BUILDER] = "STAGING"
        client = _client(standin, monkeypatch)
        sleep = _steps(
            standin,
            lambda: standin.instance_status.update({BUILDER: "RUNNING"}),
            lambda: standin.guest_attributes.update({BUILDER: {KEY: f"ok {VERSION}"}}),
            lambda: standin.instance_status.update({BUILDER: "STOPPING"}),
            lambda: standin.instance_status.update({BUILDER: "TERMINATED"}),
        )
        assert wait_for_builder(client, REF, VERSION, 600, sleep=sleep) == f"ok {VERSION}"
        # every request carried the operator's token; the attribute was asked by its key
        assert all(auth == "Bearer token-operator" for _, _, auth, _ in standin.requests)
        assert any(
            "getGuestAttributes?variableKey=llamaresttest%2Fbake" in p for _, p, _, _ in standin.requests
        )


def test_a_verdict_seen_while_running_counts_when_a_stopped_vm_answers_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with google_standin() as standin:
        standin.instance_status[BUILDER] = "RUNNING"
        standin.guest_attributes[BUILDER] = {KEY: f"ok {VERSION}"}
        client = _client(standin, monkeypatch)
        sleep = _steps(
            standin,
            lambda: (
                standin.guest_attributes.clear(),
                standin.instance_status.update({BUILDER: "TERMINATED"}),
            ),
        )
        assert wait_for_builder(client, REF, VERSION, 600, sleep=sleep) == f"ok {VERSION}"


@pytest.mark.parametrize(
    ("attribute", "status", "said"),
    [
        (
            f"failed {VERSION}: step 'pull the base images' exited with status 1 (line 9)",
            "RUNNING",
            "says: failed",
        ),
        (None, "TERMINATED", "it recorded no verdict"),
        ("ok 1111111111111111", "TERMINATED", "its last word was 'ok 1111111111111111'"),
    ],
    ids=["script-failed", "stopped-without-verdict", "other-version"],
)
def test_a_failed_bake_says_why_and_where_the_log_is(
    monkeypatch: pytest.MonkeyPatch, attribute: str | None, status: str, said: str
) -> None:
    with google_standin() as standin:
        standin.instance_status[BUILDER] = status
        if attribute is not None:
            standin.guest_attributes[BUILDER] = {KEY: attribute}
        with pytest.raises(BakeFailed) as failed:
            wait_for_builder(_client(standin, monkeypatch), REF, VERSION, 600, sleep=lambda _s: None)
        assert said in str(failed.value)
        assert f"gcloud compute instances get-serial-port-output {BUILDER} --zone {ZONE}" in str(failed.value)


def test_a_builder_that_never_finishes_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with google_standin() as standin:
        standin.instance_status[BUILDER] = "RUNNING"
        with pytest.raises(BakeFailed, match="still RUNNING after 45 min"):
            wait_for_builder(
                _client(standin, monkeypatch), REF, VERSION, 45 * 60, sleep=sleep, clock=lambda: now[0]
            )
        # a missing builder is said as such
        with pytest.raises(BakeFailed, match="does not exist"):
            wait_for_builder(
                _client(standin, monkeypatch),
                compute.InstanceRef(PROJECT, ZONE, "gone"),
                VERSION,
                60,
                sleep=sleep,
            )


def test_the_provider_creates_on_ok_and_fails_pulumi_up_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    props = {
        "project": PROJECT,
        "zone": ZONE,
        "instance": BUILDER,
        "instance_id": "4815162342108",
        "version": VERSION,
        "timeout_seconds": 60,
        "poll_seconds": 0,
    }
    with google_standin() as standin:
        _client(standin, monkeypatch)
        standin.instance_status[BUILDER] = "TERMINATED"
        standin.guest_attributes[BUILDER] = {KEY: f"ok {VERSION}"}
        created = BuilderWaitProvider().create(props)
        assert created.id == f"{BUILDER}:{VERSION}" and created.outs["verdict"] == f"ok {VERSION}"
        standin.guest_attributes[BUILDER] = {KEY: f"failed {VERSION}: step 'install packages'"}
        with pytest.raises(Exception, match=r"baking the worker image failed: .*install packages.*serial"):
            BuilderWaitProvider().create(props)
    # a new builder (id) or version replaces the wait; nothing else does
    diff = BuilderWaitProvider().diff("x", props, {**props, "version": "f" * 16})
    assert diff.replaces == ["version"]
    assert BuilderWaitProvider().diff("x", props, dict(props)).changes is False
