"""The experiment matrix: tools x APIs x repetitions, in the order runs are started.

The order is interleaved: every API x tool pair gets its repetition 1 before any gets its repetition 2,
so a batch cut short still has a comparable first repetition of everything. Within a repetition the
order is API then tool, or, with a shuffle seed, a permutation drawn from it (RESTgym shuffles: a
fixed order makes the same runs always share a machine). plan.json keeps the order, so a resumed batch
keeps it, and each run's seed (:func:`run_seed`, from the batch's seed and the run's identity).
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from remote_runner.experiment.run_key import RunKey


def expand(
    apis: tuple[str, ...], tools: tuple[str, ...], runs: int, shuffle_seed: int | None = None
) -> tuple[RunKey, ...]:
    """Every run, interleaved by repetition, then in the given API order, then tool order; with
    ``shuffle_seed``, each repetition's runs in an order drawn from it (the same seed, the same order)."""
    # a reproducible permutation, not a secret: the same seed must give the same order
    rng = random.Random(shuffle_seed) if shuffle_seed is not None else None  # noqa: S311
    out: list[RunKey] = []
    for rep in range(1, runs + 1):
        keys = [RunKey(rep, api, tool) for api in apis for tool in tools]
        if rng is not None:
            rng.shuffle(keys)
        out.extend(keys)
    return tuple(out)


def run_seed(batch_seed: int, key: RunKey) -> int:
    """A run's own seed (0 to 2**31 - 1, what tools' --seed options take), from the batch's seed and
    the run's identity: the same in every attempt and on resume, different between runs."""
    digest = hashlib.sha256(f"{batch_seed}/{key.label}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def order_index(keys: tuple[RunKey, ...]) -> dict[RunKey, int]:
    return {key: i for i, key in enumerate(keys)}


def write(
    batch_dir: Path,
    keys: tuple[RunKey, ...],
    settings: dict[str, Any],
    protocol: dict[str, Any] | None = None,
) -> Path:
    """plan.json: the settings, the protocol block (:func:`remote_runner.batch.presets.protocol`) and the
    runs in the order they start, each with its place in that order and, given the batch's seed, its
    own seed."""
    path = batch_dir / "plan.json"
    seed = settings.get("seed")
    data: dict[str, Any] = {"settings": settings}
    if protocol is not None:
        data["protocol"] = protocol
    data["runs"] = [
        {
            "api": k.api,
            "tool": k.tool,
            "repetition": k.repetition,
            "dir": str(k.rel_dir),
            "order": i,
            **({"seed": run_seed(int(seed), k)} if isinstance(seed, int) else {}),
        }
        for i, k in enumerate(keys)
    ]
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read(batch_dir: Path) -> tuple[tuple[RunKey, ...], dict[str, Any]]:
    data = json.loads((batch_dir / "plan.json").read_text(encoding="utf-8"))
    keys = tuple(RunKey(int(r["repetition"]), r["api"], r["tool"]) for r in data["runs"])
    return keys, data.get("settings", {})
