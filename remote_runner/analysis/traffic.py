"""Reading ``traffic.sqlite``, whichever schema version the recording proxy wrote (docs/contracts.md).

Schema 1 (``PRAGMA user_version`` 0: images before issue 24) stores headers as JSON text and bodies
as they came. Schema 2 (``user_version`` 2) adds ``requests.packing`` and the table ``dictionaries``:
in a row whose ``packing`` is 1, ``request_headers``, ``request_body``, ``response_headers`` and
``response_body`` are tagged BLOBs (``infrastructure/traffic_packing.py`` writes them): tag 0 and the
value, tag 1 and a zstandard frame, tag 2 and a zstandard frame made with the dictionary whose
``zstd_dict_id`` its header names. Rows with ``packing`` NULL read as schema 1, so a schema-2
database may hold both (an image without zstandard writes only those).

:class:`Unpacker` gives every value back byte for byte; :func:`read_all` is every row decoded (tests
and one-off inspection, not the summaries: they read the columns they need).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zstandard

SCHEMA_VERSION = 2
PACKED = 1
RAW, FRAME, DICT_FRAME = 0, 1, 2
PACKED_COLUMNS = ("request_headers", "request_body", "response_headers", "response_body")


class UnpackError(ValueError):
    """A packed value that cannot be read back (unknown tag, damaged frame, missing dictionary)."""


def connect(db_path: Path) -> sqlite3.Connection:
    """The database, read-only."""
    return sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)


def schema_version(conn: sqlite3.Connection) -> int:
    """2 for the packed schema, 1 for a database of an older image (``user_version`` 0)."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    return version if version else 1


class Unpacker:
    """Decodes the values of one database; loads its dictionaries once."""

    def __init__(self, conn: sqlite3.Connection | None = None) -> None:
        self._plain = zstandard.ZstdDecompressor()
        self._by_dict: dict[int, Any] = {}
        if conn is not None:
            found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'dictionaries'")
            if found.fetchone() is not None:
                for dict_id, content in conn.execute("SELECT zstd_dict_id, content FROM dictionaries"):
                    self.add_dictionary(bytes(content), int(dict_id))

    def add_dictionary(self, content: bytes, dict_id: int | None = None) -> None:
        d = zstandard.ZstdCompressionDict(content)
        self._by_dict[d.dict_id() if dict_id is None else dict_id] = zstandard.ZstdDecompressor(dict_data=d)

    def unpack(self, value: bytes) -> bytes:
        """A tagged value back to the bytes that were recorded."""
        if not value:
            raise UnpackError("empty packed value (no tag)")
        tag, payload = value[0], memoryview(value)[1:]
        try:
            if tag == RAW:
                return bytes(payload)
            if tag == FRAME:
                return bytes(self._plain.decompress(payload))
            if tag == DICT_FRAME:
                dict_id = zstandard.get_frame_parameters(payload).dict_id
                decompressor = self._by_dict.get(dict_id)
                if decompressor is None:
                    raise UnpackError(f"no dictionary {dict_id} in table dictionaries")
                return bytes(decompressor.decompress(payload))
        except zstandard.ZstdError as exc:
            raise UnpackError(f"damaged zstandard frame: {exc}") from exc
        raise UnpackError(f"unknown packing tag {tag}")

    def body(self, value: object, packing: object) -> bytes | None:
        """A body column as bytes (None stays None); text stored by an old image is read as UTF-8."""
        if value is None:
            return None
        if isinstance(value, str):
            return value.encode("utf-8", "replace")
        raw = bytes(value)  # type: ignore[call-overload]
        return self.unpack(raw) if packing == PACKED else raw

    def headers(self, value: object, packing: object) -> str | None:
        """A headers column as its JSON text (as schema 1 stores it)."""
        if value is None:
            return None
        if packing == PACKED and isinstance(value, bytes):
            return self.unpack(value).decode("utf-8")
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_all(db_path: Path) -> Iterator[dict[str, Any]]:
    """Every row of ``requests`` in id order, packed columns decoded (headers as JSON text, bodies
    as bytes), whatever the schema version."""
    conn = connect(db_path)
    try:
        cols = [row[1] for row in conn.execute("PRAGMA table_info(requests)")]
        unpacker = Unpacker(conn)
        for values in conn.execute(f"SELECT {', '.join(cols)} FROM requests ORDER BY rowid"):
            row = dict(zip(cols, values, strict=True))
            packing = row.get("packing")
            for name in PACKED_COLUMNS:
                if name in row:
                    decode = unpacker.headers if name.endswith("headers") else unpacker.body
                    row[name] = decode(row[name], packing)
            yield row
    finally:
        conn.close()
