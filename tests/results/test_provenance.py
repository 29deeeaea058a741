"""Provenance parsing and the exclusion policy's classification on hand-made inputs (the real run's
metadata.json is checked in tests/images/test_two_tool_report.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from remote_runner.analysis import results, verification
from remote_runner.experiment import images
from remote_runner.experiment import provenance
from remote_runner.experiment.images import BuildTarget
from tests.results.factory import Row, write_metadata, write_traffic


def test_cpu_and_peak_memory_probes_parse() -> None:
    got = provenance.parse_cpu_probe("2\nIntel(R) Xeon(R) CPU @ 2.20GHz\n6.1.0-28-cloud-amd64\n")
    assert got == {"count": 2, "model": "Intel(R) Xeon(R) CPU @ 2.20GHz", "kernel": "6.1.0-28-cloud-amd64"}
    assert provenance.parse_cpu_probe("") == {"count": None, "model": None, "kernel": None}
    assert provenance.parse_peak_memory("734003200\n") == 734003200
    assert provenance.parse_peak_memory("cat: no such file\n") is None


def test_peak_memory_is_read_from_the_containers_cgroup_on_the_host(tmp_path: Path) -> None:
    cid = "ab" * 32
    assert provenance.host_peak_memory(cid, str(tmp_path)) is None  # no such cgroup: not readable
    v2 = tmp_path / f"sys/fs/cgroup/system.slice/docker-{cid}.scope/memory.peak"
    v2.parent.mkdir(parents=True)
    v2.write_text("2048\n")
    assert provenance.host_peak_memory(cid, str(tmp_path)) == 2048
    v1 = tmp_path / f"sys/fs/cgroup/memory/docker/{cid}/memory.max_usage_in_bytes"
    v1.parent.mkdir(parents=True)
    v1.write_text("4096\n")
    assert provenance.host_peak_memory(cid, str(tmp_path)) == 4096  # cgroup v1 first, as listed
    assert provenance.host_peak_memory("../../etc", str(tmp_path)) is None  # only a container id


def test_model_files_are_hashed_once_and_cached_by_size_and_mtime(tmp_path: Path) -> None:
    models, cache = tmp_path / "models", tmp_path / "batch"
    models.mkdir()
    cache.mkdir()
    (models / "ex.gguf").write_bytes(b"GGUF" + b"\0" * 100)
    (models / "ipd.gguf").write_bytes(b"GGUF" + b"\1" * 50)
    first = provenance.model_files(models, cache)
    assert first == [
        {"name": "ex.gguf", "size": 104, "sha256": hashlib.sha256(b"GGUF" + b"\0" * 100).hexdigest()},
        {"name": "ipd.gguf", "size": 54, "sha256": hashlib.sha256(b"GGUF" + b"\1" * 50).hexdigest()},
    ]
    cached = json.loads((cache / provenance.HASH_CACHE).read_text())
    assert sorted(cached.values()) == sorted(m["sha256"] for m in first)
    # the cache answers while size and mtime match; a rewritten file is hashed again
    key = next(k for k in cached if k.startswith(str((models / "ex.gguf").resolve())))
    cached[key] = "from-the-cache"
    (cache / provenance.HASH_CACHE).write_text(json.dumps(cached))
    assert provenance.model_files(models, cache)[0]["sha256"] == "from-the-cache"
    (models / "ex.gguf").write_bytes(b"other")
    assert provenance.model_files(models, cache)[0]["sha256"] == hashlib.sha256(b"other").hexdigest()


def test_tool_version_from_the_tool_else_the_image_else_its_build_arguments() -> None:
    image = {"labels": {"org.opencontainers.image.version": "v3.4.0"}}
    said = provenance.tool_version("[st 2026] TOOL_VERSION schemathesis, version 4.32.5\n", image, {})
    assert said == {"text": "schemathesis, version 4.32.5", "source": "tool (TOOL_VERSION at start)"}
    labelled = provenance.tool_version("no marker\n", image, {"X": "1"})
    assert labelled == {"text": "v3.4.0", "source": "image label org.opencontainers.image.version"}
    pinned = provenance.tool_version("", {"labels": {}}, {"LLAMARESTTEST_COMMIT": "69f2e95e"})
    assert pinned == {"text": "LLAMARESTTEST_COMMIT=69f2e95e", "source": "build arguments of its image"}
    assert provenance.tool_version("", {"labels": {}}, {})["text"] is None


def test_every_tool_has_a_request_count_saying_where_it_came_from(tmp_path: Path) -> None:
    run = tmp_path / "api" / "llamaresttest" / "run-1"
    write_traffic(run / "traffic.sqlite", [Row(1_764_000_001.0 + i, "GET", "/x", 200) for i in range(7)])
    write_metadata(run, status="succeeded", started=1_764_000_000.0)
    summary = results.write_run_summary(run, None, 60)
    assert summary["tool_requests"] is None
    assert summary["request_count"] == {"count": 7, "source": "recording proxy (the tool prints none)"}
    (run / "logs").mkdir(exist_ok=True)
    (run / "logs" / "tool.log").write_text("TOOL_REQUESTS sent=7 answered=7\n")
    again = results.write_run_summary(run, None, 60)
    assert again["request_count"] == {"count": 7, "source": "tool (TOOL_REQUESTS)"}


def test_infrastructure_problems_and_tool_flags_are_told_apart() -> None:
    def check(name: str, measured: object, threshold: object) -> dict[str, object]:
        return {"name": name, "passed": False, "measured": measured, "threshold": threshold}

    summary = {
        "budget_seconds": 600,
        "verification": {
            "checks": [
                check("requests_per_minute", 20.0, 130.0),
                check("request_span", 0.5, 0.9),
                check("tool_restarts", 5, 3),
                check("traffic_db_integrity", "database disk image is malformed", "ok"),
                check("recorded_requests", 90, 100),
            ]
        },
        "proxy_refused": 2,
        # sampled every 5 s for 2 minutes, then nothing: the sampler died
        "coverage": {"series": [[5.0 * i, 0.1, 0.1, 0.1] for i in range(1, 25)]},
    }
    infra, flags = verification.classify_checks(summary)
    assert flags == [
        "requests_per_minute: 20.0 (needs 130.0)",
        "request_span: 0.5 (needs 0.9)",
        "tool_restarts: 5 (needs 3)",
    ]
    assert infra == [
        "traffic_db_integrity: database disk image is malformed (needs ok)",
        "recorded_requests: 90 (needs 100)",
        "the recording proxy refused 2 request(s) it could not record",
        "coverage sampling stopped: no sample for 480 s (at most 30 s)",
    ]
    # an API without a recording proxy or a coverage agent has no database and no samples: not broken
    bare = {"budget_seconds": 600, "verification": {"checks": [check("traffic_db_integrity", None, "ok")]}}
    assert verification.classify_checks(bare) == ([], [])
    assert verification.sampling_broken([5.0 * i for i in range(1, 120)], 600) is None


def test_an_image_is_rebuilt_when_its_build_inputs_change(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    target = BuildTarget("t", "tool", "llamaresttest/tool-t", tmp_path, (("COMMIT", "a"),))
    first = images.inputs_digest(target)
    assert images.inputs_digest(target) == first
    assert images.inputs_digest(BuildTarget("t", "tool", "x", tmp_path, (("COMMIT", "b"),))) != first
    assert images.inputs_digest(target, base="infrastructure changed") != first
    (tmp_path / "entrypoint.sh").write_text("#!/bin/sh\n")
    assert images.inputs_digest(target) != first
