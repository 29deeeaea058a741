"""The experiment matrix: tools x APIs x repetitions, in the order runs are started.

The order is interleaved: every API x tool pair gets its repetition 1 before any gets its repetition 2,
so a batch cut short still has a comparable first repetition of everything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, order=True)
class RunKey:
    repetition: int  # first: the interleaved order sorts on it
    api: str
    tool: str

    @property
    def rel_dir(self) -> Path:
        return Path(self.api) / self.tool / f"run-{self.repetition}"

    @property
    def label(self) -> str:
        return f"{self.api}/{self.tool}/run-{self.repetition}"


def expand(apis: tuple[str, ...], tools: tuple[str, ...], runs: int) -> tuple[RunKey, ...]:
    """Every run, interleaved by repetition, then in the given API order, then tool order."""
    return tuple(RunKey(rep, api, tool) for rep in range(1, runs + 1) for api in apis for tool in tools)


def order_index(keys: tuple[RunKey, ...]) -> dict[RunKey, int]:
    return {key: i for i, key in enumerate(keys)}


def write(batch_dir: Path, keys: tuple[RunKey, ...], settings: dict[str, Any]) -> Path:
    path = batch_dir / "plan.json"
    data = {
        "settings": settings,
        "runs": [
            {"api": k.api, "tool": k.tool, "repetition": k.repetition, "dir": str(k.rel_dir)} for k in keys
        ],
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read(batch_dir: Path) -> tuple[tuple[RunKey, ...], dict[str, Any]]:
    data = json.loads((batch_dir / "plan.json").read_text(encoding="utf-8"))
    keys = tuple(RunKey(int(r["repetition"]), r["api"], r["tool"]) for r in data["runs"])
    return keys, data.get("settings", {})
