"""The tiny GGUF model of our own (tests/tools/tiny_gguf.py) and the LlamaRestTest image's Python
layer: the Dockerfile's ``venv`` stage, built offline from the wheelhouse (no GitHub), loads the model
with llama-cpp-python and generates, under the tool's kind of limits (no network, 1 CPU, 512m)."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import pytest

from remote_runner.common.process import execute
from tests.tools import tiny_gguf

VENV_IMAGE = "llamaresttest-test/llamaresttest-venv"
TEST_LABEL = "llamaresttest.test=images-llamaresttest-venv"

GENERATE = r"""
import json, llama_cpp
from llama_cpp import Llama
llm = Llama(model_path="/models/ex.gguf", n_ctx=128, n_threads=1, n_threads_batch=1, verbose=False)
# byte fallback: "{" and the two bytes of "é" are not word pieces of the vocabulary
tokens = llm.tokenize("{é".encode(), add_bos=False)
# </s> (id 2) banned so random weights cannot end the completion at once
out = llm("the user id", max_tokens=8, temperature=0.8, seed=1, logit_bias={2: -1e9})
print("RESULT " + json.dumps({"version": llama_cpp.__version__, "n_vocab": llm.n_vocab(),
      "tokens": tokens, "usage": out["usage"], "text": out["choices"][0]["text"]}))
"""


def test_tiny_model_is_a_small_llama_with_every_byte_token(tmp_path: Path) -> None:
    path = tiny_gguf.write(tmp_path / "tiny.gguf")
    assert 0 < path.stat().st_size < 1_000_000
    reader = gguf.GGUFReader(str(path))
    field = reader.fields["general.architecture"]
    assert bytes(field.parts[field.data[0]]).decode() == "llama"
    tokens_field = reader.fields["tokenizer.ggml.tokens"]
    tokens = [bytes(tokens_field.parts[i]).decode() for i in tokens_field.data]
    types_field = reader.fields["tokenizer.ggml.token_type"]
    types = [int(types_field.parts[i][0]) for i in types_field.data]
    assert tokens[:3] == ["<unk>", "<s>", "</s>"]
    assert tokens[3:259] == [f"<0x{b:02X}>" for b in range(256)]
    assert set(types[3:259]) == {int(gguf.TokenType.BYTE)} and 300 < len(tokens) < 1000
    blocks = {t.name.split(".")[1] for t in reader.tensors if t.name.startswith("blk.")}
    assert blocks == {"0", "1"}
    # the same seed gives the same bytes; another seed other weights
    again = tiny_gguf.write(tmp_path / "again.gguf")
    other = tiny_gguf.write(tmp_path / "other.gguf", seed=1)
    assert again.read_bytes() == path.read_bytes() != other.read_bytes()


@pytest.mark.docker
@pytest.mark.slow
def test_the_image_python_layer_loads_the_tiny_model_and_generates(
    docker_engine: str, project_root: Path, tmp_path: Path
) -> None:
    wheels = execute(["bash", "scripts/wheelhouse.sh", "llamaresttest"], cwd=project_root, timeout=900)
    assert wheels.ok, wheels.tail()
    built = execute(
        [
            "docker",
            "build",
            "-q",
            "--target",
            "venv",
            "--label",
            TEST_LABEL,
            "-t",
            VENV_IMAGE,
            "tools/llamaresttest",
        ],
        cwd=project_root,
        timeout=1800,
    )
    assert built.ok, f"building the venv stage failed:\n{built.tail(40)}"
    models = tmp_path / "models"
    models.mkdir()
    tiny_gguf.write(models / "ex.gguf")
    try:
        res = execute(
            [
                "docker", "run", "--rm", "--network", "none", "--cpus", "1", "--memory", "512m",
                "--label", TEST_LABEL, "-v", f"{models}:/models:ro", VENV_IMAGE, "python", "-c", GENERATE,
            ],
            timeout=300,
        )  # fmt: skip
    finally:
        execute(["docker", "rmi", "-f", VENV_IMAGE], timeout=120)
    assert res.ok, res.tail(40)
    lines = [line for line in res.output.splitlines() if line.startswith("RESULT ")]
    assert lines, res.output
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result["version"] == "0.2.56"  # the pinned release, from the wheelhouse
    assert result["n_vocab"] == len(tiny_gguf.vocabulary()[0])
    # SentencePiece's leading "▁", then "{" as byte 0x7B (token 3 + 0x7B) and "é" as 0xC3 0xA9
    space = tiny_gguf.vocabulary()[0].index("▁")
    assert result["tokens"] == [space, 3 + 0x7B, 3 + 0xC3, 3 + 0xA9]
    # </s> banned: it generates at least the 8 tokens asked for (0.2.56 may count one more)
    assert result["usage"]["completion_tokens"] >= 8 and result["usage"]["prompt_tokens"] >= 2
