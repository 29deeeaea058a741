"""An experiment container cannot reach the metadata server while the host can.

A listener on 169.254.169.254:80 in a network namespace of the test (reached from the host through a
veth pair and a /32 route, i.e. forwarded like the real metadata server on a VM) plays the metadata
server; a container on an ordinary bridge network of the Docker engine under test (DOCKER_HOST) plays
an experiment. The DOCKER-USER chain is the host's, shared by every engine on it: the test removes its
rule, route, veth and namespace afterwards.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from remote_runner.common.process import execute
from remote_runner.experiment import metadata_guard

ADDRESS = metadata_guard.METADATA_ADDRESS
IMAGE = "debian:bookworm-slim"


def run(*argv: str) -> str:
    res = execute(list(argv), timeout=60)
    assert res.ok, f"{' '.join(argv)}: {res.output}"
    return res.output


@pytest.fixture
def metadata_server() -> Iterator[None]:
    tag = f"{os.getpid() % 100000}"
    ns, host_if, ns_if = f"llrt-md-{tag}", f"llmdh{tag}", f"llmdn{tag}"
    run("ip", "netns", "add", ns)
    server: subprocess.Popen[bytes] | None = None
    try:
        run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        run("ip", "link", "set", ns_if, "netns", ns)
        run("ip", "addr", "add", "192.168.254.1/30", "dev", host_if)
        run("ip", "link", "set", host_if, "up")
        for argv in (
            ["ip", "addr", "add", "192.168.254.2/30", "dev", ns_if],
            ["ip", "addr", "add", f"{ADDRESS}/32", "dev", ns_if],
            ["ip", "link", "set", ns_if, "up"],
            ["ip", "link", "set", "lo", "up"],
            ["ip", "route", "add", "default", "via", "192.168.254.1"],
        ):
            run("ip", "netns", "exec", ns, *argv)
        run("ip", "route", "add", f"{ADDRESS}/32", "via", "192.168.254.2")
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns, "python3", "-m", "http.server", "--bind", ADDRESS, "80"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # A shared 2-core machine can take a while to start Python in the namespace.
        deadline = time.monotonic() + 60
        while not execute(["curl", "-sf", "-m", "1", f"http://{ADDRESS}/"], timeout=5).ok:
            assert server.poll() is None, "the stand-in metadata server exited"
            assert time.monotonic() < deadline, "the stand-in metadata server did not answer within 60 s"
            time.sleep(0.2)
        yield
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        execute(["ip", "route", "del", f"{ADDRESS}/32", "via", "192.168.254.2"], timeout=30)
        execute(["ip", "link", "del", host_if], timeout=30)
        execute(["ip", "netns", "del", ns], timeout=30)
        metadata_guard.remove()


@pytest.fixture
def network() -> Iterator[str]:
    name = f"llrt-md-test-{os.getpid()}"
    run("docker", "network", "create", name)
    try:
        yield name
    finally:
        execute(["docker", "network", "rm", name], timeout=60)


def container_connects(network: str) -> bool:
    probe = f"timeout 5 bash -c 'echo > /dev/tcp/{ADDRESS}/80'"
    res = execute(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            network,
            "--cpus",
            "0.5",
            "--memory",
            "64m",
            IMAGE,
            "bash",
            "-c",
            probe,
        ],
        timeout=60,
    )
    return res.ok


def test_an_experiment_container_cannot_reach_the_metadata_server_while_the_host_can(
    metadata_server: None, network: str
) -> None:
    assert execute(["curl", "-sf", "-m", "5", f"http://{ADDRESS}/"], timeout=10).ok, "host cannot reach it"
    # Without the rule the container gets through: the test can fail.
    assert metadata_guard.remove().ok
    assert container_connects(network), "the stand-in is not reachable from containers at all"

    first = metadata_guard.ensure()
    assert first.ok and "now rejects" in first.message, first.message
    again = metadata_guard.ensure()
    assert again.ok and "already" in again.message, again.message
    assert run("iptables", "-S", metadata_guard.CHAIN).count(metadata_guard.COMMENT) == 1

    assert not container_connects(network)
    assert execute(["curl", "-sf", "-m", "5", f"http://{ADDRESS}/"], timeout=10).ok, "the host lost it"


def test_the_guard_reports_a_missing_iptables_with_what_to_install() -> None:
    result = metadata_guard.ensure(binary="/nonexistent/iptables")
    assert not result.ok
    assert "apt-get install iptables" in result.message
