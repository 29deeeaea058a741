"""``python -m tests.rehearsal [one-vm|spot|cluster|exit-paths|all]`` (scripts/rehearse.sh runs it)."""

from __future__ import annotations

import logging
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from tests.rehearsal.scenarios import SCENARIOS, RehearsalFailure, run_scenario


def log(text: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} {text}", flush=True)


def main(argv: list[str]) -> int:
    # The deploy provider's progress (stacks.deploy.progress) on the console, like `pulumi up` shows it.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for handler in logging.getLogger().handlers:  # pulumi.log repeats progress() on the root logger
        handler.addFilter(lambda record: record.name != "root")
    for noisy in ("paramiko", "urllib3", "google", "gcp_storage_emulator"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    wanted = argv[0] if argv else "all"
    names = list(SCENARIOS) if wanted == "all" else [wanted]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario {unknown[0]}; choose from: {', '.join(SCENARIOS)}, all", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"rehearsal-{name}-") as work:
            try:
                run_scenario(name, Path(work), log)
            except RehearsalFailure as exc:
                log(f"[rehearse {name}] FAILED: {exc}")
                failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
