"""`status` shows when the last upload ran and what is not yet in the bucket
(remote_runner/cloud/upload_state.py), from the state the real uploader writes after syncing to the GCS
emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from remote_runner.batch import journal, status
from remote_runner.cloud import upload_state
from remote_runner.cloud.upload import NO_WAIT, sync_batch
from tests.services import gcs_emulator

BUCKET = "state-bucket"
pytestmark = pytest.mark.emulator


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    with gcs_emulator(BUCKET) as url:
        yield url


def make_batch(root: Path) -> Path:
    batch = root / "batch-20260101T000000Z"
    (batch / "demo" / "schemathesis" / "run-1").mkdir(parents=True)
    (batch / "plan.json").write_text('{"runs": 1}')
    (batch / "demo" / "schemathesis" / "run-1" / "summary.json").write_text('{"requests": 3}')
    jour = journal.Journal(batch / "journal.sqlite")
    jour.close()
    return batch


def test_status_shows_the_last_upload_and_what_is_not_uploaded(
    tmp_path: Path, emulator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test-project")
    batch = make_batch(tmp_path)
    assert "last upload: none yet" in status.text(status.snapshot(batch))

    ok = sync_batch(batch, BUCKET, "results", retry=NO_WAIT)
    assert ok.complete
    state = upload_state.read(batch)
    assert state is not None and state["complete"] is True
    assert state["target"] == f"gs://{BUCKET}/results/{batch.name}/"
    # the state file itself is never uploaded (a dot file), so a second sync has nothing to send
    assert sync_batch(batch, BUCKET, "results", retry=NO_WAIT).uploaded == []
    shown = status.text(status.snapshot(batch))
    assert f"to gs://{BUCKET}/results/{batch.name}/: complete" in shown
    assert "0h00m0" in shown  # seconds ago

    failed = sync_batch(batch, "no-such-bucket-here", "results", retry=NO_WAIT)
    assert not failed.complete
    doc = status.snapshot(batch)
    assert doc["upload"]["complete"] is False and doc["upload"]["pending"] >= 2
    shown = status.text(doc)
    assert "NOT uploaded yet:" in shown and "plan.json" in shown


def test_the_status_line_names_pending_files_and_the_first_error() -> None:
    state = {
        "at": 100.0,
        "target": "gs://b/p/batch-x/",
        "complete": False,
        "pending": 12,
        "pending_files": ["a.json", "b.json"],
        "first_error": "cannot list gs://b/p/: 403",
    }
    text = upload_state.line(state, now=100.0 + 3725)
    assert text == (
        "last upload 1h02m05s ago to gs://b/p/batch-x/: NOT uploaded yet: 12 file(s) (a.json, b.json); "
        "first error: cannot list gs://b/p/: 403"
    )
