"""The recording proxy records every request it forwards (issue 11, part 4), on the real demo image.

A client of the test's own sends, counting them, requests that mitmproxy 8.1.1 used to pass through
unrecorded or that broke the addon: methods whose first three bytes are not letters (``M-SEARCH``,
``X_Y``; mitmproxy's raw-TCP guess, see infrastructure/traffic_addon.py) followed by an ordinary
request on the same keep-alive connection, a latin-1 header byte, a UTF-8 header, a raw non-UTF-8
byte in the path, a 2 MiB binary body, and ordinary requests. Every one has exactly one row with its
exact bytes. A request the addon cannot record (an insert refused by a trigger planted in the
database, as a full disk would refuse it) is answered 502, not forwarded, and counted in ``refused``.
The database starts with the previous image's schema and one row of it: the reader reads both."""

from __future__ import annotations

import http.client
import json
import socket
import sqlite3
import time
import uuid
from pathlib import Path

import pytest

from remote_runner.analysis import results, traffic
from remote_runner.common.process import execute

pytestmark = [pytest.mark.docker, pytest.mark.slow]

LABEL = "llamaresttest.test=images"
MARK = "X-Test-Request"

# The requests table as images before this change created it (no ``wire`` column).
OLD_SCHEMA = """
CREATE TABLE requests (
    id INTEGER PRIMARY KEY, started REAL NOT NULL, finished REAL, method TEXT NOT NULL,
    path TEXT NOT NULL, query TEXT NOT NULL, request_headers TEXT NOT NULL, request_body BLOB,
    status INTEGER, response_headers TEXT, response_body BLOB
);
INSERT INTO requests (started, finished, method, path, query, request_headers, status)
VALUES (1.0, 2.0, 'GET', '/caf\u00e9', 'a=1', '{"X-Old": "caf\u00e9"}', 200);
CREATE TRIGGER cannot_record BEFORE INSERT ON requests WHEN NEW.path = '/refuse-me'
BEGIN SELECT RAISE(ABORT, 'simulated: this row cannot be written'); END;
"""

