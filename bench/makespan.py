"""Measure 3, makespan efficiency: a seeded random DAG of sleep tasks on 8 worker slots.

The lower bound no scheduler can beat is max(critical path, total work / slots); efficiency is that bound
over the actual makespan (first claim to last completion, database clock). The tasks are the real
``sleep`` builtin, which checkpoints and reports progress every 0.5 s as it goes (these tasks are
shorter, so they write only their results). The tasks all have one weight and priority: the order comes
from the claim's critical path first (``domain.graph.chain_lengths``). procrastinate and pgqueuer have
no task dependencies, so they have no figure here.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import psycopg

from bench.common import Mode, WorkerProcs, fresh_pg, helix_url, poll_until
from bench.drains import helix_submit
from bench.report import Report, Row

__all__ = ["random_dag", "run"]

SECTION = "3. Makespan, random DAG on 8 slots (s)"
SEED = 8
PROCESSES, CONCURRENCY = 2, 4


def random_dag(
    n: int, seconds: tuple[float, float], seed: int = SEED
) -> tuple[dict[str, object], float, float]:
    """A plan of ``n`` sleep tasks, each depending on up to 3 of the 40 before it; returns the plan,
    its critical path and its total work (seconds)."""
    rng = random.Random(seed)
    tasks: list[dict[str, object]] = []
    finish: list[float] = []
    total = 0.0
    for i in range(n):
        duration = round(rng.uniform(*seconds), 3)
        window = list(range(max(0, i - 40), i))
        deps = sorted(rng.sample(window, min(len(window), rng.choice((0, 1, 1, 2, 3)))))
        finish.append(max((finish[d] for d in deps), default=0.0) + duration)
        total += duration
        tasks.append(
            {
                "id": f"t{i}",
                "type": "building",
                "title": "sleep",
                "run": {"builtin": "sleep", "seconds": duration},
                "depends_on": [f"t{d}" for d in deps],
            }
        )
    return {"name": "bench-dag", "tasks": tasks}, max(finish), total


def run(mode: Mode, report: Report, log: Callable[[str], None]) -> None:
    slots = PROCESSES * CONCURRENCY
    plan, critical, total = random_dag(mode.dag_tasks, mode.dag_seconds)
    bound = max(critical, total / slots)
    with fresh_pg("mk") as dsn:
        url = helix_url(dsn)
        job = asyncio.run(helix_submit(url, plan))
        procs = WorkerProcs(
            "bench.peers.helix_worker", ["--url", url, "--concurrency", str(CONCURRENCY)], PROCESSES
        )
        with psycopg.connect(dsn, autocommit=True) as conn:

            def done() -> bool:
                row = conn.execute("SELECT status FROM jobs WHERE id = %s", (job,)).fetchone()
                return row is not None and row[0] != "running"

            try:
                procs.wait_ready()
                procs.go()
                poll_until(done, 900, 0.1)
                procs.wait(60)
            finally:
                procs.kill()
            first, last, status = conn.execute(
                "SELECT min(t.started_at), max(t.finished_at), j.status"
                " FROM tasks t JOIN jobs j ON j.id = t.job_id"
                " WHERE t.job_id = %s GROUP BY j.status",
                (job,),
            ).fetchone()  # type: ignore[misc]
    makespan = float(last) - float(first)
    efficiency = bound / makespan
    log(
        f"makespan {makespan:.2f}s, bound {bound:.2f}s "
        f"(critical {critical:.2f}, work/{slots} {total / slots:.2f}): {efficiency:.1%}"
    )
    report.add(
        Row(
            SECTION,
            f"{mode.dag_tasks} sleep tasks {mode.dag_seconds[0]:g}-{mode.dag_seconds[1]:g}s, "
            f"seed {SEED}, PostgreSQL",
            "s",
            makespan,
            "lower bound max(CP, work/8)",
            bound,
            higher_is_better=False,
            target=">= 95% efficient",
            met=efficiency >= 0.95 and status == "succeeded",
            note=f"(ratio = efficiency; CP {critical:.1f}s, work/8 {total / slots:.1f}s)",
        )
    )
    report.add(
        Row(
            SECTION,
            "the same on procrastinate / pgqueuer",
            "s",
            makespan,
            "procrastinate, pgqueuer",
            "n/a: no dependencies between jobs",
            higher_is_better=False,
        )
    )
