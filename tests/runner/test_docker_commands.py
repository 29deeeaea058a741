"""Docker command construction is pure: checked against exact argv lists."""

from __future__ import annotations

import json
from pathlib import Path

from remote_runner.experiment import docker_runtime as d
from remote_runner.experiment.catalog import Api, Tool
from remote_runner.experiment.lifecycle import ExperimentSpec, container_specs
from remote_runner.experiment.run_key import RunKey


def spec(tmp_path: Path, needs_models: bool = False, pinned: bool = True) -> ExperimentSpec:
    api_dir = tmp_path / "apis" / "blog"
    (api_dir / "specifications").mkdir(parents=True)
    return ExperimentSpec(
        batch="batch-20261129T230000Z",
        batch_id="0123456789abcdef",
        key=RunKey(2, "blog", "llamaresttest"),
        attempt=1,
        run_dir=tmp_path / "results" / "run-2",
        api=Api("blog", api_dir, "specifications/blog-openapi.json"),
        tool=Tool("llamaresttest", tmp_path / "tools" / "llamaresttest", needs_models=needs_models),
        budget_seconds=3600,
        cpus=8 if pinned else 0.5,
        api_cpuset="0-7" if pinned else None,
        tool_cpuset="8-15" if pinned else None,
        memory_bytes=16 * 1024**3,
        spec_file=tmp_path / "results" / "specifications" / "blog" / "blog-openapi.json",
        models_dir=tmp_path / "models",
        extra_labels=(("llamaresttest.test", "x"),),
    )


def test_run_cmd_exact(tmp_path: Path):
    s = d.ContainerSpec(
        name="c1",
        image="img",
        network="net",
        aliases=("c1",),
        labels={"b": "2", "a": "1"},
        env={"Z": "1", "A": "x y"},
        mounts=(d.Mount(tmp_path, "/results"), d.Mount(tmp_path / "f", "/s/f", True)),
        cpus=0.5,
        cpuset=None,
        memory_bytes=64 * 1024**2,
        command=("python3", "-u"),
    )
    assert d.run_cmd(s) == [
        "docker",
        "run",
        "--detach",
        "--pull",
        "never",
        "--name",
        "c1",
        "--network",
        "net",
        "--network-alias",
        "c1",
        "--label",
        "a=1",
        "--label",
        "b=2",
        "--env",
        "A=x y",
        "--env",
        "Z=1",
        "--mount",
        f"type=bind,source={tmp_path},target=/results",
        "--mount",
        f"type=bind,source={tmp_path / 'f'},target=/s/f,readonly",
        "--cpus",
        "0.5",
        "--memory",
        "67108864",
        "--memory-swap",
        "67108864",
        "img",
        "python3",
        "-u",
    ]


def test_small_commands():
    assert d.stop_cmd("c", 10) == ["docker", "stop", "-t", "10", "c"]
    assert d.build_cmd("llamaresttest/api-x", Path("/c")) == [
        "docker",
        "build",
        "--pull=false",
        "--force-rm",
        "-t",
        "llamaresttest/api-x",
        "/c",
    ]
    assert d.rm_cmd(["a", "b"]) == ["docker", "rm", "--force", "--volumes", "a", "b"]
    assert d.create_cmd("c", "llamaresttest/api-x", {"k": "v"}) == [
        "docker",
        "create",
        "--pull",
        "never",
        "--name",
        "c",
        "--label",
        "k=v",
        "llamaresttest/api-x",
    ]
    assert d.cp_out_cmd("c", "/api/specifications/x.json", Path("/b/.x.json.tmp")) == [
        "docker",
        "cp",
        "--follow-link",
        "c:/api/specifications/x.json",
        "/b/.x.json.tmp",
    ]
    assert d.ps_by_label_cmd("k=v") == ["docker", "ps", "--all", "--quiet", "--filter", "label=k=v"]
    assert d.network_create_cmd("n", {"k": "v"}) == [
        "docker",
        "network",
        "create",
        "--driver",
        "bridge",
        "--label",
        "k=v",
        "n",
    ]


def test_parse_inspect_output():
    raw = json.dumps(
        [
            {
                "Name": "/c1",
                "Image": "sha256:abc",
                "State": {
                    "Status": "exited",
                    "Running": False,
                    "OOMKilled": True,
                    "ExitCode": 137,
                    "StartedAt": "2026-11-29T23:00:00Z",
                    "FinishedAt": "2026-11-29T23:00:05Z",
                    "Error": "",
                },
                "NetworkSettings": {"Networks": {"net": {"IPAddress": "172.18.0.2"}}},
            }
        ]
    )
    (state,) = d.parse_states(raw)
    assert state.name == "c1" and state.oom_killed and state.exit_code == 137 and state.exited
    assert d.container_ip(raw, "net") == "172.18.0.2" and d.container_ip(raw, "other") is None


