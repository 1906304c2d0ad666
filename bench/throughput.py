"""Measure 1, throughput: claim+complete of no-op tasks by 4 worker processes, two shapes, side by side.

Per-task shape: one task per claim and per acknowledgement (HelixCode concurrency 1, procrastinate
concurrency 1, pgqueuer batch_size 1, Celery prefetch 1). Batched shape: 10 per claim and per
acknowledgement where the system can (HelixCode claim limit 10 + ``complete_many``, pgqueuer batch_size
10, Celery prefetch 10). Repetitions are interleaved across systems so that load on the machine falls
on all of them alike. The machine's ceiling: pgbench simple-update on the same server.
"""

from __future__ import annotations

from collections.abc import Callable

from bench import drains
from bench.common import Mode, spread
from bench.drains import DrainResult
from bench.report import Report, Row

__all__ = ["run"]

SECTION = "1. Throughput, 4 worker processes (tasks/s)"


def _configs(mode: Mode) -> dict[str, Callable[[], DrainResult]]:
    n = mode.drain_tasks
    return {
        "helix-pg-1": lambda: drains.helix_drain("pg", n, 1),
        "procrastinate": lambda: drains.procrastinate_drain(n),
        "pgqueuer-1": lambda: drains.pgqueuer_drain(n, 1),
        "celery-1": lambda: drains.celery_drain(n, 1),
        "helix-pg-10": lambda: drains.helix_drain("pg", n, 10),
        "pgqueuer-10": lambda: drains.pgqueuer_drain(n, 10),
        "celery-10": lambda: drains.celery_drain(n, 10),
        "helix-sqlite-1": lambda: drains.helix_drain("sqlite", n, 1),
        "helix-sqlite-10": lambda: drains.helix_drain("sqlite", n, 10),
    }


def run(mode: Mode, report: Report, log: Callable[[str], None]) -> None:
    tps, pgbench_cpu = drains.pgbench(mode.pgbench_seconds)
    log(f"pgbench simple-update, 4 clients: {tps:.0f} TPS (CPU {pgbench_cpu:.0f}%)")
    results: dict[str, list[DrainResult]] = {}
    failures: dict[str, str] = {}
    for rep in range(mode.reps):
        for name, drain in _configs(mode).items():
            if name in failures:
                continue
            try:
                result = drain()
            except Exception as exc:  # a peer that cannot run says why in the table
                failures[name] = f"failed: {type(exc).__name__}: {str(exc)[:120]}"
                log(f"{name}: {failures[name]}")
                continue
            results.setdefault(name, []).append(result)
            log(f"rep {rep + 1}: {name}: {result.rate:.0f}/s, CPU {result.cpu_percent:.0f}%")

    def rate(name: str) -> object:
        if name in results:
            return spread([r.rate for r in results[name]])
        return failures.get(name, "not run")

    def cpu(name: str) -> object:
        if name in results:
            return spread([r.cpu_ms_per_task for r in results[name]])
        return failures.get(name, "not run")

    def client_cpu(name: str) -> object:
        if name not in results:
            return failures.get(name, "not run")
        known = [c for r in results[name] if (c := r.worker_cpu_ms_per_task) is not None]
        return spread(known) if known else "unknown: the worker processes had exited when measured"

    n = mode.drain_tasks
    ours1, ours10 = rate("helix-pg-1"), rate("helix-pg-10")
    per_task = f"per-task, PostgreSQL, {n} tasks"
    batched = f"batched 10, PostgreSQL, {n} tasks"
    rows = [
        Row(
            SECTION,
            per_task,
            "tasks/s",
            ours1,
            "procrastinate (c=1)",
            rate("procrastinate"),
            target=">= 1.5x",
        ),
        Row(SECTION, per_task, "tasks/s", ours1, "pgqueuer (batch 1)", rate("pgqueuer-1")),
        Row(SECTION, per_task, "tasks/s", ours1, "Celery+Redis (prefetch 1)", rate("celery-1")),
        Row(
            SECTION,
            batched,
            "tasks/s",
            ours10,
            "pgqueuer (batch 10)",
            rate("pgqueuer-10"),
            target=">= 1x (1.5x)",
        ),
        Row(
            SECTION,
            batched,
            "tasks/s",
            ours10,
            "procrastinate",
            "n/a: no batched fetch or acknowledgement in its API (one job per fetch_job/finish_job)",
        ),
        Row(SECTION, batched, "tasks/s", ours10, "Celery+Redis (prefetch 10)", rate("celery-10")),
        Row(
            SECTION,
            f"per-task, SQLite, {n} tasks",
            "tasks/s",
            rate("helix-sqlite-1"),
            "HelixCode on PostgreSQL",
            ours1,
        ),
        Row(
            SECTION,
            f"batched 10, SQLite, {n} tasks",
            "tasks/s",
            rate("helix-sqlite-10"),
            "HelixCode on PostgreSQL",
            ours10,
        ),
        Row(
            SECTION,
            "per-task tasks/s vs the server's pgbench TPS",
            "tasks/s",
            ours1,
            "pgbench simple-update (4 clients)",
            tps,
            note="ratio = fraction of pgbench",
        ),
        Row(
            SECTION,
            "batched tasks/s vs the server's pgbench TPS",
            "tasks/s",
            ours10,
            "pgbench simple-update (4 clients)",
            tps,
            note="ratio = fraction of pgbench",
        ),
    ]
    for row in rows:
        if row.target and row.ratio is not None:
            row.met = row.ratio >= (1.5 if row.target.startswith(">= 1.5") else 1.0)
        report.add(row)
    cpu_section = "1b. CPU per task during the drains (ms, machine-wide incl. PostgreSQL/Redis)"
    client_section = (
        "1c. of which the worker processes' own CPU per task (ms; the rest is the database or broker)"
    )
    for section, measure in ((cpu_section, cpu), (client_section, client_cpu)):
        for ours, peers in (
            ("helix-pg-1", ("procrastinate", "pgqueuer-1", "celery-1")),
            ("helix-pg-10", ("pgqueuer-10", "celery-10")),
        ):
            mine = measure(ours)
            for peer in peers:
                report.add(
                    Row(
                        section,
                        ours.replace("helix-", "HelixCode "),
                        "CPU ms/task",
                        None if isinstance(mine, str) else mine,
                        peer,
                        measure(peer),
                        higher_is_better=False,
                    )
                )
    busy = {k: round(spread([r.cpu_percent for r in v]).median) for k, v in results.items()}
    report.settings["cpu busy % during drains (all cores)"] = {**busy, "pgbench": round(pgbench_cpu)}
