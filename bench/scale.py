"""Measure 5, scale: submit and validate a 100,000-task DAG (time, peak memory); the cost of one claim
with 1,000 vs 100,000 tasks queued.

Each part runs in a fresh child process (``python -m bench.scale PART ...``) so that its peak memory
(``ru_maxrss``) is its own. The peers have no DAG submission to compare with; the claim-cost ratio is a
property of our own queries (indexes), so it is compared with itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import ROOT, Mode, fresh_pg, helix_url
from bench.report import Report, Row

__all__ = ["run"]

SECTION = "5. Scale"
CLAIMS = 30


def dag_plan(n: int, seed: int = 5) -> dict[str, object]:
    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        deps = sorted(
            {rng.randrange(max(0, i - 100), i) for _ in range(rng.choice((0, 1, 2)))} if i else set()
        )
        tasks.append(
            {
                "id": f"t{i}",
                "type": "building",
                "title": f"task {i}",
                "run": {"builtin": "noop"},
                "depends_on": [f"t{d}" for d in deps],
            }
        )
    return {"name": "bench-scale", "tasks": tasks}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _submit(url: str, n: int) -> dict[str, float]:
    from bench.peers.helix_worker import settings_for
    from helixcode.domain.plan import parse_plan
    from helixcode.store.store import Store

    store = await Store.open(settings_for(url))
    plan = dag_plan(n)
    base = _rss_mb()
    t0 = time.perf_counter()
    spec = parse_plan(plan)
    t1 = time.perf_counter()
    await store.create_job(spec)
    t2 = time.perf_counter()
    await store.aclose()
    peak = _rss_mb()
    return {
        "validate_s": t1 - t0,
        "insert_s": t2 - t1,
        "total_s": t2 - t0,
        "peak_mb": peak,
        "base_mb": base,
        "raw_s": _raw_insert_s(url),
    }


def _raw_insert_s(url: str) -> float:
    """The limit a submission is measured against (SQLite): the same rows (job, tasks, edges, events),
    as the submission left them, inserted by a raw ``executemany`` per table in one transaction into
    an empty copy of the schema."""
    import sqlite3

    path = url.split("///", 1)[1]
    tables = ("jobs", "tasks", "task_dependencies", "events")
    with sqlite3.connect(path) as source:
        rows = {t: source.execute(f"SELECT * FROM {t}").fetchall() for t in tables}
        schema = [
            sql
            for (sql,) in source.execute(
                "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'"
            )
        ]
    empty = path + ".raw"
    target = sqlite3.connect(empty, isolation_level=None)
    try:
        for statement in schema:
            target.execute(statement)
        target.execute("PRAGMA journal_mode=WAL")
        target.execute("PRAGMA synchronous=NORMAL")
        target.execute("PRAGMA foreign_keys=ON")
        started = time.perf_counter()
        target.execute("BEGIN IMMEDIATE")
        for table in tables:
            if rows[table]:
                marks = ",".join("?" * len(rows[table][0]))
                target.executemany(f"INSERT INTO {table} VALUES ({marks})", rows[table])
        target.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        target.close()


async def _claims(url: str, queued: int) -> dict[str, float]:
    from bench.drains import noop_plan
    from bench.peers.helix_worker import settings_for
    from helixcode.domain.plan import parse_plan
    from helixcode.store.store import Store

    store = await Store.open(settings_for(url))
    await store.create_job(parse_plan(noop_plan(queued)))
    if store.dialect == "postgresql":
        # The steady state, not the minutes after a bulk insert: autovacuum would be visiting the new
        # rows (writing WAL that each claim's commit then waits behind), more so for 100,000 than 1,000.
        async with store.engine.connect() as conn:
            await conn.exec_driver_sql("VACUUM (ANALYZE) tasks")
    times = []
    for _ in range(CLAIMS):
        t0 = time.perf_counter()
        claims = await store.claim("bench", (), 1)
        times.append(time.perf_counter() - t0)
        assert len(claims) == 1
    await store.aclose()
    return {"claim_ms": statistics.median(times) * 1000}


def _child(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.scale", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def run(mode: Mode, report: Report, log: Callable[[str], None]) -> None:
    n = mode.scale_tasks
    with tempfile.TemporaryDirectory() as tmp:
        sub = _child("submit", f"sqlite+aiosqlite:///{Path(tmp) / 'scale.db'}", str(n))
    log(f"submit {n}: {sub}")
    report.add(
        Row(
            SECTION,
            f"submit+validate a {n:,}-task DAG, SQLite",
            "s",
            sub["total_s"],
            "raw executemany of the same rows, one transaction",
            sub["raw_s"],
            higher_is_better=False,
            target="<= 2x",
            met=sub["total_s"] <= 2.0 * sub["raw_s"],
            note=f"(validate {sub['validate_s']:.1f}s + insert {sub['insert_s']:.1f}s)",
        )
    )
    report.add(
        Row(
            SECTION,
            f"peak memory of that submission (process RSS; {sub['base_mb']:.0f} MB before the plan)",
            "MB",
            sub["peak_mb"],
            "",
            "n/a",
            higher_is_better=False,
        )
    )
    big = n
    for db in ("sqlite", "pg"):
        costs = {}
        for queued in (1000, big):
            if db == "sqlite":
                with tempfile.TemporaryDirectory() as tmp:
                    costs[queued] = _child("claims", f"sqlite+aiosqlite:///{Path(tmp) / 'c.db'}", str(queued))
            else:
                with fresh_pg("sc") as dsn:
                    costs[queued] = _child("claims", helix_url(dsn), str(queued))
        small, large = costs[1000]["claim_ms"], costs[big]["claim_ms"]
        log(f"{db}: claim with 1,000 queued {small:.2f} ms, with {big:,} {large:.2f} ms")
        report.add(
            Row(
                SECTION,
                f"one claim with {big:,} queued vs 1,000, {'SQLite' if db == 'sqlite' else 'PostgreSQL'}",
                "ms",
                large,
                "HelixCode, 1,000 queued",
                small,
                higher_is_better=False,
                target="<= 1.5x (ratio >= 0.67)",
                met=large <= 1.5 * small,
            )
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("part", choices=["submit", "claims"])
    parser.add_argument("url")
    parser.add_argument("n", type=int)
    a = parser.parse_args()
    result = asyncio.run(_submit(a.url, a.n) if a.part == "submit" else _claims(a.url, a.n))
    print(json.dumps(result))
