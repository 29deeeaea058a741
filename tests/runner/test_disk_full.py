"""A full results disk (issue 11): a small tmpfs as the results folder, on the real engine."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runner.conftest import journal_rows, labelled, spawn, terminate, wait_for
from tests.runner.test_batch_safety import quick

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path, leave: int) -> None:
    """Writes a filler file until only about ``leave`` bytes remain free."""
    import shutil

    free = shutil.disk_usage(folder).free
    with (folder / "filler").open("wb") as f:
        remaining = max(0, free - leave)
        chunk = b"\0" * (1 << 20)
        while remaining > 0:
            n = min(remaining, len(chunk))
            try:
                f.write(chunk[:n])
                f.flush()
            except OSError:
                break
            remaining -= n


def test_a_disk_below_the_floor_pauses_admission_and_ends_with_the_disk_full_code(
    fixture_images, small_disk, tmp_path, test_label
):
    results = small_disk / "results"
    results.mkdir()
    fill(small_disk, 4 * 1024**2)  # 4 MiB free, floor 8 MiB: no run may start
    proc = spawn(
        *quick(fixture_images, results, test_label, "2", "--min-free-disk", "8m"), log=tmp_path / "r.log"
    )
    try:
        code = proc.wait(60)
    finally:
        terminate(proc)
    out = (tmp_path / "r.log").read_text()
    assert code == 6, out  # exit_codes.DISK_FULL
    line = next(x for x in out.splitlines() if x.startswith("disk full: "))
    assert str(results) in line and "MiB free, below min_free_disk 8.0 MiB" in line
    batch = next(results.glob("batch-*"))
    assert [r["status"] for r in journal_rows(batch)] == ["pending", "pending"]  # nothing started
    assert labelled(test_label) == ([], [])


def test_a_results_disk_filling_up_mid_batch_keeps_the_attempt_interrupted_and_the_journal_whole(
    fixture_images, small_disk, tmp_path, test_label
):
    results = small_disk / "results"
    results.mkdir()
    proc = spawn(
        *quick(fixture_images, results, test_label, "3", "--min-free-disk", "0"), log=tmp_path / "r.log"
    )
    try:
        batch = wait_for(lambda: next(iter(results.glob("batch-*/plan.json")), None), 60, "a batch").parent
        wait_for(lambda: labelled(test_label)[0], 60, "an experiment's containers")
        fill(small_disk, 0)  # the disk fills while the first experiment runs
        code = proc.wait(120)
    finally:
        terminate(proc)
        (small_disk / "filler").unlink(missing_ok=True)
    out = (tmp_path / "r.log").read_text()
    assert code == 6, out
    assert "Traceback" not in out, out
    line = next(x for x in out.splitlines() if x.startswith("disk full: "))
    assert str(batch) in line and "free" in line
    rows = journal_rows(batch)  # the journal opens and reads consistently after the full disk
    statuses = [r["status"] for r in rows]
    assert "failed" not in statuses and all(r["failures"] == 0 for r in rows), rows
    assert statuses.count("succeeded") < 3
    assert labelled(test_label) == ([], [])
    # space freed: the resume finishes every run
    done = spawn(
        "run",
        "--results",
        str(results),
        "--batch",
        batch.name,
        "--no-build",
        "--min-free-disk",
        "0",
        log=tmp_path / "2.log",
    )
    try:
        assert done.wait(120) == 0, (tmp_path / "2.log").read_text()
    finally:
        terminate(done)
    assert [r["status"] for r in journal_rows(batch)] == ["succeeded"] * 3
