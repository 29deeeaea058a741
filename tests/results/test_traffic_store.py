"""traffic.sqlite schema 2 (issue 24): what the recording proxy packs comes back byte for byte, and
a database of the older schema still summarises and reports (docs/results.md, "Traffic storage")."""

from __future__ import annotations

import json
import os
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remote_runner.analysis import results, traffic
from remote_runner.analysis.report import document as report
from remote_runner.analysis.report import tables
from tests.results import factory
from tests.results.recorder import load_module, recording

PACKING = load_module("traffic_packing")
ADDON = load_module("traffic_addon")

EVERY_BYTE = bytes(range(256))
TEN_MB_RANDOM = os.urandom(10 * 1024 * 1024)
TEN_MB_REPETITIVE = b'{"id": 1, "name": "a record"}\n' * (10 * 1024 * 1024 // 29)


def _trained_packer() -> Any:
    """A packer with a dictionary trained on JSON bodies (the state after TRAIN_AFTER requests)."""
    rnd = random.Random(5)
    samples = [
        json.dumps({"id": rnd.randint(1, 10**6), "name": f"item {i}", "tags": ["a", "b"] * (i % 7)}).encode()
        for i in range(3000)
    ]
    dictionary = PACKING.zstandard.train_dictionary(8 * 1024, samples).as_bytes()
    return PACKING.Packer(dictionary=dictionary), dictionary


def _unpacker(dictionary: bytes | None = None) -> traffic.Unpacker:
    unpacker = traffic.Unpacker()
    if dictionary is not None:
        unpacker.add_dictionary(dictionary)
    return unpacker


@pytest.mark.parametrize(
    "value",
    [
        b"",
        EVERY_BYTE,
        EVERY_BYTE * 64,
        bytes([0]),
        bytes([2]) + b"not a frame",
        TEN_MB_RANDOM,
        TEN_MB_REPETITIVE,
    ],
    ids=["empty", "every-byte", "every-byte-x64", "nul", "tag-lookalike", "10MB-random", "10MB-repetitive"],
)
def test_pack_round_trip_with_and_without_dictionary(value: bytes) -> None:
    trained, dictionary = _trained_packer()
    for packer, unpacker in ((PACKING.Packer(train=False), _unpacker()), (trained, _unpacker(dictionary))):
        packed = packer.pack(value)
        assert unpacker.unpack(packed) == value
        assert len(packed) <= len(value) + 1  # never more than the tag byte over the value


def test_each_single_byte_value_round_trips() -> None:
    packer, unpacker = PACKING.Packer(train=False), _unpacker()
    for b in range(256):
        assert unpacker.unpack(packer.pack(bytes([b]))) == bytes([b])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.binary(max_size=5000))
def test_random_bytes_round_trip(value: bytes) -> None:
    trained, dictionary = _trained_packer_cached()
    assert _unpacker().unpack(PACKING.Packer(train=False).pack(value)) == value
    assert _unpacker(dictionary).unpack(trained.pack(value)) == value


_CACHE: dict[str, Any] = {}


def _trained_packer_cached() -> Any:
    if "packer" not in _CACHE:
        _CACHE["packer"] = _trained_packer()
    return _CACHE["packer"]


def test_damaged_values_are_named_not_guessed() -> None:
    unpacker = _unpacker()
    with pytest.raises(traffic.UnpackError, match="unknown packing tag 7"):
        unpacker.unpack(b"\x07abc")
    with pytest.raises(traffic.UnpackError, match="damaged zstandard frame"):
        unpacker.unpack(b"\x01" + b"\x28\xb5\x2f\xfd garbage")
    frame = _trained_packer_cached()[0].pack(b'{"id": 12345, "name": "item 7", "tags": ["a", "b"]}' * 3)
    assert frame[0] == PACKING.DICT_FRAME
    with pytest.raises(traffic.UnpackError, match="no dictionary"):
        unpacker.unpack(frame)  # the dictionary it names is not in this database


