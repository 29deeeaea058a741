"""What the last results upload did, kept beside the batch for ``status`` (and the operator).

Every sync (after each run, and the final one) writes ``<batch>/.upload-state.json``: when it ran,
where to, how many files went up or were already there, and what is not yet in the bucket (pending,
and deferred: files of experiments still running). A dot file, so the uploader itself never sends
it. ``status`` shows it, so results that are only on the VM's disk are visible at a glance.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from remote_runner.common import clock

STATE_NAME = ".upload-state.json"
LISTED = 10  # pending files named in the state (the count is always complete)


def document(result: Any, now: float) -> dict[str, Any]:
    """Pure: the state of one sync (``result`` is an upload.SyncResult)."""
    return {
        "at": now,
        "target": f"gs://{result.bucket}/{result.prefix}/",
        "complete": bool(result.complete),
        "uploaded": len(result.uploaded),
        "unchanged": len(result.unchanged),
        "pending": len(result.pending),
        "pending_files": list(result.pending[:LISTED]),
        "deferred": len(result.deferred),
        "errors": len(result.errors),
        "first_error": result.errors[0] if result.errors else None,
    }


def record(batch_dir: Path, result: Any) -> None:
    """Writes the state in one move (a reader never sees half of it); never raises."""
    path = Path(batch_dir) / STATE_NAME
    try:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(document(result, clock.now()), sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def read(batch_dir: Path) -> dict[str, Any] | None:
    try:
        value = json.loads((Path(batch_dir) / STATE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def line(state: dict[str, Any] | None, now: float) -> str:
    """Pure: the status line, e.g. "last upload 3m12s ago to gs://b/p/batch-x/: complete"."""
    if state is None:
        return "last upload: none yet (results are only on this machine's disk)"
    ago = max(0, int(now - float(state.get("at") or now)))
    when = f"{ago // 3600}h{ago % 3600 // 60:02d}m{ago % 60:02d}s ago"
    if state.get("complete"):
        what = "complete"
        if state.get("deferred"):
            what += f", {state['deferred']} file(s) of running experiments not yet sent"
    else:
        names = ", ".join(state.get("pending_files") or [])
        what = f"NOT uploaded yet: {state.get('pending', 0)} file(s)" + (f" ({names})" if names else "")
        if state.get("first_error"):
            what += f"; first error: {state['first_error']}"
    return f"last upload {when} to {state.get('target', '?')}: {what}"
