"""One run's identity: (repetition, API, tool), its folder in the batch and its label.

Its own module, below the plan that orders runs: the experiment, the placements and the journal name
runs by it without depending on how a batch plans them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
