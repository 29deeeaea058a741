"""The cluster's startup scripts (head and worker) and their Ray unit: rendered text, order of the
steps, values that stay inert, and the Docker credential helper run for real against a stand-in of
the metadata server."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from remote_runner.common.process import ProcessResult, execute
from remote_runner.experiment import metadata_guard
from stacks.ray_nodes import (
    DASHBOARD_AGENT_GRPC_PORT,
    DASHBOARD_AGENT_LISTEN_PORT,
    DASHBOARD_PORT,
    GCS_PORT,
    GUARD_SCRIPT_PATH,
    HEAD_PORTS,
    MAX_WORKER_PORT,
    MIN_WORKER_PORT,
    NODE_MANAGER_PORT,
    NODE_PORTS,
    OBJECT_MANAGER_PORT,
    RayNode,
    container_guard_rules,
    ray_guard_ports,
    render_guard_script,
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
        "install_base",  # packages and Docker, unless the image is baked (install_base's own test)
        "guard_containers",
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
    # The dashboard listens beyond loopback: the workers' agents report to it (firewall: worker tag).
    assert (
        f"--port={GCS_PORT}" in head
        and "--dashboard-host=0.0.0.0" in head
        and "--ray-client-server-port=10001" in head
        and "experiment_slot" not in head
    )
    assert "--head" not in worker and f"--address=10.0.0.2:{GCS_PORT}" in worker
    exec_start = next(line for line in worker.splitlines() if line.startswith("ExecStart="))
    assert """'--resources={"experiment_slot":2}'""" in exec_start
    opened = {int(p) for p in HEAD_PORTS if "-" not in p} | {int(p) for p in NODE_PORTS if "-" not in p}
    assert opened == {
        GCS_PORT,
        DASHBOARD_PORT,
        NODE_MANAGER_PORT,
        OBJECT_MANAGER_PORT,
        DASHBOARD_AGENT_GRPC_PORT,
        DASHBOARD_AGENT_LISTEN_PORT,
    }
    assert str(DASHBOARD_PORT) not in NODE_PORTS  # only the head has a dashboard
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
    # Pointed at the stand-in the way Google's own clients are: GCE_METADATA_HOST=host:port.
    host = metadata_url.removeprefix("http://").split("/", 1)[0]
    env = {"PATH": "/usr/bin:/bin", "GCE_METADATA_HOST": host}
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


# --- the guards against experiment containers (issue 19) -------------------------------------------


def test_container_guard_rules_reject_new_tcp_from_docker_bridges_in_input_and_docker_user() -> None:
    rules = container_guard_rules(["6379", "10002:10999"])
    assert len(rules) == 2 * 2 * 2  # chains x bridges x ports
    assert rules[0] == [
        "INPUT",
        "-i",
        "docker0",
        "-p",
        "tcp",
        "-m",
        "conntrack",
        "--ctstate",
        "NEW",
        "--dport",
        "6379",
        "-m",
        "comment",
        "--comment",
        "llamaresttest-ray-guard",
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
    ]
    seen = {(r[0], r[2], r[r.index("--dport") + 1]) for r in rules}
    assert seen == {
        (chain, bridge, port)
        for chain in ("INPUT", "DOCKER-USER")
        for bridge in ("docker0", "br-+")
        for port in ("6379", "10002:10999")
    }
    for rule in rules:
        assert rule[-4:] == ["-j", "REJECT", "--reject-with", "tcp-reset"]
        assert rule[rule.index("--comment") : rule.index("--comment") + 2] == [
            "--comment",
            "llamaresttest-ray-guard",
        ]
        if rule[0] == "DOCKER-USER":
            # Leaving its bridge only: two containers of one experiment network still talk freely.
            assert rule[3:6] == ["!", "-o", rule[2]]
        else:
            assert "-o" not in rule
    for bad in ("", "http", "0", "65536", "10:5", "6379,6380", "1-2"):
        with pytest.raises(ValueError):
            container_guard_rules([bad])


def test_the_guard_covers_every_port_the_units_pin() -> None:
    """Every ``--*-port=N`` of both units and the worker range are guarded, and so are the Prometheus
    ports the unit's environment pins (measured listening on 0.0.0.0 of a head, issue 19)."""
    ports = set(ray_guard_ports())
    pinned: set[str] = set()
    for unit in (render_unit(RayNode("head")), render_unit(RayNode("worker", "10.0.0.2", 2))):
        exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
        pinned |= set(re.findall(r"--[a-z-]*port=(\d+)", exec_start))
        env = " ".join(line for line in unit.splitlines() if line.startswith("Environment="))
        pinned |= set(re.findall(r"_METRIC_PORT=(\d+)", env))
    assert "10001" in pinned and "8265" in pinned and "44217" in pinned and "44227" in pinned
    assert str(MIN_WORKER_PORT) in pinned and str(MAX_WORKER_PORT) in pinned
    pinned -= {str(MIN_WORKER_PORT), str(MAX_WORKER_PORT)}
    assert ports == pinned | {f"{MIN_WORKER_PORT}:{MAX_WORKER_PORT}"}
    # The firewall's ports are all among them (in the firewall's own range syntax).
    assert {p.replace("-", ":") for p in (*HEAD_PORTS, *NODE_PORTS)} <= ports


