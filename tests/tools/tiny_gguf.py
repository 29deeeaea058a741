"""A tiny llama-architecture GGUF model of our own, for tests: random weights, a SentencePiece-style
vocabulary with the byte-fallback tokens <0x00>..<0xFF>, well under 1 MB. It loads in llama.cpp
(llama-cpp-python) and generates (nonsense) tokens, which is all the tool image's tests need.

Written with the ``gguf`` package (the GGUF writer of the llama.cpp project). The metadata keys and
tensor names are those of llama.cpp's "llama" architecture (gguf.constants: MODEL_TENSOR names
``token_embd``, ``blk.N.attn_q`` ...; llama.cpp's SPM vocabulary needs ``tokenizer.ggml.*`` with
token types, where byte tokens have type BYTE).

Usage: ``python -m tests.tools.tiny_gguf OUT.gguf [--layers N] [--seed S]``
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

#: word pieces after the special and byte tokens ("▁" marks a leading space, as in SentencePiece)
WORDS = (
    *"abcdefghijklmnopqrstuvwxyz",
    *("id", "name", "value", "type", "user", "item", "order", "price", "count", "true", "false"),
    *("null", "string", "number", "the", "of", "and", "to", "in", "is", "for", "on", "with", "as"),
    *("at", "by", "from", "this", "that"),
)


@dataclass(frozen=True)
class Shape:
    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    n_ff: int = 128
    context: int = 512


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types: <unk> <s> </s>, the 256 byte tokens, then word pieces."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    pieces = ["▁", *(f"▁{w}" for w in WORDS), *WORDS]
    tokens += pieces
    types += [gguf.TokenType.NORMAL] * len(pieces)
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces))]
    return tokens, scores, [int(t) for t in types]


def write(path: Path, shape: Shape = Shape(), seed: int = 0) -> Path:
    """Writes the model to ``path`` and returns it."""
    tokens, scores, types = vocabulary()
    n_vocab, e, ff = len(tokens), shape.n_embd, shape.n_ff
    rng = np.random.default_rng(seed)

    def weight(*dims: int) -> np.ndarray:
        return (rng.standard_normal(dims) * 0.02).astype(np.float16)

    def ones(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)  # norms stay F32 in llama.cpp

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-random-llama")
    writer.add_context_length(shape.context)
    writer.add_embedding_length(e)
    writer.add_block_count(shape.n_layer)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head)
    writer.add_rope_dimension_count(e // shape.n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    # numpy shapes are (rows, columns): GGUF stores them reversed (ne0 = columns)
    writer.add_tensor("token_embd.weight", weight(n_vocab, e))
    for i in range(shape.n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", ones(e))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{i}.{name}.weight", weight(e, e))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", ones(e))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(ff, e))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(ff, e))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(e, ff))
    writer.add_tensor("output_norm.weight", ones(e))
    writer.add_tensor("output.weight", weight(n_vocab, e))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--layers", type=int, default=Shape.n_layer)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write(args.out, Shape(n_layer=args.layers), args.seed)
    print(f"{args.out}: {args.out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