def test_experiment_containers_follow_the_contract(tmp_path: Path):
    api, tool = container_specs(spec(tmp_path), "the-net")
    assert api.name == "lrt-01234567-blog-llamaresttest-r2-a1-api" and tool.name.endswith("-tool")
    # the short alias "api" is the tool's HOST whatever the container's name
    assert api.aliases == (api.name, "api") and api.network == tool.network == "the-net"
    assert api.env == {
        "API": "blog",
        "TOOL": "llamaresttest",
        "RUN": "2",
        "TIME_BUDGET": "3600",
        "COVERAGE_INTERVAL": "5",
    }
    assert api.mounts == (d.Mount((tmp_path / "results" / "run-2").resolve(), "/results"),)
    assert (api.cpuset, tool.cpuset, api.cpus) == ("0-7", "8-15", 8)
    assert tool.env["HOST"] == "api" and tool.env["PORT"] == "9090"
    assert tool.env["BASE_URL"] == "http://api:9090" and tool.env["SPEC_FORMAT"] == "openapi3"
    assert tool.env["SPEC"] == "/specifications/blog-openapi.json" and tool.env["CPUS"] == "8"
    assert "MODELS_DIR" not in tool.env
    assert tool.mounts[0].read_only and tool.mounts[0].target == "/specifications/blog-openapi.json"
    # the batch's own copy of the spec, not the catalog's file
    assert tool.mounts[0].source == (tmp_path / "results" / "specifications" / "blog" / "blog-openapi.json")
    # the tool's own output goes into the run folder, writable; nothing else of the run folder is visible
    out = d.Mount((tmp_path / "results" / "run-2" / "tool-output").resolve(), "/tool-output")
    assert tool.mounts[1] == out and not out.read_only and tool.env["TOOL_OUTPUT"] == "/tool-output"
    for c, role in ((api, "api"), (tool, "tool")):
        assert c.labels["llamaresttest.batch"] == "batch-20261129T230000Z"
        assert c.labels["llamaresttest.api"] == "blog" and c.labels["llamaresttest.tool"] == "llamaresttest"
        assert c.labels["llamaresttest.run"] == "2" and c.labels["llamaresttest.role"] == role
        assert c.labels["llamaresttest.test"] == "x"
    # fractional limits: a quota, no cpuset; models mounted read-only only for tools that need them
    _, tool = container_specs(spec(tmp_path / "b", needs_models=True, pinned=False), "n")
    assert tool.cpuset is None and tool.cpus == 0.5 and tool.env["CPUS"] == "0.5"
    assert tool.env["MODELS_DIR"] == "/models"
    assert d.Mount((tmp_path / "b" / "models").resolve(), "/models", True) in tool.mounts


def test_tool_gets_the_spec_of_its_format_and_the_base_path(tmp_path: Path):
    from dataclasses import replace

    from remote_runner.experiment.catalog import Tool

    swagger = tmp_path / "results" / "specifications" / "blog" / "swagger2" / "blog.yaml"
    s = replace(
        spec(tmp_path),
        tool=Tool("llamaresttest", tmp_path, needs_models=True, spec_format="swagger2"),
        tool_spec_file=swagger,
        base_path="/api",
    )
    _, tool = container_specs(s, "the-net")
    assert tool.env["SPEC"] == "/specifications/blog.yaml" and tool.env["SPEC_FORMAT"] == "swagger2"
    assert tool.mounts[0].source == swagger.resolve()
    assert tool.env["BASE_URL"] == "http://api:9090/api"


def test_an_oom_kill_the_engine_missed_is_taken_from_the_kernel_log() -> None:
    """dockerd 20.10 on cgroup v1 with a 6.x kernel reported OOMKilled false for a container its
    memory limit killed (exit 137); the kernel's log names the container's memory cgroup."""
    from remote_runner.experiment.docker_runtime import (
        ContainerState,
        oom_killed_in_kernel_log,
        with_kernel_oom,
    )

    cid = "66f44acbe3cdcb908e2fcf4590c8d3245cf3ced6ae8e5c52891bc86356bde36f"
    log = (
        "[ 3646.058729] python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0\n"
        f"[ 3646.058969] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset={cid},mems_allowed=0,"
        f"oom_memcg=/docker/{cid},task_memcg=/docker/{cid},task=python3,pid=31858,uid=0\n"
    )
    assert oom_killed_in_kernel_log(log, cid)
    assert not oom_killed_in_kernel_log(log, "0" * 64) and not oom_killed_in_kernel_log(log, "")
    killed = ContainerState("tool", False, 137, False, "exited", "", "", "img", container_id=cid)
    other = ContainerState("api", False, 137, False, "exited", "", "", "img", container_id="1" * 64)
    calls = []
    states = with_kernel_oom([killed, other], lambda: calls.append(1) or log)
    assert [s.oom_killed for s in states] == [True, False] and calls == [1]
    clean = ContainerState("api", False, 0, False, "exited", "", "", "img", container_id=cid)
    assert with_kernel_oom([clean], lambda: 1 / 0) == [clean]  # no exit 137: the log is not read