@pytest.mark.parametrize("node", [RayNode("head"), RayNode("worker", "10.0.0.2", 2)], ids=["head", "worker"])
def test_the_ray_unit_reinstalls_the_guards_and_turns_token_auth_on(node: RayNode) -> None:
    unit = render_unit(node).splitlines()
    service = unit[unit.index("[Service]") :]
    pre = [line for line in service if line.startswith("ExecStartPre=")]
    assert pre == ["ExecStartPre=/usr/local/sbin/llamaresttest-guards"]
    assert service.index(pre[0]) < next(i for i, line in enumerate(service) if line.startswith("ExecStart="))
    assert "Environment=RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=/etc/llamaresttest/ray-token" in service


def _guard_script(tmp_path: Path) -> Path:
    text = render_guard_script([metadata_guard.CHAIN, *metadata_guard.rule()])
    script = tmp_path / "llamaresttest-guards"
    script.write_text(text)
    script.chmod(0o755)
    return script


def test_the_guard_script_parses_and_passes_shellcheck(tmp_path: Path) -> None:
    script = _guard_script(tmp_path)
    assert execute(["bash", "-n", str(script)], timeout=30).ok
    res = execute(["shellcheck", "--shell=bash", "--severity=style", str(script)], timeout=60)
    assert res.returncode != 127, "shellcheck missing: scripts/bootstrap.sh installs it"
    assert res.ok, res.output
    # The head's and the workers' scripts carry exactly this text, installed at GUARD_SCRIPT_PATH.
    for cluster, params in ((HEAD, PARAMS), (WORKER, WORKER_PARAMS)):
        text = render_cluster_script(params, cluster)
        assert f"GUARD_SCRIPT={shlex.quote(script.read_text())}\n" in text
        assert f"GUARD_SCRIPT_PATH={GUARD_SCRIPT_PATH}\n" in text


def test_the_guard_script_installs_every_rule_once_with_real_iptables(tmp_path: Path) -> None:
    """Run in a network namespace of its own (its own iptables tables, nothing of the machine's):
    the first run adds the metadata rule and every Ray rule, the second finds them all."""
    script = _guard_script(tmp_path)
    ns = f"llrt-guard-{os.getpid()}"
    created = execute(["ip", "netns", "add", ns], timeout=30)
    assert created.ok, created.output
    try:
        first = execute(["ip", "netns", "exec", ns, str(script)], timeout=120)
        assert first.ok, first.output
        total = 1 + len(container_guard_rules(ray_guard_ports()))
        assert f"{total} of {total} rules added" in first.output
        again = execute(["ip", "netns", "exec", ns, str(script)], timeout=120)
        assert again.ok, again.output
        assert f"0 of {total} rules added" in again.output
        listed = execute(["ip", "netns", "exec", ns, "iptables", "-w", "5", "-S"], timeout=60)
        assert listed.ok, listed.output
        assert listed.output.count("llamaresttest-ray-guard") == total - 1
        assert listed.output.count("experiment containers never reach the metadata server") == 1
        assert "-A INPUT -i docker0 -p tcp -m conntrack --ctstate NEW -m tcp --dport 6379" in listed.output
        assert (
            "-A DOCKER-USER -i br-+ ! -o br-+ -p tcp -m conntrack --ctstate NEW -m tcp --dport 10002:10999"
            in (listed.output)
        )
    finally:
        execute(["ip", "netns", "del", ns], timeout=30)


# --- the Ray token ----------------------------------------------------------------------------------

