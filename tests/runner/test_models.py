"""Models fetched by a worker before its first run of a tool that needs them
(remote_runner/experiment/models.py), against the GCS emulator: verified by size and MD5, fetched once
however many attempts ask at once,
a damaged copy fetched again, a partial download resumed, a missing object named."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from remote_runner.experiment import models
from tests.services import gcs_emulator

BUCKET = "models-bucket"

pytestmark = pytest.mark.emulator


@pytest.fixture
def storage(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    with gcs_emulator(BUCKET) as url:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
        from google.cloud import storage as gcs

        client = gcs.Client.create_anonymous_client()
        bucket = client.bucket(BUCKET)
        for name, size in (("ex.gguf", 300_000), ("ipd.gguf", 123_457)):
            bucket.blob(f"LlamaRestTest/{name}").upload_from_string(bytes(i % 251 for i in range(size)))
        yield client


def test_models_are_fetched_once_and_verified(storage: object, tmp_path: Path) -> None:
    source = models.Source(BUCKET, "LlamaRestTest")
    dest = tmp_path / "models"
    problems: list[list[str]] = []
    threads = [
        threading.Thread(target=lambda: problems.append(models.ensure(source, dest))) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert problems == [[], [], []]
    assert (dest / "ex.gguf").stat().st_size == 300_000 and (dest / "ipd.gguf").stat().st_size == 123_457
    assert (dest / "ex.gguf").read_bytes()[:5] == bytes(range(5))
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith(".")) == ["ex.gguf", "ipd.gguf"]
    first = (dest / "ex.gguf").stat().st_mtime_ns
    assert (
        models.ensure(source, dest) == [] and (dest / "ex.gguf").stat().st_mtime_ns == first
    )  # present: kept


def test_a_damaged_copy_is_fetched_again_and_a_partial_one_resumed(storage: object, tmp_path: Path) -> None:
    source = models.Source(BUCKET, "LlamaRestTest")
    dest = tmp_path / "models"
    dest.mkdir()
    whole = bytes(i % 251 for i in range(300_000))
    (dest / "ex.gguf").write_bytes(b"x" * 300_000)  # the right size, the wrong bytes: MD5 says so
    (dest / ".ipd.gguf.partial").write_bytes(bytes(i % 251 for i in range(50_000)))  # a cut download
    assert models.ensure(source, dest) == []
    assert (dest / "ex.gguf").read_bytes() == whole
    assert (dest / "ipd.gguf").read_bytes() == bytes(i % 251 for i in range(123_457))
    assert not (dest / ".ipd.gguf.partial").exists()


def test_a_missing_model_is_named_with_the_keys_to_check(storage: object, tmp_path: Path) -> None:
    problems = models.ensure(models.Source(BUCKET, "elsewhere"), tmp_path / "models")
    assert problems == [
        f"gs://{BUCKET}/elsewhere/ex.gguf does not exist (the stack's modelsBucket/modelsPath)",
        f"gs://{BUCKET}/elsewhere/ipd.gguf does not exist (the stack's modelsBucket/modelsPath)",
    ]
