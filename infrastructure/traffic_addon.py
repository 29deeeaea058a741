"""mitmproxy addon: records every request and response into an SQLite database, durably.

Loaded by the supervisor as ``mitmdump -s traffic_addon.py``. The schema is the contract of
docs/contracts.md (tables ``requests`` and ``refused``). A row is inserted and committed when the
request reaches the proxy, and completed (status, response, ``finished``) and committed when the
response or the error arrives, so a request that reached the proxy is on disk even if the container
is stopped while it is in flight. The database is in WAL mode: a committed transaction survives the
death of this process (``docker stop``/SIGKILL); on a clean shutdown ``done`` checkpoints the WAL
into the main file.

Nothing is forwarded unrecorded:
- Text columns of new rows (``wire = 'latin-1'``) hold the bytes as they came over the wire, decoded
  as ISO-8859-1 (one code point per byte), so any method token, path or header byte is stored and
  ``text.encode('latin-1')`` gives the original bytes back. (mitmproxy's own ``str`` views decode
  with ``surrogateescape``: a latin-1 header byte becomes a lone surrogate that SQLite refuses.)
- A request that cannot be recorded (the insert fails: disk full, a damaged database, not yet
  open) is answered 502 by the proxy with a body saying why, never forwarded, and counted in the
  table ``refused`` (and on stderr, should that insert fail too).
- mitmproxy 8.x (``addons/next_layer.py``) treats a connection whose first three bytes are not
  letters as raw TCP when the option ``rawtcp`` is on (its default): ``M-SEARCH`` or ``X_Y`` went
  through as TCP, no HTTP hook was called, and every later request on that keep-alive connection too.
  ``running`` switches ``rawtcp`` off (the supervisor also passes ``--set rawtcp=false``), so such
  connections are parsed as HTTP; a TCP flow that still appears is killed and counted in ``refused``.

Stored compactly, nothing lost (schema version 2, ``PRAGMA user_version``): headers and bodies are
packed with zstandard and a dictionary trained on the run's first requests (``traffic_packing.py``,
next to this file: mitmproxy puts a script's folder on ``sys.path`` while loading it); a database
of an older image is continued with its old rows left as they are (``packing`` NULL).

Times are UTC epoch seconds (mitmproxy's own timestamps, taken from ``time.time()``). Runs on
Python >= 3.8 and mitmproxy >= 8.0 (selfcheck.py).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import traffic_packing
from mitmproxy import ctx, http

log = logging.getLogger(__name__)

WIRE = "latin-1"

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    started REAL NOT NULL,
    finished REAL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    query TEXT NOT NULL,
    request_headers TEXT NOT NULL,
    request_body BLOB,
    status INTEGER,
    response_headers TEXT,
    response_body BLOB,
    wire TEXT,
    packing INTEGER
);
CREATE TABLE IF NOT EXISTS dictionaries (
    id INTEGER PRIMARY KEY,
    zstd_dict_id INTEGER NOT NULL,
    created REAL NOT NULL,
    content BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS refused (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    reason TEXT NOT NULL
);
"""


def wire_text(raw: bytes) -> str:
    """Bytes as text that SQLite and JSON always accept, losslessly: one code point per byte."""
    return raw.decode(WIRE)


def headers_json(headers: Any) -> str:
    """Headers as a JSON object of the wire bytes (``wire_text``); repeated fields are joined with
    ', ' as HTTP allows."""
    merged: dict[str, str] = {}
    for raw_name, raw_value in headers.fields:
        name, value = wire_text(raw_name), wire_text(raw_value)
        merged[name] = f"{merged[name]}, {value}" if name in merged else value
    return json.dumps(merged, ensure_ascii=False)


def body_bytes(message: http.Message) -> bytes:
    """The body with any Content-Encoding undone when possible, else exactly as received."""
    content = message.get_content(strict=False)
    if content is None:
        return b""
    return content


def request_line(req: http.Request) -> tuple[str, str, str]:
    """Method, path and query (without ``?``) as wire text."""
    path, _, query = req.data.path.partition(b"?")
    return wire_text(req.data.method), wire_text(path), wire_text(query)


def refusal_body(reason: str) -> bytes:
    return f"recording proxy refused this request: it could not be recorded ({reason})\n".encode(
        "utf-8", "replace"
    )


