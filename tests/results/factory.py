"""Run folders as the API container and the runner write them (docs/contracts.md), for tests and the
benchmark: a real ``traffic.sqlite`` with the contract's schema, a real ``coverage/series.csv``, a
``metadata.json``."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

TRAFFIC_SCHEMA = """
CREATE TABLE requests (
    id INTEGER PRIMARY KEY,
    started REAL NOT NULL,
    finished REAL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    query TEXT NOT NULL DEFAULT '',
    request_headers TEXT,
    request_body BLOB,
    status INTEGER,
    response_headers TEXT,
    response_body BLOB
)
"""
SERIES_HEADER = (
    "epoch,line_covered,line_missed,branch_covered,branch_missed,method_covered,method_missed,"
    "instruction_covered,instruction_missed"
)

PETSTORE_SPEC = {
    "openapi": "3.0.1",
    "servers": [{"url": "http://localhost:30100/api/v1"}],
    "paths": {
        "/pets": {"get": {}, "post": {}},
        "/pets/{petId}": {"get": {}, "put": {}, "delete": {}},
        "/pets/{petId}/photos/{photoId}": {"get": {}},
        "/pets/mine": {"get": {}},
        "/stores/{storeId}/orders": {"post": {}},
    },
}


@dataclass(frozen=True)
class Row:
    started: float
    method: str
    path: str
    status: int | None
    body: bytes = b"{}"
    query: str = ""
    duration: float = 0.01


def write_traffic(path: Path, rows: Iterable[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(TRAFFIC_SCHEMA)
        conn.executemany(
            "INSERT INTO requests (started, finished, method, path, query, request_headers, request_body,"
            " status, response_headers, response_body) VALUES (?, ?, ?, ?, ?, '{}', x'', ?, '{}', ?)",
            [
                (
                    r.started,
                    None if r.status is None else r.started + r.duration,
                    r.method,
                    r.path,
                    r.query,
                    r.status,
                    r.body,
                )
                for r in rows
            ],
        )
    conn.close()


def write_series(path: Path, samples: Sequence[Sequence[float]]) -> None:
    """samples: (epoch, line_cov, line_miss, branch_cov, branch_miss, method_cov, method_miss)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [SERIES_HEADER]
    for s in samples:
        lines.append(",".join([f"{s[0]:.3f}", *[str(int(v)) for v in s[1:7]], "0", "0"]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_metadata(run_dir: Path, **fields: object) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metadata.json").write_text(json.dumps(fields), encoding="utf-8")


def synthetic_run(
    run_dir: Path,
    *,
    seed: int,
    budget: float = 60.0,
    rate: float = 3.0,
    skill: float = 0.5,
    start: float = 1_764_000_000.0,
    sample_every: float = 5.0,
) -> None:
    """A plausible run against PETSTORE_SPEC: ``rate`` requests/s over the budget, a tool whose
    ``skill`` (0..1) raises the share of 2xx and the coverage; 5xx bodies are stack traces with ids."""
    rnd = random.Random(seed)
    paths = [
        ("GET", "/api/v1/pets"),
        ("POST", "/api/v1/pets"),
        ("GET", "/api/v1/pets/{n}"),
        ("PUT", "/api/v1/pets/{n}"),
        ("DELETE", "/api/v1/pets/{n}"),
        ("GET", "/api/v1/pets/{n}/photos/{m}"),
        ("GET", "/api/v1/pets/mine"),
        ("POST", "/api/v1/stores/{n}/orders"),
        ("HEAD", "/api/v1/pets"),
        ("GET", "/api/v1/unknown"),
    ]
    rows = []
    n = int(budget * rate)
    for i in range(n):
        method, tmpl = rnd.choice(paths)
        path = tmpl.replace("{n}", str(rnd.randint(1, 999))).replace("{m}", str(rnd.randint(1, 9)))
        roll = rnd.random()
        if roll < 0.2 + 0.5 * skill:
            status, body = 200, b'{"id": %d}' % rnd.randint(1, 99)
        elif roll < 0.9:
            status, body = rnd.choice([400, 401, 403, 404]), b'{"error": "bad request"}'
        else:
            exc = rnd.choice(["NullPointerException", "IllegalStateException"])
            body = (
                f'{{"timestamp": "2026-11-29T23:{rnd.randint(10, 59)}:00.123+00:00", "status": 500, '
                f'"error": "Internal Server Error", "message": "java.lang.{exc} at '
                f'PetService.find(PetService.java:{rnd.randint(10, 99)}) id {rnd.randint(1, 10**6)}"}}'
            ).encode()
            status = 500
        t = start + 1.0 + (budget - 1.5) * i / max(1, n - 1)
        rows.append(Row(started=t, method=method, path=path, status=status, body=body, query="q=1" * (i % 2)))
    write_traffic(run_dir / "traffic.sqlite", rows)
    lines_total, branches_total, methods_total = 2000, 800, 300
    samples = []
    k = 0
    while k * sample_every <= budget:
        frac = (0.15 + 0.5 * skill) * (1 - 0.7 ** (k + 1)) + rnd.random() * 0.01
        lc, bc, mc = (
            int(lines_total * frac),
            int(branches_total * frac * 0.8),
            int(methods_total * frac * 1.1),
        )
        samples.append(
            (start + k * sample_every, lc, lines_total - lc, bc, branches_total - bc, mc, methods_total - mc)
        )
        k += 1
    write_series(run_dir / "coverage" / "series.csv", samples)
    write_metadata(run_dir, status="succeeded", started=start, ended=start + budget, attempt=1)
