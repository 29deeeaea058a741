"""The cluster's startup scripts (head and worker) and their Ray unit: rendered text, order of the
steps, values that stay inert, and the Docker credential helper run for real against a stand-in of
the metadata server."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from remote_runner.process import execute
from stacks.ray_nodes import (
    DASHBOARD_AGENT_GRPC_PORT,
    DASHBOARD_AGENT_LISTEN_PORT,
    GCS_PORT,
    HEAD_PORTS,
    MAX_WORKER_PORT,
    MIN_WORKER_PORT,
    NODE_MANAGER_PORT,
    NODE_PORTS,
    OBJECT_MANAGER_PORT,
    RayNode,
    render_unit,
    worker_command,
)
from stacks.startup import ClusterParams, StartupParams, render_cluster_script, render_startup_script
from tests.stacks.test_startup import PARAMS
from tests.stacks.test_startup_behaviour import TOKEN, metadata_url  # noqa: F401 (fixture)

REQUIREMENTS = ("psutil>=5.9", "ray[default]==2.49.2", "google-cloud-storage>=2.14,<4")
HEAD = ClusterParams(RayNode("head"), REQUIREMENTS, "us-central1-docker.pkg.dev")
WORKER = ClusterParams(RayNode("worker", "10.128.0.7", 4), REQUIREMENTS, "us-central1-docker.pkg.dev")
WORKER_PARAMS = StartupParams(
    models_bucket="lab-llm-models",
    models_path="LlamaRestTest",
    ssh_user="llamaresttest",
    client_public_key="",
    host_private_key="",
    host_public_key="",
)


def _function(text: str, name: str) -> str:
    """The body of the last definition of ``name`` (bash runs the last one)."""
    start = text.rindex(f"\n{name}() {{")
    return text[start : text.index("\n}\n", start)]


def test_head_script_is_the_vm_script_with_the_cluster_steps_before_its_ready_marker() -> None:
    vm = render_startup_script(PARAMS)
    head = render_cluster_script(PARAMS, HEAD)
    # Everything of the one VM's script but its last guard, unchanged.
    assert head.startswith(vm[: vm.index('if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then\n  main "$@"')])
    assert "NODE_ROLE='head'\n" in head
    # main runs extra_steps after the models and before "done"; the cluster part redefines it.
    main = _function(head, "main")
    assert main.index("download_models") < main.index("extra_steps") < main.index('step "done"')
    assert head.rindex("\nextra_steps() {") > head.index("\nmain() {")
    assert "cluster_node_steps" in _function(head, "extra_steps").split("{", 1)[1]
    steps = _function(head, "cluster_node_steps")
    assert (
        steps.index("install_node_venv")
        < steps.index("setup_registry_auth")
        < steps.index("install_ray_unit")
    )
    assert head.rstrip().endswith('main "$@"\n  fi\nfi'.rstrip())


def test_worker_script_has_no_ssh_and_joins_the_head() -> None:
    worker = render_cluster_script(WORKER_PARAMS, WORKER)
    assert "NODE_ROLE='worker'\n" in worker
    body = _function(worker, "worker_main")
    for absent in ("setup_sshd", "setup_user", "join_docker_group"):
        assert absent not in body
    order = [
        "install_packages",
        "systemctl enable --now docker",
        "block_metadata_for_containers",
        "download_models",
        "cluster_node_steps",
        'write_marker "$READY_MARKER"',
    ]
    positions = [body.index(step) for step in order]
    assert positions == sorted(positions)
    assert "HOST_PRIVATE_KEY=''\n" in worker and "CLIENT_PUBLIC_KEY=''\n" in worker
    assert "--address=10.128.0.7:6379" in worker
    assert '--resources={"experiment_slot":4}' in worker


@pytest.mark.parametrize("cluster", [HEAD, WORKER], ids=["head", "worker"])
def test_requirements_and_registry_reach_the_script_unchanged(tmp_path: Path, cluster: ClusterParams) -> None:
    hostile = ClusterParams(
        cluster.node, ("ray[default]==2.49.2", "x; touch INJECTED", "$(touch INJECTED)"), "r`touch INJECTED`"
    )
    text = render_cluster_script(PARAMS, hostile)
    part = text[text.index("NODE_ROLE=") : text.index("CREDENTIAL_HELPER_NAME=")]
    probe = tmp_path / "probe.sh"
    probe.write_text(
        part + 'printf "%s\\0" "$NODE_ROLE" "$REGISTRY_HOST" "${NODE_REQUIREMENTS[@]}" "$RAY_UNIT"\n'
    )
    result = execute(["bash", str(probe)], timeout=30, cwd=tmp_path)
    assert result.ok, result.output
    values = result.output.split("\0")[:-1]
    assert values == [
        cluster.node.role,
        hostile.registry_host,
        *hostile.requirements,
        render_unit(cluster.node),
    ]
    assert not (tmp_path / "INJECTED").exists()


def test_ray_units_pin_every_port_the_firewall_opens() -> None:
    head, worker = render_unit(RayNode("head")), render_unit(RayNode("worker", "10.0.0.2", 2))
    for unit in (head, worker):
        assert "Restart=always" in unit and "WantedBy=multi-user.target" in unit
        assert "Requires=docker.service" in unit
        for flag, port in (
            ("--node-manager-port", NODE_MANAGER_PORT),
            ("--object-manager-port", OBJECT_MANAGER_PORT),
            ("--dashboard-agent-grpc-port", DASHBOARD_AGENT_GRPC_PORT),
            ("--dashboard-agent-listen-port", DASHBOARD_AGENT_LISTEN_PORT),
            ("--min-worker-port", MIN_WORKER_PORT),
            ("--max-worker-port", MAX_WORKER_PORT),
        ):
            assert f"{flag}={port}" in unit
        assert "--block" in unit
    assert (
        f"--port={GCS_PORT}" in head
        and "--dashboard-host=127.0.0.1" in head
        and "experiment_slot" not in head
    )
    assert "--head" not in worker and f"--address=10.0.0.2:{GCS_PORT}" in worker
    exec_start = next(line for line in worker.splitlines() if line.startswith("ExecStart="))
    assert """'--resources={"experiment_slot":2}'""" in exec_start
    opened = {int(p) for p in HEAD_PORTS if "-" not in p} | {int(p) for p in NODE_PORTS if "-" not in p}
    assert opened == {
        GCS_PORT,
        NODE_MANAGER_PORT,
        OBJECT_MANAGER_PORT,
        DASHBOARD_AGENT_GRPC_PORT,
        DASHBOARD_AGENT_LISTEN_PORT,
    }
    assert f"{MIN_WORKER_PORT}-{MAX_WORKER_PORT}" in NODE_PORTS


def test_a_worker_needs_a_slot_and_a_plain_head_address() -> None:
    with pytest.raises(ValueError, match="at least one experiment slot"):
        worker_command("10.0.0.2", 0)
    with pytest.raises(ValueError, match="not a head address"):
        worker_command("10.0.0.2 --head", 2)
    with pytest.raises(ValueError, match="a head or a worker"):
        RayNode("driver")


def test_credential_helper_hands_docker_the_metadata_token(tmp_path: Path, metadata_url: str) -> None:  # noqa: F811
    """Docker's credential-helper protocol, run for real: `get` with the registry on stdin prints the
    login; the token comes from the metadata server (a stand-in here) at every call."""
    text = render_cluster_script(PARAMS, HEAD)
    extract = tmp_path / "extract.sh"
    extract.write_text(f"source {tmp_path / 'script.sh'}\nprintf '%s' \"$CREDENTIAL_HELPER_PROGRAM\"\n")
    (tmp_path / "script.sh").write_text(text)
    program = execute(["bash", str(extract)], timeout=30)
    assert program.ok, program.output
    helper = tmp_path / "docker-credential-llamaresttest"
    helper.write_text(program.output)
    assert program.output.startswith("#!/usr/bin/python3\n")
    env = {"PATH": "/usr/bin:/bin", "LLAMARESTTEST_METADATA_URL": metadata_url}
    got = subprocess.run(
        ["python3", str(helper), "get"],
        input="us-central1-docker.pkg.dev\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=True,
    )
    assert json.loads(got.stdout) == {
        "ServerURL": "us-central1-docker.pkg.dev",
        "Username": "oauth2accesstoken",
        "Secret": TOKEN,
    }
    listed = subprocess.run(
        ["python3", str(helper), "list"], capture_output=True, text=True, env=env, timeout=30
    )
    assert (listed.returncode, listed.stdout.strip()) == (0, "{}")
    stored = subprocess.run(
        ["python3", str(helper), "store"], input="{}", capture_output=True, text=True, env=env, timeout=30
    )
    assert (stored.returncode, stored.stdout) == (0, "")


def test_cluster_template_and_values_must_agree() -> None:
    from stacks.startup import CLUSTER_TEMPLATE_PATH

    template = CLUSTER_TEMPLATE_PATH.read_text()
    with pytest.raises(ValueError, match=r"unknown placeholders \['NEW_THING'\]"):
        render_cluster_script(PARAMS, HEAD, template + "X=@NEW_THING@\n")
    with pytest.raises(ValueError, match=r"values never used \['REGISTRY_HOST'\]"):
        render_cluster_script(PARAMS, HEAD, template.replace("@REGISTRY_HOST@", "fixed"))
