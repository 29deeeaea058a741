"""mitmproxy addon: records every request and response into an SQLite database, durably.

Loaded by the supervisor as ``mitmdump -s traffic_addon.py``. The schema is the contract of
docs/contracts.md (table ``requests``). A row is inserted and committed when the request reaches the
proxy, and completed (status, response, ``finished``) and committed when the response or the error
arrives, so a request that reached the proxy is on disk even if the container is stopped while it is
in flight. The database is in WAL mode: a committed transaction survives the death of this process
(``docker stop``/SIGKILL); on a clean shutdown ``done`` checkpoints the WAL into the main file.

Times are UTC epoch seconds (mitmproxy's own timestamps, taken from ``time.time()``).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

from mitmproxy import ctx, http

log = logging.getLogger(__name__)

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
    response_body BLOB
)
"""


def headers_json(headers: Any) -> str:
    """Headers as a JSON object; repeated fields are joined with ', ' as HTTP allows."""
    merged: dict[str, str] = {}
    for name, value in headers.items(multi=True):
        merged[name] = f"{merged[name]}, {value}" if name in merged else value
    return json.dumps(merged, ensure_ascii=False)


def body_bytes(message: http.Message) -> bytes:
    """The body with any Content-Encoding undone when possible, else exactly as received."""
    content = message.get_content(strict=False)
    if content is None:
        return b""
    return content


class TrafficRecorder:
    def __init__(self) -> None:
        self.db: sqlite3.Connection | None = None

    def load(self, loader: Any) -> None:
        loader.add_option(
            "traffic_db",
            str,
            os.environ.get("TRAFFIC_DB", "/results/traffic.sqlite"),
            "SQLite file the traffic is recorded into.",
        )

    def running(self) -> None:
        path = Path(ctx.options.traffic_db)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: every commit is in the WAL file when COMMIT returns, so the death of
        # this process loses nothing; only a power cut could lose the last transactions.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(SCHEMA)
        log.info("recording traffic into %s", path)

    def request(self, flow: http.HTTPFlow) -> None:
        if self.db is None:
            return
        req = flow.request
        path, _, query = req.path.partition("?")
        cur = self.db.execute(
            "INSERT INTO requests (started, method, path, query, request_headers, request_body)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                req.timestamp_start,
                req.method.upper(),
                path,
                query,
                headers_json(req.headers),
                body_bytes(req),
            ),
        )
        flow.metadata["traffic_row"] = cur.lastrowid

    def response(self, flow: http.HTTPFlow) -> None:
        row = flow.metadata.get("traffic_row")
        if self.db is None or row is None or flow.response is None:
            return
        resp = flow.response
        self.db.execute(
            "UPDATE requests SET finished = ?, status = ?, response_headers = ?, response_body = ?"
            " WHERE id = ?",
            (
                resp.timestamp_end or resp.timestamp_start,
                resp.status_code,
                headers_json(resp.headers),
                body_bytes(resp),
                row,
            ),
        )

    def error(self, flow: http.HTTPFlow) -> None:
        row = flow.metadata.get("traffic_row")
        if self.db is None or row is None:
            return
        when = flow.error.timestamp if flow.error is not None else None
        self.db.execute("UPDATE requests SET finished = ? WHERE id = ? AND finished IS NULL", (when, row))

    def done(self) -> None:
        if self.db is None:
            return
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.close()
        self.db = None


addons = [TrafficRecorder()]
