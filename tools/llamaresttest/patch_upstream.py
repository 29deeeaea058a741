"""Adapts upstream llamarest.py to the harness at image build time, failing the build loudly if
upstream no longer has what is patched (each pattern must occur exactly once):

- the hard-coded one-hour limit in main() becomes the budget the entrypoint passes in TIME_BUDGET;
- the clock: upstream's starts after the models load, so it overshoots; it becomes the one
  absolute deadline of the whole run (TOOL_DEADLINE, epoch seconds, set by the entrypoint);
- both models are opened with n_threads and n_threads_batch from LLAMA_THREADS (the container's CPU
  limit) instead of llama-cpp-python's default (half of the host's CPUs, blind to the quota);
- a parameter without a description must not crash the tool (KeyError: 'description' at line 630:
  blog, features-service and market of the 11 real Swagger specs, and restcountries converted, have
  such parameters).

The model paths stay as upstream has them (../../../ex.gguf, ../../../ipd.gguf, relative to the
working directory); the entrypoint links the mounted models there.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_THREADS = 'n_threads=int(os.environ["LLAMA_THREADS"]), n_threads_batch=int(os.environ["LLAMA_THREADS"])'
PATCHES = [
    (
        "    time_limit = 3600\n",
        '    time_limit = float(os.environ["TOOL_DEADLINE"]) - start_time\n',
    ),
    (
        "if _param in parameter['description'] and _param != parameter['name']:",
        "if _param in parameter.get('description', '') and _param != parameter['name']:",
    ),
    (
        'llama_ex = Llama(model_path="../../../ex.gguf")',
        f'llama_ex = Llama(model_path="../../../ex.gguf", {_THREADS})',
    ),
    (
        'llama_ipd = Llama(model_path="../../../ipd.gguf")',
        f'llama_ipd = Llama(model_path="../../../ipd.gguf", {_THREADS})',
    ),
]


def patch(text: str) -> str:
    for old, new in PATCHES:
        count = text.count(old)
        if count != 1:
            raise SystemExit(f"upstream changed: expected exactly one {old.strip()!r}, found {count}")
        text = text.replace(old, new)
    if not re.search(r"^import os$", text, re.MULTILINE):
        raise SystemExit("upstream changed: llamarest.py no longer imports os")
    return text


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: patch_upstream.py LLAMAREST_PY", file=sys.stderr)
        return 2
    path = Path(argv[1])
    path.write_text(patch(path.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"patched {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
