"""Measure 4, recovery: kill -9 a worker mid-task; how soon does the task run again elsewhere, and how
much of its work is redone?

One long ``sleep`` task (it checkpoints as it goes) starts on worker A; worker B waits idle; A is killed
with SIGKILL part-way. HelixCode: lease TTL 2 s, heartbeats every 0.5 s; the reaper on B requeues the
expired lease and B resumes from the latest checkpoint. pgqueuer: ``heartbeat_timeout`` 2 s (its
staleness threshold for re-picking); it has no checkpoints, so the job starts again from zero.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from bench.common import Mode, WorkerProcs, fresh_pg, helix_url, poll_until
from bench.drains import helix_submit
from bench.report import Report, Row

__all__ = ["run"]

SECTION = "4. Recovery after kill -9 mid-task"
TTL = 2.0
TASK_SECONDS = 4.0
KILL_AFTER = 1.5


def _kill(procs: WorkerProcs) -> float:
    os.kill(procs.procs[0].pid, signal.SIGKILL)
    killed = time.time()
    procs.procs[0].wait()
    return killed


def helix_recovery() -> tuple[float, float]:
    """(seconds from the kill to the task claimed again, seconds of work redone)."""
    plan = {
        "name": "bench-recovery",
        "tasks": [
            {
                "id": "long",
                "type": "building",
                "title": "sleep",
                "run": {"builtin": "sleep", "seconds": TASK_SECONDS},
            }
        ],
    }
    args = ["--concurrency", "1", "--forever", "--lease-ttl", str(TTL), "--heartbeat", str(TTL / 4)]
    with fresh_pg("rc") as dsn, psycopg.connect(dsn, autocommit=True) as conn:
        url = helix_url(dsn)
        job = asyncio.run(helix_submit(url, plan))

        def one(query: str) -> object:
            row = conn.execute(query, (job,)).fetchone()
            return row[0] if row else None

        a = WorkerProcs("bench.peers.helix_worker", ["--url", url, *args], 1)
        b = WorkerProcs("bench.peers.helix_worker", ["--url", url, *args], 1)
        try:
            a.wait_ready()
            a.go()
            poll_until(lambda: one("SELECT status FROM tasks WHERE job_id = %s") == "running", 30)
            started = float(one("SELECT started_at FROM tasks WHERE job_id = %s"))  # type: ignore[arg-type]
            b.wait_ready()
            b.go()
            time.sleep(max(0.0, started + KILL_AFTER - time.time()))
            killed = _kill(a)
            done_at_kill = killed - started
            again = (
                "SELECT min(created_at) FROM events WHERE job_id = %s AND kind = 'claimed' AND attempt = 2"
            )
            poll_until(lambda: one(again) is not None, 30)
            reclaimed = float(one(again))  # type: ignore[arg-type]
            poll_until(lambda: one("SELECT status FROM jobs WHERE id = %s") != "running", 30)
            output = one(
                "SELECT r.output FROM results r JOIN tasks t ON t.id = r.task_id"
                " WHERE t.job_id = %s AND r.outcome = 'succeeded'"
            )
        finally:
            a.kill()
            b.kill()
    resumed_from = float((output or {}).get("resumed_from", 0.0))  # type: ignore[union-attr]
    return reclaimed - killed, max(0.0, done_at_kill - resumed_from)


def pgqueuer_recovery() -> tuple[float, float]:
    from bench.peers import pgqueuer_worker as qw

    with fresh_pg("rcq") as dsn, tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "starts.jsonl"
        log.touch()
        asyncio.run(qw.prepare(dsn, 1, "sleep", str(TASK_SECONDS).encode()))
        args = ["--dsn", dsn, "--batch", "1", "--forever", "--heartbeat-timeout", str(TTL)]
        env = {"BENCH_LOG": str(log)}

        def starts() -> list[dict[str, float]]:
            return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

        a = WorkerProcs("bench.peers.pgqueuer_worker", args, 1, env=env)
        b = WorkerProcs("bench.peers.pgqueuer_worker", args, 1, env=env)
        try:
            a.wait_ready()
            a.go()
            poll_until(lambda: len(starts()) >= 1, 30)
            started = starts()[0]["start"]
            b.wait_ready()
            b.go()
            time.sleep(max(0.0, started + KILL_AFTER - time.time()))
            killed = _kill(a)
            poll_until(lambda: len(starts()) >= 2, 60)
            again = starts()[1]
        finally:
            a.kill()
            b.kill()
    return again["start"] - killed, (killed - started) - again["resumed_from"]


def run(mode: Mode, report: Report, log: Callable[[str], None]) -> None:
    ours = helix_recovery()
    log(f"HelixCode: again after {ours[0]:.2f}s, redone {ours[1]:.2f}s")
    try:
        theirs: tuple[float, float] | str = pgqueuer_recovery()
        log(f"pgqueuer: again after {theirs[0]:.2f}s, redone {theirs[1]:.2f}s")  # type: ignore[index]
    except Exception as exc:
        theirs = f"failed: {type(exc).__name__}: {str(exc)[:120]}"
    limit = TTL + 1.0
    report.add(
        Row(
            SECTION,
            f"kill -> running again elsewhere (lease/heartbeat TTL {TTL:g}s)",
            "s",
            ours[0],
            "pgqueuer (heartbeat_timeout 2s)",
            theirs if isinstance(theirs, str) else theirs[0],
            higher_is_better=False,
            target=f"<= TTL + 1 s = {limit:g}s",
            met=ours[0] <= limit,
        )
    )
    report.add(
        Row(
            SECTION,
            f"work redone after the kill (killed {KILL_AFTER:g}s into a {TASK_SECONDS:g}s task)",
            "s",
            ours[1],
            "pgqueuer (no checkpoints: from scratch)",
            theirs if isinstance(theirs, str) else theirs[1],
            higher_is_better=False,
            target="from the latest checkpoint",
            met=ours[1] <= 0.5 + 0.05,  # the sleep builtin checkpoints every 0.4 s here
        )
    )
