"""Batch sync against the real GCS emulator (gcp-storage-emulator, in-memory, on a free loopback port).

The emulator is started by the fixture; if it cannot start the tests fail (never skip)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.api_core import exceptions as api_exceptions

from remote_runner.cloud import upload
from remote_runner.cloud.upload import NO_WAIT, sync_batch
from tests.services import free_port, gcs_emulator

pytestmark = pytest.mark.emulator

BUCKET = "results-bucket"


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    with gcs_emulator(BUCKET) as url:
        yield url


@pytest.fixture
def gcs(emulator: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test-project")
    return emulator


def remote_objects(prefix: str) -> dict[str, bytes]:
    from google.cloud import storage

    client = storage.Client()
    return {b.name: b.download_as_bytes() for b in client.list_blobs(BUCKET, prefix=prefix)}


def make_batch(root: Path, name: str) -> Path:
    batch = root / name
    (batch / "petstore" / "toolx" / "run-1" / "coverage").mkdir(parents=True)
    (batch / "plan.json").write_text('{"runs": 1}')
    (batch / "petstore" / "toolx" / "run-1" / "summary.json").write_text('{"requests": 3}')
    (batch / "petstore" / "toolx" / "run-1" / "coverage" / "series.csv").write_text("epoch\n1.0\n")
    # 9 MB: above the client's 8 MiB threshold, so the resumable upload path is exercised too
    (batch / "petstore" / "toolx" / "run-1" / "traffic.sqlite").write_bytes(bytes(range(256)) * 36_000)
    (batch / ".summary.json.tmp123").write_text("half-written")  # dot-files are never sent
    return batch


def test_full_sync_then_resync_sends_nothing_then_only_changes(gcs: str, tmp_path: Path) -> None:
    batch = make_batch(tmp_path, "batch-20261129T230000Z")
    first = sync_batch(batch, BUCKET, "llamaresttest-results", retry=NO_WAIT)
    assert first.complete, first.describe()
    assert sorted(first.uploaded) == [
        "petstore/toolx/run-1/coverage/series.csv",
        "petstore/toolx/run-1/summary.json",
        "petstore/toolx/run-1/traffic.sqlite",
        "plan.json",
    ]
    prefix = "llamaresttest-results/batch-20261129T230000Z/"
    objs = remote_objects(prefix)
    assert set(objs) == {prefix + rel for rel in first.uploaded}
    assert objs[prefix + "petstore/toolx/run-1/traffic.sqlite"] == bytes(range(256)) * 36_000

    again = sync_batch(batch, BUCKET, "llamaresttest-results", retry=NO_WAIT)
    assert again.uploaded == [] and again.complete
    assert len(again.unchanged) == 4

    # hash cache gone: the remote listing alone still says nothing changed
    (batch / upload.CACHE_NAME).unlink()
    assert sync_batch(batch, BUCKET, "llamaresttest-results", retry=NO_WAIT).uploaded == []

    (batch / "petstore" / "toolx" / "run-2").mkdir()
    (batch / "petstore" / "toolx" / "run-2" / "summary.json").write_text('{"requests": 9}')
    (batch / "petstore" / "toolx" / "run-1" / "summary.json").write_text('{"requests": 4}')  # same size
    third = sync_batch(batch, BUCKET, "llamaresttest-results", retry=NO_WAIT)
    assert sorted(third.uploaded) == [
        "petstore/toolx/run-1/summary.json",
        "petstore/toolx/run-2/summary.json",
    ]
    assert len(third.unchanged) == 3
    assert remote_objects(prefix)[prefix + "petstore/toolx/run-1/summary.json"] == b'{"requests": 4}'


def test_unreachable_bucket_then_recovery_and_nothing_deleted(
    gcs: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = make_batch(tmp_path, "batch-20261129T231500Z")
    prefix = "res/batch-20261129T231500Z/"
    assert sync_batch(batch, BUCKET, "res", retry=NO_WAIT).complete
    # an object only the bucket has (e.g. written by an earlier VM): a sync must leave it alone
    from google.cloud import storage

    storage.Client().bucket(BUCKET).blob(prefix + "from-elsewhere.txt").upload_from_string(b"keep me")

    # the network goes away (nothing listens on that port): no exception, everything pending
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    (batch / "petstore" / "toolx" / "run-1" / "logs").mkdir()
    (batch / "petstore" / "toolx" / "run-1" / "logs" / "tool.log").write_text("tool output\n")
    started = time.monotonic()
    down = sync_batch(batch, BUCKET, "res", retry=NO_WAIT)
    assert time.monotonic() - started < 30
    assert not down.complete
    assert down.uploaded == []
    assert "petstore/toolx/run-1/logs/tool.log" in down.pending
    assert down.errors and "cannot list" in down.errors[0]

    # the network is back: the next sync catches up with exactly what is missing
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs)
    (batch / "plan.json").unlink()  # deleted locally: still kept remotely
    up = sync_batch(batch, BUCKET, "res", retry=NO_WAIT)
    assert up.complete, up.describe()
    assert up.uploaded == ["petstore/toolx/run-1/logs/tool.log"]
    objs = remote_objects(prefix)
    assert objs[prefix + "from-elsewhere.txt"] == b"keep me"
    assert prefix + "plan.json" in objs
    assert objs[prefix + "petstore/toolx/run-1/logs/tool.log"] == b"tool output\n"


def test_missing_bucket_is_reported_not_raised(gcs: str, tmp_path: Path) -> None:
    batch = make_batch(tmp_path, "batch-x")
    res = sync_batch(batch, "no-such-bucket", "p", retry=NO_WAIT)
    assert not res.complete
    assert len(res.pending) == 4 and res.uploaded == []


def test_cli_main(gcs: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    batch = make_batch(tmp_path, "batch-cli")
    assert upload.main([str(batch), "--bucket", BUCKET, "--path", "cli"]) == 0
    assert "4 uploaded" in capsys.readouterr().out
    assert upload.main([str(batch), "--bucket", BUCKET, "--path", "cli"]) == 0
    assert "0 uploaded, 4 unchanged" in capsys.readouterr().out
    assert upload.main([str(tmp_path / "absent"), "--bucket", BUCKET]) == 2


def test_transient_classification() -> None:
    import requests

    assert upload.is_transient(api_exceptions.ServiceUnavailable("down"))
    assert upload.is_transient(api_exceptions.TooManyRequests("slow down"))
    assert upload.is_transient(api_exceptions.InternalServerError("oops"))
    assert upload.is_transient(requests.ConnectionError("refused"))
    assert upload.is_transient(requests.Timeout("slow"))
    assert upload.is_transient(ConnectionResetError())
    assert not upload.is_transient(api_exceptions.Forbidden("no"))
    assert not upload.is_transient(api_exceptions.NotFound("no bucket"))
    assert not upload.is_transient(ValueError("bug"))


def test_retry_policy_retries_transient_only() -> None:
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise api_exceptions.ServiceUnavailable("try again")
        return "ok"

    for attempt in upload._retrying(upload.RetryPolicy(attempts=3, wait_initial=0, wait_max=0)):
        with attempt:
            result = flaky()
    assert result == "ok" and calls["n"] == 3

    calls["n"] = 0

    def forbidden() -> None:
        calls["n"] += 1
        raise api_exceptions.Forbidden("no")

    with pytest.raises(api_exceptions.Forbidden):
        for attempt in upload._retrying(upload.RetryPolicy(attempts=5, wait_initial=0, wait_max=0)):
            with attempt:
                forbidden()
    assert calls["n"] == 1


def test_running_experiments_are_deferred(gcs: str, tmp_path: Path) -> None:
    batch = make_batch(tmp_path, "batch-running")
    running = batch / "petstore" / "toolx" / "run-1"
    res = sync_batch(batch, BUCKET, "dfr", retry=NO_WAIT, in_progress=[running])
    assert res.complete and res.uploaded == ["plan.json"]
    assert sorted(res.deferred) == [
        "petstore/toolx/run-1/coverage/series.csv",
        "petstore/toolx/run-1/summary.json",
        "petstore/toolx/run-1/traffic.sqlite",
    ]
    assert set(remote_objects("dfr/")) == {"dfr/batch-running/plan.json"}
    # the experiment finished: the next sync sends its folder and nothing else
    done = sync_batch(batch, BUCKET, "dfr", retry=NO_WAIT)
    assert sorted(done.uploaded) == sorted(res.deferred) and done.unchanged == ["plan.json"]


def test_the_scheduler_hands_the_running_folders_to_the_sync(gcs: str, tmp_path: Path) -> None:
    """The runner's upload hook (remote_runner.batch.driver._sync) passes in_progress through."""
    from remote_runner.batch import driver
    from remote_runner.batch.settings import Settings, Upload

    batch = make_batch(tmp_path, "batch-hook")
    running = batch / "petstore" / "toolx" / "run-1"
    settings = Settings(upload=Upload(BUCKET, "hook"))
    res = driver._sync(batch, settings, in_progress=[running])
    assert res.complete and res.uploaded == ["plan.json"] and len(res.deferred) == 3
    assert set(remote_objects("hook/")) == {"hook/batch-hook/plan.json"}
    assert sorted(driver._sync(batch, settings).uploaded) == sorted(res.deferred)