def test_bodies_and_headers_through_the_addon_come_back_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every body through the recording addon's own hooks (a dictionary trained on the way, as after
    TRAIN_AFTER requests), then read back by the runner's reader: the same bytes and header text."""
    packing = ADDON.traffic_packing
    monkeypatch.setattr(packing, "TRAIN_AFTER", 200)
    rnd = random.Random(11)
    # JSON first (what the dictionary learns from), then every kind of body through the dictionary
    bodies = [json.dumps({"id": i, "name": f"pet {i}", "status": "available"}).encode() for i in range(400)]
    bodies[0] = json.dumps([{"id": i, "status": "available"} for i in range(300)]).encode()  # pays unaided
    bodies += [b"", EVERY_BYTE, TEN_MB_RANDOM, TEN_MB_REPETITIVE, bytes([1]) + os.urandom(100)]
    bodies += [os.urandom(rnd.randint(0, 3000)) for _ in range(50)]
    header_value = bytes(range(32, 256))  # every byte a header may carry, as the proxy keeps it
    db = tmp_path / "traffic.sqlite"
    with recording(db, ADDON) as rec:
        for n, body in enumerate(bodies):
            rec.exchange(
                "POST",
                f"/pets/{n}?q=\xe9",
                body,
                200 + n % 400,
                body[::-1],
                at=1000.0 + n,
                request_headers=[(b"X-Raw", header_value), (b"X-N", str(n).encode())],
            )
            if n == 250:
                rec.recorder.packer.wait_for_training(60)
    rows = list(traffic.read_all(db))
    assert len(rows) == len(bodies)
    for n, (row, body) in enumerate(zip(rows, bodies, strict=True)):
        assert row["request_body"] == body
        assert row["response_body"] == body[::-1]
        headers = json.loads(row["request_headers"])
        assert headers["X-Raw"].encode("latin-1") == header_value and headers["X-N"] == str(n)
        assert json.loads(row["response_headers"]) == {"Content-Type": "application/json"}
        assert row["packing"] == traffic.PACKED
    conn = sqlite3.connect(db)
    try:
        assert traffic.schema_version(conn) == traffic.SCHEMA_VERSION == PACKING.SCHEMA_VERSION
        assert conn.execute("SELECT count(*) FROM dictionaries").fetchone()[0] == 1
        tags = {bytes(v)[0] for (v,) in conn.execute("SELECT response_body FROM requests")}
    finally:
        conn.close()
    assert tags == {PACKING.RAW, PACKING.FRAME, PACKING.DICT_FRAME}  # all three kinds were written


def test_a_restarted_proxy_continues_with_its_dictionary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ADDON.traffic_packing, "TRAIN_AFTER", 100)
    db = tmp_path / "traffic.sqlite"
    body = b'{"id": 7, "name": "a pet", "status": "sold", "tags": ["x"]}'
    with recording(db, ADDON) as rec:
        for n in range(150):
            rec.exchange("GET", f"/pets/{n}", b"", 200, body, at=float(n))
            if n == 100:
                rec.recorder.packer.wait_for_training(60)
    with recording(db, ADDON) as rec:
        assert rec.recorder.packer.dict_id is not None  # loaded from table dictionaries, not trained again
        rec.exchange("GET", "/pets/x", b"", 200, body, at=200.0)
    rows = list(traffic.read_all(db))
    assert [r["response_body"] for r in rows] == [body] * 151
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM dictionaries").fetchone()[0] == 1


def _rows() -> list[factory.Row]:
    rnd = random.Random(3)
    out = []
    for n in range(600):
        status = rnd.choice([200, 201, 400, 404, 500, 500, 503, None])
        trace = f"java.lang.IllegalStateException: id {rnd.randint(1, 99)} at com.example.Pets.get(Pets.java:{n % 7})"
        body = trace.encode() if status is not None and status >= 500 else b'{"ok": true}'
        out.append(
            factory.Row(
                1_764_000_000.0 + n * 0.1, rnd.choice(["GET", "POST"]), f"/api/v1/pets/{n % 9}", status, body
            )
        )
    return out


def test_an_old_schema_database_summarises_and_reports_as_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same traffic stored by an image before schema 2 (plain columns, no version, no packing)
    and by today's proxy (packed, a dictionary trained mid-run): the same summary, and the report
    reads a batch holding both."""
    monkeypatch.setattr(ADDON.traffic_packing, "TRAIN_AFTER", 150)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(factory.PETSTORE_SPEC), encoding="utf-8")
    batch = tmp_path / "batch-20260101T000000Z"
    rows = _rows()
    old_run = batch / "petstore" / "old-image" / "run-1"
    new_run = batch / "petstore" / "new-image" / "run-1"
    factory.write_traffic(old_run / "traffic.sqlite", rows)
    with recording(new_run / "traffic.sqlite", ADDON) as rec:
        for n, r in enumerate(rows):
            rec.exchange(r.method, r.path, b"", r.status, r.body, at=r.started, duration=r.duration)
            if n == 150:
                rec.recorder.packer.wait_for_training(60)
    for run in (old_run, new_run):
        factory.write_metadata(run, status="succeeded", tool_start_utc="2025-11-24T16:00:00Z")
        factory.write_series(
            run / "coverage" / "series.csv",
            [(1_764_000_000.0 + 5 * k, k, 50, k, 20, k, 10) for k in range(13)],
        )
    with sqlite3.connect(old_run / "traffic.sqlite") as conn:
        assert traffic.schema_version(conn) == 1
        assert "packing" not in {c[1] for c in conn.execute("PRAGMA table_info(requests)")}
    old = results.write_run_summary(old_run, spec, 60.0)
    new = results.write_run_summary(new_run, spec, 60.0)
    assert old["requests"]["status_5xx"] > 100 and old["failures"]["unique"] > 1
    for key in ("requests", "operations", "failures", "cumulative", "first_2xx", "request_span_seconds"):
        assert old[key] == new[key], key
    assert old["problems"] == new["problems"] == []
    md = report.build_report(batch).read_text(encoding="utf-8")
    assert "old-image" in md and "new-image" in md
    runs = {r.tool: r for r in tables.load_runs(batch)}
    assert runs["old-image"].values == runs["new-image"].values
