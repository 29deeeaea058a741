"""The fault replay on the real engine, against a test API with known bugs (tests/images/buggy_shop).

A scripted client plays the tool: it sends a fixed sequence through the real recording proxy of a
buggy-shop container (the run's traffic.sqlite is the proxy's own), then ``python -m remote_runner
faults`` replays the run's 5xx requests on fresh containers of the same image. Known answers:

- GET /stock, 503 while the database warmed up: not reproduced (the replays come after the warm-up);
- GET /orders/1/invoice and GET /orders/2/receipt, the same ArithmeticException through the same
  frames: both confirmed alone, one fault (one key);
- GET /carts/1/total, a 500 only after POST /carts: 404 alone, confirmed with the prefix;
- GET /draw, one call in three fails (seeded): flaky.

Every container and network carries the label ``llamaresttest.test=replay`` and is removed by it.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from remote_runner.common import clock
from remote_runner.common.process import execute
from remote_runner.experiment.docker_runtime import ContainerSpec, Docker, Mount

pytestmark = [pytest.mark.docker, pytest.mark.slow]

LABEL = "llamaresttest.test=replay"
IMAGE = "llamaresttest/api-buggy-shop"


def call(base: str, method: str, path: str, body: bytes | None = None) -> int | None:
    headers = {"Content-Type": "application/json"} if body else {}
    req = urllib.request.Request(base + path, data=body, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310 - our container
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


@pytest.fixture(scope="module")
def docker() -> Iterator[Docker]:
    d = Docker()
    yield d
    d.remove_labelled(LABEL)


@pytest.fixture(scope="module")
def buggy_image(recording_images: None, project_root: Path) -> None:
    res = execute(
        ["docker", "build", "-q", "--label", LABEL, "-t", IMAGE, "tests/images/buggy_shop"],
        cwd=project_root,
        timeout=900,
    )
    assert res.ok, res.tail(40)


def full_script(base: str) -> list[int | None]:
    statuses = [
        call(base, "GET", "/stock"),
        call(base, "GET", "/orders/1/invoice"),
        call(base, "GET", "/orders/2/receipt"),
        call(base, "POST", "/carts", b'{"owner": "a"}'),
        call(base, "GET", "/carts/1/total"),
    ]
    for _ in range(6):
        statuses.append(call(base, "GET", "/draw"))
        if statuses[-1] == 500:
            break
    return statuses


def reads_only(base: str) -> list[int | None]:
    """A run in which no write was answered 2xx (the POST hits a path without one: 404): stateless enough."""
    return [
        call(base, "GET", "/orders/3/invoice"),
        call(base, "POST", "/orders", b"{}"),
        call(base, "GET", "/health"),
    ]


def record_scripted_run(
    docker: Docker, batch: Path, script: Callable[[str], list[int | None]] = full_script
) -> tuple[Path, list[int | None]]:
    """A run folder as the runner leaves it: traffic.sqlite from the real proxy, metadata.json."""
    run = batch / "buggy-shop" / "scripted" / "run-1"
    run.mkdir(parents=True)
    key, value = LABEL.split("=")
    net, name = "lrt-test-replay-record-net", "lrt-test-replay-record-api"
    docker.create_network(net, {key: value})
    docker.run(
        ContainerSpec(
            name=name,
            image=IMAGE,
            network=net,
            labels={key: value},
            env={"API": "buggy-shop", "TOOL": "scripted", "RUN": "1", "TIME_BUDGET": "30"},
            mounts=(Mount(run.resolve(), "/results"),),
            cpus=1.0,
            memory_bytes=1 << 30,
        )
    )
    try:
        base = f"http://{docker.ip_address(name, net)}:9090"
        deadline = time.monotonic() + 120
        while call(base, "GET", "/health") != 200:
            assert time.monotonic() < deadline, "buggy-shop not ready"
            time.sleep(0.2)
        start = clock.utc_iso()
        statuses = script(base)
        time.sleep(1.0)
    finally:
        docker.stop(name, 10)
        docker.remove([name])
        docker.remove_network(net)
    meta = {"status": "succeeded", "tool_start_utc": start, "images": {"api": IMAGE}}
    (run / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    return run, statuses


@pytest.fixture(scope="module")
def replayed(
    buggy_image: None, docker: Docker, project_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict, list[int | None], float, str]:
    batch = tmp_path_factory.mktemp("replay") / "batch-20260101T000000Z"
    run, statuses = record_scripted_run(docker, batch)
    catalog = tmp_path_factory.mktemp("replay-catalog")
    (catalog / "apis").mkdir()
    (catalog / "apis" / "buggy-shop").symlink_to(project_root / "tests" / "images" / "buggy_shop")
    argv = [
        sys.executable,
        "-m",
        "remote_runner",
        "faults",
        str(batch),
        "--catalog",
        str(catalog),
        "--cpus",
        "0.5",
        "--memory",
        "512m",
        "--label",
        LABEL,
    ]
    begin = time.monotonic()
    res = execute(argv, cwd=project_root, timeout=900)
    seconds = time.monotonic() - begin
    assert res.ok, res.tail(40)
    # a second call finds the run complete and replays nothing
    again = execute(argv, cwd=project_root, timeout=300)
    assert again.ok, again.tail(20)
    return json.loads((run / "faults.json").read_text()), statuses, seconds, again.output


def test_a_stateless_run_shares_one_container(
    buggy_image: None, docker: Docker, project_root: Path, tmp_path: Path
) -> None:
    batch = tmp_path / "batch-20260102T000000Z"
    run, statuses = record_scripted_run(docker, batch, reads_only)
    assert statuses == [500, 404, 200]
    catalog = tmp_path / "catalog"
    (catalog / "apis").mkdir(parents=True)
    (catalog / "apis" / "buggy-shop").symlink_to(project_root / "tests" / "images" / "buggy_shop")
    argv = [sys.executable, "-m", "remote_runner", "faults", str(batch), "--catalog", str(catalog)]
    res = execute(
        [*argv, "--cpus", "0.5", "--memory", "512m", "--label", LABEL], cwd=project_root, timeout=600
    )
    assert res.ok, res.tail(40)
    data = json.loads((run / "faults.json").read_text())
    print(f"\nreplay step of the stateless run: {data['replay_seconds']:.1f} s")
    assert data["container"] == "shared (stateless enough: no write request answered 2xx)"
    (only,) = data["requests"]
    assert (only["verdict"], only["confirmed_by"]) == ("confirmed", "alone")
    assert only["key"].startswith("java.lang.ArithmeticException | fixture.buggy.Totals.share")
    # three replays into one container: each one's log window held its own trace, not an earlier one's
    assert [a["key"] for a in only["replays"]["alone"]] == [only["key"]] * 3


def by_path(data: dict) -> dict[str, dict]:
    return {e["first"]["path"]: e for e in data["requests"]}


def test_the_scripted_run_met_every_bug(replayed: tuple[dict, list[int | None], float, str]) -> None:
    _, statuses, _, _ = replayed
    # warm-up 503, two deterministic 500s, the POST, the 500 it enables, then draws up to a 500
    assert statuses[:5] == [503, 500, 500, 201, 500]
    assert statuses[-1] == 500 and all(s == 200 for s in statuses[5:-1])


def test_verdicts(replayed: tuple[dict, list[int | None], float, str]) -> None:
    data, _, seconds, _ = replayed
    entries = by_path(data)
    print(f"\nreplay step of the run: {data['replay_seconds']:.1f} s (command: {seconds:.1f} s)")
    for path, e in entries.items():
        print(f"  {path}: {e['verdict']} {[[a['status'] for a in r] for r in e['replays'].values()]}")
    assert data["complete"] is True
    assert data["distinct_5xx"] == 5
    assert entries["/stock"]["verdict"] == "not reproduced"
    assert [a["status"] for a in entries["/stock"]["replays"]["alone"]] == [200, 200, 200]
    for path in ("/orders/1/invoice", "/orders/2/receipt"):
        assert (entries[path]["verdict"], entries[path]["confirmed_by"]) == ("confirmed", "alone")
    cart = entries["/carts/1/total"]
    assert [a["status"] for a in cart["replays"]["alone"]] == [404, 404, 404]
    assert [a["status"] for a in cart["replays"]["with prefix"]] == [500, 500, 500]
    assert (cart["verdict"], cart["confirmed_by"]) == ("confirmed", "with prefix")
    assert cart["prefix"] == [4]  # the POST /carts, request 4 of the run
    draw = entries["/draw"]
    assert draw["verdict"] == "flaky"
    statuses = [a["status"] for r in draw["replays"].values() for a in r]
    assert 500 in statuses and 200 in statuses
    assert data["verdicts"] == {"confirmed": 3, "flaky": 1, "not reproduced": 1, "skipped": 0, "error": 0}
    assert data["container"] == "fresh per replay"  # POST /carts answered 201: not stateless


def test_grouped_by_the_servers_trace(replayed: tuple[dict, list[int | None], float, str]) -> None:
    data, _, _, again = replayed
    entries = by_path(data)
    invoice, receipt = entries["/orders/1/invoice"]["key"], entries["/orders/2/receipt"]["key"]
    assert invoice == receipt
    assert invoice == (
        "java.lang.ArithmeticException | fixture.buggy.Totals.share(Totals.java:11)"
        " | fixture.buggy.Totals.sum(Totals.java:7) | fixture.buggy.Documents.render(Documents.java:6)"
    )
    assert entries["/carts/1/total"]["key"].startswith(
        "java.lang.NullPointerException | fixture.buggy.Carts.total(Carts.java:"
    )
    assert data["unique_confirmed"] == 2 and data["unique_confirmed_by_trace"] == 2
    faults = data["faults"]
    assert [f["first"]["path"] for f in faults] == ["/orders/1/invoice", "/carts/1/total"]
    assert len(faults[0]["requests"]) == 2
    assert faults[0]["first"]["number"] == 2
    assert all(f["key_source"] == "trace" and f["own_frames"] for f in faults)
    # resumed: the second call replayed nothing and kept the figures
    assert "2 unique confirmed faults" in again
