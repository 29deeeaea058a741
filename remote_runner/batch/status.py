"""``status``: counts per state and per tool x API, elapsed time and an estimate of the time left.
Reads the journal only (read-only), so it is safe while a runner works on the batch."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from remote_runner.batch import journal
from remote_runner.cloud import spend, upload_state
from remote_runner.common import clock
from remote_runner.placement import workers


def newest_batch(results: Path) -> Path | None:
    batches = sorted(p for p in results.glob("batch-*") if (p / "journal.sqlite").is_file())
    return batches[-1] if batches else None


def snapshot(batch_dir: Path) -> dict[str, Any]:
    jour = journal.Journal(batch_dir / "journal.sqlite", readonly=True)
    try:
        rows = jour.runs()
        created = float(jour.meta("created") or clock.now())
        finished_at = jour.meta("finished") or ""
        try:
            tries = jour.attempts_of()
        except sqlite3.OperationalError:  # an older runner's journal, opened read-only: no such table
            tries = []
    finally:
        jour.close()
    counts = dict.fromkeys(journal.STATUSES, 0)
    pairs: dict[str, dict[str, int]] = {}
    for row in rows:
        counts[row.status] += 1
        pair = pairs.setdefault(f"{row.key.tool} x {row.key.api}", dict.fromkeys(journal.STATUSES, 0))
        pair[row.status] += 1
    doc = summarize(
        counts, pairs, created, float(finished_at) if finished_at else None, clock.now(), batch_dir
    )
    doc["upload"] = upload_state.read(batch_dir)  # last sync: when, and what is not yet uploaded
    cost = spend.read_status(batch_dir)
    if cost is not None:  # a cluster batch with a cost cap
        doc["spend"] = cost
    group = workers.read_status(batch_dir)
    if group is not None:  # cluster stack: waiting for, or releasing, the worker group
        doc["workers"] = group
    cluster = read_cluster(batch_dir)
    if cluster is not None:  # cluster mode: the driver's last view of the nodes
        doc["cluster"] = cluster
        doc["runs_per_node"] = runs_per_node(tries)
    return doc


def read_cluster(batch_dir: Path) -> dict[str, Any] | None:
    """``cluster.json``, written by the driver in cluster mode (remote_runner.placement.cluster), or None."""
    try:
        data = json.loads((batch_dir / "cluster.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def runs_per_node(tries: list[tuple[Any, int, str | None, str]]) -> dict[str, int]:
    """Committed runs per node id (pure)."""
    out: dict[str, int] = {}
    for _key, _attempt, node, outcome in tries:
        if outcome == "committed" and node:
            out[node] = out.get(node, 0) + 1
    return out


def cluster_lines(doc: dict[str, Any]) -> list[str]:
    cluster = doc.get("cluster")
    if not cluster:
        return []
    per_node = doc.get("runs_per_node", {})
    lines = [f"cluster: dashboard {cluster.get('dashboard') or '-'} (as of {cluster.get('updated', '?')})"]
    for node in cluster.get("nodes", []):
        if not node.get("slots") and not per_node.get(node.get("node_id")):
            continue  # the head: runs no experiment
        lines.append(
            f"  node {str(node.get('node_id', '?'))[:12]} {node.get('address', '')}: "
            f"{'alive' if node.get('alive') else 'DEAD'}, slots {node.get('slots_used', 0)}/"
            f"{node.get('holds', node.get('slots', 0))} used, "
            f"{per_node.get(node.get('node_id'), 0)} runs done"
            + (f", running {', '.join(node['runs'])}" if node.get("runs") else "")
        )
    return lines


def summarize(
    counts: dict[str, int],
    pairs: dict[str, dict[str, int]],
    created: float,
    finished_at: float | None,
    now: float,
    batch_dir: Path,
) -> dict[str, Any]:
    """Pure: the status document. The estimate extrapolates the batch's throughput so far."""
    total = sum(counts.values())
    done = counts[journal.SUCCEEDED] + counts[journal.FAILED]
    elapsed = (finished_at or now) - created
    eta: float | None
    if done >= total:
        eta = 0.0
    elif done == 0 or elapsed <= 0:
        eta = None
    else:
        eta = (total - done) * elapsed / done
    return {
        "batch": batch_dir.name,
        "folder": str(batch_dir),
        "total": total,
        "counts": counts,
        "per_pair": pairs,
        "elapsed_seconds": round(elapsed, 1),
        "eta_seconds": None if eta is None else round(eta, 1),
        "finished": done >= total,
    }


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s"


def text(doc: dict[str, Any]) -> str:
    c = doc["counts"]
    lines = [
        f"batch {doc['batch']}: {doc['total']} runs, " + ", ".join(f"{c[s]} {s}" for s in journal.STATUSES),
        f"elapsed {_duration(doc['elapsed_seconds'])}, estimated time left {_duration(doc['eta_seconds'])}",
    ]
    if "upload" in doc:
        lines.append(upload_state.line(doc["upload"], clock.now()))
    if "workers" in doc:
        lines.append(workers.status_line(doc["workers"]))
    if "spend" in doc:
        lines.append(spend.status_line(doc["spend"]))
    lines.extend(cluster_lines(doc))
    width = max((len(p) for p in doc["per_pair"]), default=10)
    lines.append(f"{'tool x api':<{width}}  " + "  ".join(f"{s:>11}" for s in journal.STATUSES))
    for pair, pc in sorted(doc["per_pair"].items()):
        lines.append(f"{pair:<{width}}  " + "  ".join(f"{pc[s]:>11}" for s in journal.STATUSES))
    return "\n".join(lines)


def _table(doc: dict[str, Any]) -> Any:
    from rich.table import Table

    c = doc["counts"]
    table = Table(
        title=f"{doc['batch']}  elapsed {_duration(doc['elapsed_seconds'])}  "
        f"left ~{_duration(doc['eta_seconds'])}",
        caption=", ".join(f"{c[s]} {s}" for s in journal.STATUSES),
    )
    table.add_column("tool x api")
    for s in journal.STATUSES:
        table.add_column(s, justify="right")
    for pair, pc in sorted(doc["per_pair"].items()):
        table.add_row(pair, *(str(pc[s]) for s in journal.STATUSES))
    return table


def main(results: Path, batch: str | None, *, as_json: bool = False, once: bool = False) -> int:
    batch_dir = results / batch if batch else newest_batch(results)
    if batch_dir is None or not (batch_dir / "journal.sqlite").is_file():
        where = batch_dir if batch_dir is not None else f"{results}/batch-*"
        print(f"no batch found at {where}", file=sys.stderr)
        return 2
    doc = snapshot(batch_dir)
    if as_json:
        print(json.dumps(doc, indent=2))
        return 0
    if once or not sys.stdout.isatty():
        print(text(doc))
        return 0
    from rich.live import Live

    try:
        with Live(_table(doc), refresh_per_second=1) as live:
            while not doc["finished"]:
                time.sleep(2)
                doc = snapshot(batch_dir)
                live.update(_table(doc))
    except KeyboardInterrupt:
        pass
    return 0