RAY_TOKEN = "b1c9f1e0aa7d4c51a4e2f7d53e9b06c2b1c9f1e0aa7d4c51a4e2f7d53e9b06c2"


class _TokenMetadata(BaseHTTPRequestHandler):
    """The metadata server's custom attribute, as GCE serves instance metadata values."""

    token = RAY_TOKEN

    def do_GET(self) -> None:
        if (
            self.path == "/computeMetadata/v1/instance/attributes/ray-auth-token"
            and self.headers.get("Metadata-Flavor") == "Google"
            and type(self).token
        ):
            body, status = type(self).token.encode(), 200
        else:
            body, status = b"not found", 404
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def token_metadata_host() -> Iterator[str]:
    _TokenMetadata.token = RAY_TOKEN
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenMetadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _run_node_function(tmp_path: Path, cluster: ClusterParams, commands: str, **env: str) -> ProcessResult:
    script = tmp_path / "node.sh"
    script.write_text(render_cluster_script(PARAMS if cluster is HEAD else WORKER_PARAMS, cluster))
    probe = tmp_path / "probe.sh"
    probe.write_text(f"source {shlex.quote(str(script))}\n{commands}\n")
    return execute(["bash", str(probe)], timeout=120, env={"PATH": os.environ["PATH"], **env})


@pytest.mark.parametrize("cluster", [HEAD, WORKER], ids=["head", "worker"])
def test_the_token_goes_from_the_metadata_server_into_a_root_only_file_and_never_into_the_log(
    tmp_path: Path, token_metadata_host: str, cluster: ClusterParams
) -> None:
    token_file = tmp_path / "etc" / "llamaresttest" / "ray-token"
    commands = f"""RAY_TOKEN_FILE={shlex.quote(str(token_file))}
install_ray_token
echo "CHANGED=$RAY_TOKEN_CHANGED"
RAY_TOKEN_CHANGED=0
install_ray_token
echo "CHANGED=$RAY_TOKEN_CHANGED"
"""
    # The script reads GCE_METADATA_HOST (as Google's clients do) when it is sourced.
    result = _run_node_function(tmp_path, cluster, commands, GCE_METADATA_HOST=token_metadata_host)
    assert result.ok, result.output
    assert token_file.read_text() == RAY_TOKEN  # byte for byte: no newline added
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    assert oct(token_file.parent.stat().st_mode & 0o777) == "0o700"
    assert (token_file.stat().st_uid, token_file.stat().st_gid) == (0, 0)
    assert result.output.count("CHANGED=1") == 1 and result.output.index("CHANGED=1") < result.output.index(
        "CHANGED=0"
    )
    assert f"{token_file} is up to date" in result.output
    assert RAY_TOKEN not in result.output
    assert [p.name for p in token_file.parent.iterdir()] == ["ray-token"]  # no temporary file left


def test_a_node_without_its_token_fails_the_step_instead_of_starting_ray_open(
    tmp_path: Path, token_metadata_host: str
) -> None:
    _TokenMetadata.token = ""
    token_file = tmp_path / "etc" / "llamaresttest" / "ray-token"
    result = _run_node_function(
        tmp_path,
        WORKER,
        f"RAY_TOKEN_FILE={shlex.quote(str(token_file))}\nCURL_RETRY=()\ninstall_ray_token\necho not reached",
        GCE_METADATA_HOST=token_metadata_host,
    )
    assert result.returncode == 1, result.output
    assert "not reached" not in result.output
    assert "has no readable ray-auth-token" in result.output
    assert not token_file.exists() and list(token_file.parent.iterdir()) == []
    # In the node's steps the token comes before Ray's unit: no node starts Ray without it.
    steps = _function(render_cluster_script(WORKER_PARAMS, WORKER), "cluster_node_steps")
    assert steps.index("install_ray_token") < steps.index("install_ray_unit")


def test_no_cluster_node_downloads_models_at_boot(tmp_path: Path) -> None:
    """The head runs no experiment; a worker fetches the models itself before its first run of a
    tool that needs them (remote_runner/experiment/models.py), so its boot skips about 10 GB."""
    check = "download_models\ntype download_models | grep -c gcs_get || true"
    for role, name in ((HEAD, "head"), (WORKER, "worker")):
        (tmp_path / name).mkdir()
        node = _run_node_function(tmp_path / name, role, check)
        assert node.ok, node.output
        assert f"cluster {name}: no models at boot" in node.output
        assert node.output.strip().endswith("0")