BODY = bytes(range(256)) * (2 * 1024 * 1024 // 256)


def docker(*args: str, timeout: float = 120) -> str:
    res = execute(["docker", *args], timeout=timeout)
    assert res.ok, f"docker {' '.join(args)} failed:\n{res.tail()}"
    return res.output.strip()


def wait_ready(ip: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(ip, 9090, timeout=2)
        try:
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.3)
    raise AssertionError(f"demo API on {ip}:9090 not ready after {seconds} s")


class Client:
    """Sends requests, each marked with its number, and counts them."""

    def __init__(self, ip: str) -> None:
        self.ip = ip
        self.sent: dict[int, dict[str, object]] = {}
        self.conn = http.client.HTTPConnection(ip, 9090, timeout=30)

    def send(
        self,
        method: str,
        path: str,
        headers: list[tuple[bytes, bytes]] = (),
        body: bytes = b"",  # type: ignore[assignment]
    ) -> tuple[int, bytes]:
        """On the one keep-alive connection."""
        n = len(self.sent) + 1
        target = path.encode()
        self.sent[n] = {"method": method, "target": target, "headers": headers, "body": body}
        self.conn.putrequest(method, path, skip_accept_encoding=True)
        self.conn.putheader(MARK, str(n))
        for name, value in headers:
            self.conn.putheader(name, value)
        self.conn.putheader("Content-Length", str(len(body)))
        self.conn.endheaders(body)
        resp = self.conn.getresponse()
        self.sent[n]["status"] = resp.status
        return resp.status, resp.read()

    def send_raw(self, method: bytes, target: bytes) -> bytes:
        """On a connection of its own, bytes the http.client would refuse (a non-UTF-8 path)."""
        n = len(self.sent) + 1
        self.sent[n] = {"method": method.decode("latin-1"), "target": target, "headers": [], "body": b""}
        fields = f"Host: api\r\n{MARK}: {n}\r\nConnection: close\r\n\r\n".encode()
        head = method + b" " + target + b" HTTP/1.1\r\n" + fields
        with socket.create_connection((self.ip, 9090), timeout=30) as sock:
            sock.sendall(head)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        return data.split(b"\r\n", 1)[0]


def test_every_forwarded_request_is_recorded(recording_images: None, tmp_path: Path) -> None:
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    db_path = results_dir / "traffic.sqlite"
    with sqlite3.connect(db_path) as db:
        db.executescript(OLD_SCHEMA)
    api = f"img-test-{uuid.uuid4().hex[:8]}-proxy"
    docker(
        "run", "-d", "--name", api, "--label", LABEL, "--cpus", "0.5", "--memory", "512m",
        "-v", f"{results_dir}:/results", "llamaresttest/api-demo-shop",
    )  # fmt: skip
    try:
        ip = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", api)
        wait_ready(ip, 60)
        client = Client(ip)
        statuses = {
            "m-search": client.send("M-SEARCH", "/health")[0],
            "after m-search, same connection": client.send("GET", "/health")[0],
            "x_y": client.send("X_Y", "/products")[0],
            "latin-1 header": client.send("GET", "/health", [(b"X-Latin", b"caf\xe9 \xff")])[0],
            "utf-8 header": client.send("GET", "/health", [(b"X-Utf8", "café ✓".encode())])[0],
            "2 MiB body": client.send("POST", "/products?big=1", [(b"Content-Type", b"a/b")], BODY)[0],
        }
        for i in range(10):
            statuses[f"ordinary {i}"] = client.send("GET", f"/products?page={i}")[0]
        refused_status, refused_body = client.send("GET", "/refuse-me")
        refused_n = len(client.sent)
        client.conn.close()
        statuses["raw path byte"] = int(client.send_raw(b"GET", b"/he\xffalth?q=\xfe").split()[1])
        docker("stop", "-t", "10", api, timeout=60)
    finally:
        execute(["docker", "rm", "-f", api], timeout=60)

    assert statuses["after m-search, same connection"] == 200, statuses
    # every request got an HTTP answer (a 5xx of the service is an answer too, and must be recorded as such)
    assert all(100 <= s < 600 for s in statuses.values()), statuses
    assert refused_status == 502
    assert b"recording proxy refused" in refused_body and b"simulated" in refused_body, refused_body

    # headers and bodies are packed (schema 2): read back through the runner's reader
    columns = ("method", "path", "query", "request_headers", "request_body", "status", "wire")
    rows = [tuple(r[c] for c in columns) for r in traffic.read_all(db_path) if r["wire"] == "latin-1"]
    assert all(r["packing"] == traffic.PACKED for r in traffic.read_all(db_path) if r["wire"] == "latin-1")
    db = sqlite3.connect(db_path)
    assert traffic.schema_version(db) == traffic.SCHEMA_VERSION
    refused = db.execute("SELECT method, path, reason FROM refused").fetchall()
    db.close()
    by_n: dict[int, list[tuple]] = {}
    for row in rows:
        headers = json.loads(row[3])
        if MARK in headers:
            by_n.setdefault(int(headers[MARK]), []).append(row)
    recorded = set(client.sent) - {refused_n}
    # rows equal requests: each forwarded request exactly once, nothing else from the client
    assert sorted(by_n) == sorted(recorded), (sorted(by_n), sorted(client.sent))
    assert all(len(v) == 1 for v in by_n.values())
    # the only other rows are the readiness probes
    assert all(r[:2] == ("GET", "/health") for r in rows if MARK not in json.loads(r[3])), rows
    for n in recorded:
        method, path, query, headers_text, body, status, _ = by_n[n][0]
        want = client.sent[n]
        headers = json.loads(headers_text)
        assert method == want["method"]
        want_path, _, want_query = want["target"].partition(b"?")  # type: ignore[attr-defined]
        assert (path.encode("latin-1"), query.encode("latin-1")) == (want_path, want_query)
        if status is None:  # the service gave no answer (a busy machine): the proxy answered 502 itself
            assert want.get("status") == 502, (n, want)
        elif "status" in want:  # the answer the client saw is the one recorded
            assert status == want["status"], (n, status, want)
        assert (body or b"") == want["body"]
        for name, value in want["headers"]:  # type: ignore[attr-defined]
            assert headers[name.decode()].encode("latin-1") == value
    assert refused == [("GET", "/refuse-me", refused[0][2])] and "simulated" in refused[0][2]

    # the reader reads the old row and the new ones, and the refusal count
    requests, problem = results.read_requests(db_path)
    assert problem is None
    assert len(requests) == 1 + len(rows)
    assert (requests[0].method, requests[0].path, requests[0].query) == ("GET", "/café", "a=1")
    assert [r.method for r in requests[-17:-14]] == ["M-SEARCH", "GET", "X_Y"]
    assert (requests[-1].path, requests[-1].query) == ("/he\ufffdalth", "q=\ufffd")
    assert results.read_refused(db_path) == 1
