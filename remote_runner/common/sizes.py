"""Sizes in Docker's notation (``512m``, ``16g``, a plain number of bytes): read from settings and
written back in reports, one definition for both directions (pure functions)."""

from __future__ import annotations

import re

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)b?\s*$", re.IGNORECASE)
_BYTES = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
#: Docker refuses a container memory limit below 6 MiB
DOCKER_MIN_MEMORY = 6 * 1024**2


def _size(text: str | int | float, what: str) -> int:
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"not a {what}: {text!r} (use e.g. 512m, 16g or a number of bytes)")
    match = _MEMORY.match(str(text))
    if not match:
        raise ValueError(f"not a {what}: {text!r} (use e.g. 512m, 16g or a number of bytes)")
    return int(float(match.group(1)) * _BYTES[match.group(2).lower()])


def parse_disk_size(text: str | int) -> int:
    """Bytes from ``"0"``, ``"500m"``, ``"2g"`` or a plain number of bytes (like :func:`parse_memory`,
    without its 6m minimum); ValueError otherwise."""
    if isinstance(text, int | float) and not isinstance(text, bool) and text < 0:
        raise ValueError(f"size {text!r} is negative")
    return _size(text, "size")


def parse_memory(text: str | int) -> int:
    """Bytes from ``"16g"``, ``"512m"``, ``"64M"`` or a plain number of bytes; ValueError otherwise."""
    value = _size(text, "memory size")
    if value < DOCKER_MIN_MEMORY:
        raise ValueError(f"memory size {text!r} is below Docker's minimum of 6m")
    return value


def format_size(n: int) -> str:
    """Docker's notation for a number of bytes: the largest unit that divides it ("16g", "1536m")."""
    for unit in ("t", "g", "m", "k"):
        if n and n % _BYTES[unit] == 0:
            return f"{n // _BYTES[unit]}{unit}"
    return str(n)
