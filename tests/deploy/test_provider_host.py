"""The deploy provider as `pulumi up`/`destroy` really run it: `python -m pulumi.dynamic` (what
`pulumi-resource-pulumi-python` starts) in a fresh process, driven over gRPC with the stubs of the
installed `pulumi` package, the provider itself arriving pickled in ``__provider`` as the engine sends
it. The Compute API is the local stand-in (LLAMARESTTEST_COMPUTE_API in that process's environment),
the VM the loopback sshd."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dill
import grpc
import pytest
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import proto, rpc
from pulumi.runtime.proto import provider_pb2_grpc

from stacks import deploy, systemd
from stacks.compute import ENDPOINT_ENV, InstanceRef
from tests.services import free_port

from .compute_standin import ComputeStandin, compute_standin
from .conftest import FAST, Vm

ROOT = Path(__file__).resolve().parents[2]
REF = InstanceRef("research-project-1", "us-central1-a", "llamaresttest-dev")
GCP = {
    deploy.GCP_PROJECT: REF.project,
    deploy.ZONE: REF.zone,
    deploy.INSTANCE: REF.name,
    deploy.INSTANCE_ID: "42",
}
PROVIDER = serialize_provider(deploy.DeployProvider(FAST))
GOLDEN = Path(__file__).parent / "golden" / "providers.json"


@pytest.fixture
def api() -> Iterator[ComputeStandin]:
    with compute_standin() as standin:
        yield standin


@pytest.fixture
def host(api: ComputeStandin) -> Iterator[provider_pb2_grpc.ResourceProviderStub]:
    env = {**os.environ, ENDPOINT_ENV: api.url}
    env.pop(deploy.DELETE_WITHOUT_UPLOAD_ENV, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pulumi.dynamic"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().decode().strip())
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=20)
        yield provider_pb2_grpc.ResourceProviderStub(channel)
        channel.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def struct(props: dict[str, Any]) -> Any:
    return asyncio.new_event_loop().run_until_complete(
        rpc.serialize_properties({**props, "__provider": PROVIDER}, {})
    )


def plain(message: Any) -> dict[str, Any]:
    return rpc.deserialize_properties(message)


def props_of(vm: Vm, **overrides: object) -> dict[str, Any]:
    return vm.props(Path("/nonexistent/bundle.tar.gz"), "a" * 64, {"runs": 1}, **overrides)


def test_check_keeps_the_host_of_a_stopped_vm_and_reports_bad_inputs(
    vm: Vm, host: provider_pb2_grpc.ResourceProviderStub
) -> None:
    olds = props_of(vm, **GCP)
    refreshed = {**olds, deploy.HOST: ""}  # `pulumi refresh` of a stopped VM: no address
    res = host.Check(proto.CheckRequest(urn="urn:x", olds=struct(olds), news=struct(refreshed)))
    assert list(res.failures) == []
    assert plain(res.inputs)[deploy.HOST] == "127.0.0.1"
    fresh = host.Check(
        proto.CheckRequest(urn="urn:x", olds=struct({}), news=struct({**refreshed, deploy.PORT: 0}))
    )
    assert {f.property for f in fresh.failures} == {deploy.HOST}  # no old host to keep: required


def test_diff_of_a_new_address_is_an_update_and_of_a_new_instance_a_replacement(
    vm: Vm, host: provider_pb2_grpc.ResourceProviderStub
) -> None:
    olds = props_of(vm, **GCP)
    moved = host.Diff(
        proto.DiffRequest(
            id="x", urn="urn:x", olds=struct(olds), news=struct({**olds, deploy.HOST: "34.1.1.1"})
        )
    )
    assert moved.changes == proto.DiffResponse.DIFF_SOME
    assert list(moved.replaces) == []
    other = {**olds, deploy.INSTANCE_ID: "43"}
    new_vm = host.Diff(proto.DiffRequest(id="x", urn="urn:x", olds=struct(olds), news=struct(other)))
    assert list(new_vm.replaces) == [deploy.INSTANCE_ID]
    same = host.Diff(
        proto.DiffRequest(id="x", urn="urn:x", olds=struct(olds), news=struct({**olds, deploy.HOST: ""}))
    )
    assert same.changes == proto.DiffResponse.DIFF_NONE


def test_delete_of_a_running_vm_that_does_not_answer_fails_with_what_to_do(
    vm: Vm, host: provider_pb2_grpc.ResourceProviderStub, api: ComputeStandin
) -> None:
    api.add(REF, "RUNNING", "127.0.0.1")
    props = props_of(vm, port=free_port(), **GCP)
    with pytest.raises(grpc.RpcError) as info:
        host.Delete(proto.DeleteRequest(id="x", urn="urn:x", properties=struct(props)), timeout=60)
    details = info.value.details()  # type: ignore[attr-defined]
    assert "the deployment is not deleted" in details
    assert deploy.DELETE_WITHOUT_UPLOAD_ENV in details
    assert ("GET", REF.path) in api.requests


def test_delete_of_a_stopped_vm_starts_it_and_stops_the_runner(
    vm: Vm, host: provider_pb2_grpc.ResourceProviderStub, api: ComputeStandin
) -> None:
    api.add(REF, "TERMINATED")
    api.address_after_start[REF.path] = "127.0.0.1"
    props = props_of(vm, host="", **GCP)  # the state of a refreshed, stopped VM
    (vm.unit_dir / systemd.UNIT_NAME).write_text(systemd.render_unit(str(vm.root)))  # a deployed runner
    host.Delete(proto.DeleteRequest(id="x", urn="urn:x", properties=struct(props)), timeout=60)
    assert ("POST", REF.path + "/start") in api.requests
    assert "Accepted publickey" in vm.sshd_log.read_text()
    assert vm.standin_calls()[:2] == [f"stop {systemd.UNIT_NAME}", f"disable {systemd.UNIT_NAME}"]
    assert not (vm.unit_dir / systemd.UNIT_NAME).exists()


def test_delete_of_a_stopped_vm_that_cannot_start_names_the_command(
    vm: Vm, host: provider_pb2_grpc.ResourceProviderStub, api: ComputeStandin
) -> None:
    api.add(REF, "TERMINATED").start_error = 503
    with pytest.raises(grpc.RpcError) as info:
        host.Delete(
            proto.DeleteRequest(id="x", urn="urn:x", properties=struct(props_of(vm, **GCP))), timeout=60
        )
    assert REF.gcloud("start") in info.value.details()  # type: ignore[attr-defined]
    assert "Accepted publickey" not in vm.sshd_log.read_text()


def test_delete_of_a_vm_that_is_gone_succeeds(
    vm: Vm, host: provider_pb2_grpc.ResourceProviderStub, api: ComputeStandin
) -> None:
    host.Delete(proto.DeleteRequest(id="x", urn="urn:x", properties=struct(props_of(vm, **GCP))), timeout=60)
    assert api.requests == [("GET", REF.path)]


def test_provider_classes_keep_the_names_existing_stacks_were_pickled_with() -> None:
    """The state holds each dynamic resource's provider pickled by module path and class name: moving
    or renaming a class breaks every existing stack's next up/destroy. These blobs were pickled by an
    earlier version; they must load, in a fresh process, into the classes of the same names."""
    blobs = json.loads(GOLDEN.read_text())
    assert set(blobs) == {"stacks.deploy.DeployProvider", "stacks.deploy.BatchNameProvider"}
    script = (
        "import base64, json, sys, dill\n"
        "for name, blob in json.load(sys.stdin).items():\n"
        "    obj = dill.loads(base64.b64decode(blob))\n"
        "    print(name, type(obj).__module__ + '.' + type(obj).__qualname__)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(blobs),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    for line in res.stdout.splitlines():
        wanted, got = line.split()
        assert wanted == got
    # And what this version pickles still names them so.
    for name, provider in (
        ("DeployProvider", deploy.DeployProvider()),
        ("BatchNameProvider", deploy.BatchNameProvider()),
    ):
        raw = base64.b64decode(serialize_provider(provider))
        assert b"stacks.deploy" in raw and name.encode() in raw
        assert type(dill.loads(raw)).__name__ == name  # noqa: S301 (pickled by this test)