class TrafficRecorder:
    def __init__(self) -> None:
        self.db: sqlite3.Connection | None = None
        self.refusals = 0
        self.packer = traffic_packing.Packer()

    def load(self, loader: Any) -> None:
        loader.add_option(
            "traffic_db",
            str,
            os.environ.get("TRAFFIC_DB", "/results/traffic.sqlite"),
            "SQLite file the traffic is recorded into.",
        )

    def running(self) -> None:
        # see the module docstring: without this, M-SEARCH / X_Y connections bypass every hook
        ctx.options.update(rawtcp=False)
        path = Path(ctx.options.traffic_db)
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: every commit is in the WAL file when COMMIT returns, so the death of
        # this process loses nothing; only a power cut could lose the last transactions.
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        cols = {row[1] for row in db.execute("PRAGMA table_info(requests)")}
        if "wire" not in cols:  # a database written by an older image: its rows keep wire NULL
            db.execute("ALTER TABLE requests ADD COLUMN wire TEXT")
        if "packing" not in cols:  # ... and packing NULL (stored as they came)
            db.execute("ALTER TABLE requests ADD COLUMN packing INTEGER")
        db.execute(f"PRAGMA user_version = {traffic_packing.SCHEMA_VERSION}")
        stored = db.execute("SELECT content FROM dictionaries ORDER BY id DESC LIMIT 1").fetchone()
        # a restarted proxy continues with the dictionary it trained before
        self.packer = traffic_packing.Packer(dictionary=bytes(stored[0]) if stored else None)
        self.db = db
        log.info("recording traffic into %s", path)

    def refuse(self, method: str, path: str, reason: str) -> None:
        self.refusals += 1
        print(
            f"traffic_addon: refused #{self.refusals} {method!r} {path!r}: {reason}",
            file=sys.stderr,
            flush=True,
        )
        if self.db is None:
            return
        try:
            self.db.execute(
                "INSERT INTO refused (at, method, path, reason) VALUES (?, ?, ?, ?)",
                (time.time(), method, path, reason),
            )
        except sqlite3.Error as exc:
            print(f"traffic_addon: refusal not stored: {exc}", file=sys.stderr, flush=True)

    def packed(self, headers: Any, body: bytes) -> tuple[Any, Any]:
        """The row's headers and body as stored: tagged BLOBs when packing, else text and bytes."""
        text = headers_json(headers)
        if not self.packer.enabled:
            return text, body
        return self.packer.pack(text.encode("utf-8")), self.packer.pack(body)

    def store_trained_dictionary(self) -> None:
        content = self.packer.trained()
        if content is None or self.db is None:
            return
        try:
            self.db.execute(
                "INSERT INTO dictionaries (zstd_dict_id, created, content) VALUES (?, ?, ?)",
                (traffic_packing.zstandard.ZstdCompressionDict(content).dict_id(), time.time(), content),
            )
        except sqlite3.Error as exc:  # without it stored, rows must not refer to it
            log.error("compression dictionary not stored: %s", exc)
            return
        self.packer.use_dictionary(content)

    def request(self, flow: http.HTTPFlow) -> None:
        req = flow.request
        method, path, query = request_line(req)
        try:
            if self.db is None:
                raise RuntimeError("the traffic database is not open")
            self.store_trained_dictionary()
            headers, body = self.packed(req.headers, body_bytes(req))
            cur = self.db.execute(
                "INSERT INTO requests (started, method, path, query, request_headers, request_body,"
                " wire, packing) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    req.timestamp_start,
                    method,
                    path,
                    query,
                    headers,
                    body,
                    WIRE,
                    traffic_packing.PACKED if self.packer.enabled else None,
                ),
            )
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            self.refuse(method, path, reason)
            flow.response = http.Response.make(
                502, refusal_body(reason), {"Content-Type": "text/plain; charset=utf-8"}
            )
            flow.metadata["traffic_refused"] = True
            return
        flow.metadata["traffic_row"] = cur.lastrowid
        self.packer.request_seen()

    def response(self, flow: http.HTTPFlow) -> None:
        row = flow.metadata.get("traffic_row")
        if self.db is None or row is None or flow.response is None:
            return
        resp = flow.response
        try:
            headers, body = self.packed(resp.headers, body_bytes(resp))
            self.db.execute(
                "UPDATE requests SET finished = ?, status = ?, response_headers = ?,"
                " response_body = ? WHERE id = ?",
                (resp.timestamp_end or resp.timestamp_start, resp.status_code, headers, body, row),
            )
        except sqlite3.Error as exc:  # the request is recorded; only its answer is missing
            log.error("response of row %s not recorded: %s", row, exc)

    def error(self, flow: http.HTTPFlow) -> None:
        row = flow.metadata.get("traffic_row")
        if self.db is None or row is None:
            return
        when = flow.error.timestamp if flow.error is not None else None
        try:
            self.db.execute("UPDATE requests SET finished = ? WHERE id = ? AND finished IS NULL", (when, row))
        except sqlite3.Error as exc:
            log.error("error of row %s not recorded: %s", row, exc)

    def tcp_start(self, flow: Any) -> None:
        """A raw TCP connection cannot be recorded as requests: killed and counted."""
        peer = getattr(flow.client_conn, "peername", None)
        self.refuse("TCP", str(peer), "raw TCP connection (not HTTP); closed")
        flow.kill()

    def done(self) -> None:
        if self.db is None:
            return
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.close()
        self.db = None


addons = [TrafficRecorder()]
