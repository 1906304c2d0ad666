"""Measure 2, hand-off latency: from a parent's completion to its child starting.

Two chains of no-op tasks run on 2 worker processes (concurrency 1). HelixCode: the child depends on
the parent; the latency is the child's claim time minus the parent's completion time, both from the
database clock (``tasks.started_at - tasks.finished_at``). procrastinate has no dependencies: the parent
defers the child at its end, so its latency is from that defer to the child's start, both from its own
event log (``procrastinate_events.at``, the database clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

import psycopg

from bench.common import Mode, WorkerProcs, fresh_pg, helix_url, percentile, poll_until
from bench.drains import helix_submit
from bench.report import Report, Row

__all__ = ["run"]

SECTION = "2. Hand-off latency, parent done -> child started (ms)"
CHAINS = 2
WORKERS = 2

GAPS_SQL = """
SELECT c.started_at - p.finished_at
FROM task_dependencies d JOIN tasks c ON c.id = d.task_id JOIN tasks p ON p.id = d.depends_on_id
"""


def chain_plan(chains: int, length: int) -> dict[str, object]:
    tasks = []
    for c in range(chains):
        for i in range(length):
            task: dict[str, object] = {
                "id": f"c{c}-{i}",
                "type": "building",
                "title": "link",
                "run": {"builtin": "noop"},
            }
            if i:
                task["depends_on"] = [f"c{c}-{i - 1}"]
            tasks.append(task)
    return {"name": "bench-chain", "tasks": tasks}


def helix_gaps(db: str, handoffs: int) -> list[float]:
    length = handoffs // CHAINS + 1
    if db == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            path = Path(tmp) / "helix.db"
            return _helix_gaps(f"sqlite+aiosqlite:///{path}", length, lambda q: _sqlite_all(path, q))
    with fresh_pg("ho") as dsn:
        return _helix_gaps(helix_url(dsn), length, lambda q: _pg_all(dsn, q))


def _pg_all(dsn: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return list(conn.execute(query).fetchall())


def _sqlite_all(path: Path, query: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return list(conn.execute(query).fetchall())


def _helix_gaps(url: str, length: int, fetch: Callable[[str], list[tuple[object, ...]]]) -> list[float]:
    job = asyncio.run(helix_submit(url, chain_plan(CHAINS, length)))
    procs = WorkerProcs("bench.peers.helix_worker", ["--url", url, "--concurrency", "1"], WORKERS)
    try:
        procs.wait_ready()
        procs.go()
        poll_until(lambda: fetch(f"SELECT status FROM jobs WHERE id = '{job}'")[0][0] != "running", 300, 0.1)
        procs.wait(60)
    finally:
        procs.kill()
    return [float(g) * 1000 for (g,) in fetch(GAPS_SQL)]  # type: ignore[arg-type]


def procrastinate_gaps(handoffs: int) -> list[float]:
    from bench.peers import procrastinate_worker as pw

    length = handoffs // CHAINS + 1
    with fresh_pg("hop") as dsn:
        asyncio.run(pw.prepare(dsn, 0, CHAINS, length))
        procs = WorkerProcs("bench.peers.procrastinate_worker", [], WORKERS, env={"BENCH_DSN": dsn})
        try:
            procs.wait_ready()
            procs.go()
            procs.wait(300)
        finally:
            procs.kill()
        rows = _pg_all(
            dsn,
            """
            SELECT EXTRACT(EPOCH FROM max(e.at) FILTER (WHERE e.type = 'started')
                                    - max(e.at) FILTER (WHERE e.type = 'deferred'))
            FROM procrastinate_jobs j JOIN procrastinate_events e ON e.job_id = j.id
            WHERE j.task_name = 'link' AND (j.args->>'i')::int > 0
            GROUP BY j.id
            """,
        )
    return [float(g) * 1000 for (g,) in rows]  # type: ignore[arg-type]


def run(mode: Mode, report: Report, log: Callable[[str], None]) -> None:
    n = mode.handoffs
    pg = helix_gaps("pg", n)
    log(f"HelixCode PostgreSQL: p50 {percentile(pg, 50):.1f} ms, p99 {percentile(pg, 99):.1f} ms ({len(pg)})")
    lite = helix_gaps("sqlite", n)
    log(
        f"HelixCode SQLite: p50 {percentile(lite, 50):.1f} ms, "
        f"p99 {percentile(lite, 99):.1f} ms ({len(lite)})"
    )
    try:
        proc: list[float] | str = procrastinate_gaps(n)
    except Exception as exc:
        proc = f"failed: {type(exc).__name__}: {str(exc)[:120]}"
    for q, limit in ((50, 20.0), (99, 100.0)):
        theirs: float | str = percentile(proc, q) if isinstance(proc, list) else proc
        ours = percentile(pg, q)
        report.add(
            Row(
                SECTION,
                f"p{q}, PostgreSQL, {len(pg)} hand-offs",
                "ms",
                ours,
                "procrastinate (defer at parent's end)",
                theirs,
                higher_is_better=False,
                target=f"<= {limit:g} ms",
                met=ours <= limit,
            )
        )
        report.add(
            Row(
                SECTION,
                f"p{q}, SQLite, {len(lite)} hand-offs",
                "ms",
                percentile(lite, q),
                "procrastinate (PostgreSQL)",
                theirs,
                higher_is_better=False,
            )
        )
