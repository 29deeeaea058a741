"""Small JSON status files the driver rewrites while `status` reads them (workers.json, spend.json):
written whole or not at all (a temporary file renamed over the old one), never fatal."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("remote_runner.common.jsonfile")


def write(path: Path, doc: Any) -> bool:
    """Writes ``doc`` to ``path`` atomically; False (and a warning) when it could not: a status file
    that cannot be written costs ``status`` its freshness, never the batch."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        log.warning("cannot write %s: %s", path, exc)
        return False
    return True


def read(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None (missing, half-written by an older writer, not an object)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
