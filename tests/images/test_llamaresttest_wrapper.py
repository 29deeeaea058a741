"""The LlamaRestTest image's own parts, run without the image (it needs GitHub to build): the
entrypoint's checks and thread choice, and the build-time patch of upstream's llamarest.py."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from remote_runner.common.process import execute

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "llamaresttest"


def run_entrypoint(tmp_path: Path, **env: str):
    spec = tmp_path / "spec.json"
    spec.write_text("{}")
    base = {
        "PATH": os.environ["PATH"],
        "HOST": "api",
        "PORT": "9090",
        "SPEC": str(spec),
        "TIME_BUDGET": "5",
        "MODELS_DIR": str(tmp_path / "models"),
        "LLAMARESTTEST_HOME": str(tmp_path / "upstream"),
    }
    base.update(env)
    # A clean environment: nothing of the test runner's leaks into the script.
    return execute(
        ["env", "-i", *(f"{k}={v}" for k, v in base.items()), "bash", str(TOOL / "entrypoint.sh")], timeout=60
    )


def test_missing_models_are_named(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "ex.gguf").write_text("")
    res = run_entrypoint(tmp_path)
    assert res.returncode == 2
    assert "ipd.gguf" in res.output and "missing:" in res.output
    assert f"{tmp_path}/models/ipd.gguf" in res.output
    assert f"{tmp_path}/models/ex.gguf" not in res.output.split("missing:")[1]


def test_missing_environment_is_named(tmp_path: Path) -> None:
    res = run_entrypoint(tmp_path, HOST="", TIME_BUDGET="")
    assert res.returncode == 2
    assert "missing environment: HOST TIME_BUDGET" in res.output


@pytest.mark.parametrize(("cpus", "threads"), [("2.5", 2), ("0.5", 1), ("8", 8)])
def test_models_linked_where_upstream_opens_them_and_threads_from_cpus(
    tmp_path: Path, cpus: str, threads: int
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for name in ("ex.gguf", "ipd.gguf"):
        (models / name).write_text(name)
    # A budget shorter than one model load: the wrapper prepares everything and starts no run.
    res = run_entrypoint(tmp_path, CPUS=cpus)
    assert res.ok, res.output
    assert f"llama threads {threads}" in res.output
    assert "done after 0 runs" in res.output
    workdir = tmp_path / "upstream" / "tool" / "llamaresttest" / "run"
    assert workdir.is_dir()
    for name in ("ex.gguf", "ipd.gguf"):
        # upstream opens ../../../<model> from its working directory
        assert (workdir / ".." / ".." / ".." / name).resolve() == (models / name).resolve()


def load_patcher():
    spec = importlib.util.spec_from_file_location("patch_upstream", TOOL / "patch_upstream.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


UPSTREAM_SHAPE = """import os
import sys

def main():
    start_time = time.time()
    time_limit = 3600
    iteration = 0
    for _param in params:
        if _param in parameter['description'] and _param != parameter['name']:
            pass

if __name__ == "__main__":
    llama_ex = Llama(model_path="../../../ex.gguf")
    llama_ipd = Llama(model_path="../../../ipd.gguf")
    base_url = sys.argv[2]
"""


def test_patch_applies_budget_and_threads() -> None:
    patched = load_patcher().patch(UPSTREAM_SHAPE)
    # one absolute deadline for the whole run, not upstream's clock started after the models load
    assert 'time_limit = float(os.environ["TOOL_DEADLINE"]) - start_time' in patched
    assert "time_limit = 3600" not in patched
    assert patched.count('n_threads=int(os.environ["LLAMA_THREADS"])') == 2
    assert patched.count('n_threads_batch=int(os.environ["LLAMA_THREADS"])') == 2
    # a parameter without a description no longer crashes it (KeyError: 'description')
    assert "parameter.get('description', '')" in patched and "parameter['description']" not in patched
    compile(patched, "llamarest.py", "exec")


def test_patch_refuses_a_changed_upstream() -> None:
    patcher = load_patcher()
    with pytest.raises(SystemExit, match="time_limit"):
        patcher.patch(UPSTREAM_SHAPE.replace("time_limit = 3600", "time_limit = 7200"))
    with pytest.raises(SystemExit, match=r"found 2"):
        patcher.patch(UPSTREAM_SHAPE + UPSTREAM_SHAPE)
    with pytest.raises(SystemExit, match=r"ipd\.gguf"):
        patcher.patch(UPSTREAM_SHAPE.replace('Llama(model_path="../../../ipd.gguf")', "None"))
