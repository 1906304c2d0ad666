"""The soak (``python -m bench --only soak``; run only when named, it takes long): a million no-op tasks
through four ``helix worker`` processes on one PostgreSQL, with retention on, in one run.

Jobs of ``JOB_SIZE`` tasks are submitted as the backlog runs down (never more than ``BACKLOG`` tasks
waiting), and each job's drain rate is taken from its own start and end. Retention prunes finished
jobs ``KEEP_SECONDS`` after they end, so the tables must stay bounded; the measure is whether the last tenth
of the run is as fast as the first (no growing lag), and how big ``tasks`` and ``events`` (with their
indexes) are at the end. ``SOAK_TASKS`` overrides the size (a smaller run to try it out).

A server with autovacuum off (this machine's CI configuration turns it off for speed) never reclaims
the dead rows a queue makes, and the soak then measures the bloat, not HelixCode: measured, 300,000
tasks ran their last tenth at 0.70x their first with ``tasks`` at 166 MB for 30,000 live rows. So the
soak turns autovacuum on for its run (``ALTER SYSTEM``, restored afterwards) and says so, as any
production server runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg

from bench.common import PG_ADMIN_DSN, Mode, fresh_pg, helix_url
from bench.report import Report, Row

__all__ = ["run"]

SECTION = "10. Soak"
JOB_SIZE = 10_000
BACKLOG = 30_000
PROCESSES = 4
#: How long a finished job is kept. Short, so that pruning runs from the first tenth on: at 2,000
#: tasks/s a tenth lasts under a minute, and with a minute's retention the first tenth had nothing to
#: prune, so the measure compared a run without retention's work to one with it (0.74x).
KEEP_SECONDS = 10


def _submit(url: str, tasks: int) -> str:
    from bench.drains import noop_plan
    from bench.peers.helix_worker import settings_for
    from helixcode.domain.plan import parse_plan
    from helixcode.store.store import Store

    async def go() -> str:
        store = await Store.open(settings_for(url))
        try:
            return (await store.create_job(parse_plan(noop_plan(tasks)))).id
        finally:
            await store.aclose()

    return asyncio.run(go())


def _sizes(dsn: str) -> dict[str, float]:
    """Total size (MB) of each table with its indexes, and of its indexes alone."""
    out: dict[str, float] = {}
    with psycopg.connect(dsn) as conn:
        for table in ("tasks", "events", "results"):
            total, indexes = conn.execute(
                "SELECT pg_total_relation_size(%s), pg_indexes_size(%s)", (table, table)
            ).fetchone() or (0, 0)
            out[f"{table}_mb"] = round(total / 1e6, 1)
            out[f"{table}_indexes_mb"] = round(indexes / 1e6, 1)
        out["tasks_rows"] = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]  # type: ignore[index]
    return out


def _vacuum_stats(dsn: str) -> str:
    """Dead rows and (auto)vacuum runs of the churning tables: what to look at when the last tenth is
    slower than the first."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT relname, n_live_tup, n_dead_tup, autovacuum_count, autoanalyze_count "
            "FROM pg_stat_user_tables WHERE relname IN ('tasks', 'events', 'results', 'jobs', 'workers') "
            "ORDER BY relname"
        ).fetchall()
    return "; ".join(
        f"{name}: {live:,} live, {dead:,} dead, {vacuums} autovacuums, {analyzes} autoanalyzes"
        for name, live, dead, vacuums, analyzes in rows
    )


@contextlib.contextmanager
def _autovacuum_on(log: Callable[[str], None]) -> Iterator[None]:
    """Autovacuum on for the block, as the server had it afterwards."""
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        was = conn.execute("SHOW autovacuum").fetchone()[0]  # type: ignore[index]
        if was != "on":
            log("autovacuum was off on this server: on for the soak (ALTER SYSTEM), restored afterwards")
            conn.execute("ALTER SYSTEM SET autovacuum = on")
            conn.execute("SELECT pg_reload_conf()")
    try:
        yield
    finally:
        if was != "on":
            with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
                conn.execute("ALTER SYSTEM RESET autovacuum")
                conn.execute("SELECT pg_reload_conf()")


def run(mode: Mode, report: Report, log: Callable[[str], None]) -> None:
    with _autovacuum_on(log):
        _run(mode, report, log)


def _run(mode: Mode, report: Report, log: Callable[[str], None]) -> None:
    total = int(os.environ.get("SOAK_TASKS", "100000" if mode.quick else "1000000"))
    jobs = max(10, total // JOB_SIZE)
    size = total // jobs
    env = {
        "HELIX_RETENTION_JOBS_DAYS": str(KEEP_SECONDS / 86_400),
        "HELIX_RETENTION_EVENTS_DAYS": str(KEEP_SECONDS / 86_400),
        "HELIX_RETENTION_INTERVAL": "10",
        "HELIX_LOGGING_LEVEL": "warning",
    }
    with fresh_pg("soak") as dsn:
        url = helix_url(dsn)
        submitted: dict[str, float] = {}
        finished: dict[str, float] = {}
        pending: list[str] = []
        started = time.monotonic()
        helix = shutil.which("helix", path=str(Path(sys.executable).parent)) or "helix"
        workers = [
            subprocess.Popen(
                [helix, "worker", "start", "--concurrency", "8"],
                env={**os.environ, **env, "HELIX_DATABASE_URL": url},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(PROCESSES)
        ]
        try:
            while len(finished) < jobs:
                with psycopg.connect(dsn) as conn:
                    for job in list(pending):
                        row = conn.execute("SELECT status FROM jobs WHERE id = %s", (job,)).fetchone()
                        if row is None or row[0] == "succeeded":  # pruned means it ended a while ago
                            finished[job] = time.monotonic()
                            pending.remove(job)
                while len(submitted) < jobs and len(pending) * size < BACKLOG:
                    job = _submit(url, size)
                    submitted[job] = time.monotonic()
                    pending.append(job)
                time.sleep(0.5)
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(60)
        elapsed = time.monotonic() - started
        sizes = _sizes(dsn)
        log(f"tables at the end: {_vacuum_stats(dsn)}")
    order = sorted(finished, key=finished.__getitem__)
    # Each job's rate: its tasks over the time since the previous job finished (jobs drain in turn).
    ends = [started] + [finished[j] for j in order]
    rates = [size / (b - a) for a, b in itertools.pairwise(ends) if b > a]
    tenth = max(1, len(rates) // 10)
    first, last = statistics.median(rates[:tenth]), statistics.median(rates[-tenth:])
    log(
        f"{total:,} tasks in {elapsed:.0f}s ({total / elapsed:.0f}/s); "
        f"first tenth {first:.0f}/s, last {last:.0f}/s"
    )
    log(f"sizes at the end: {sizes}")
    # Where a decline happens (steadily, or at a step such as the first pruning pass or a checkpoint).
    deciles = [statistics.median(rates[i : i + tenth]) for i in range(0, len(rates), tenth)]
    log("throughput by tenth of the run (tasks/s): " + ", ".join(f"{r:.0f}" for r in deciles))
    report.add(
        Row(
            SECTION,
            f"{total:,} no-op tasks, {PROCESSES} workers: throughput of the last tenth vs the first",
            "tasks/s",
            last,
            "the same run's first tenth",
            first,
            target=">= 0.9x",
            met=last >= 0.9 * first,
            note=f"(autovacuum on; {total / elapsed:.0f}/s overall; at the end tasks {sizes['tasks_mb']} MB, "
            f"events {sizes['events_mb']} MB with indexes, {sizes['tasks_rows']:,} task rows kept)",
        )
    )
