"""One drain per system: enqueue N no-op tasks, start 4 worker processes, time claim+complete of all.

Every drain is timed the same way: the clock starts when the already started and connected workers are
told to go, and stops when a 20 ms poll of the system's own state first sees nothing left (HelixCode: the
job finished; procrastinate: no job todo/doing; pgqueuer: its queue table empty; Celery: the Redis list
and its unacked hash empty). Celery workers cannot be held at a start line, so its clock starts at the
first task's start instead (each worker process records that once).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg

from bench.common import REDIS_URL, ROOT, CpuMeter, WorkerProcs, fresh_pg, helix_url, poll_until

__all__ = ["DrainResult", "celery_drain", "helix_drain", "pgqueuer_drain", "procrastinate_drain"]

WORKERS = 4


@dataclass(frozen=True)
class DrainResult:
    tasks: int
    seconds: float
    cpu_percent: float  # machine-wide, all cores
    worker_cpu_seconds: float | None = None  # the worker processes' own CPU (user + system)

    @property
    def rate(self) -> float:
        return self.tasks / self.seconds

    @property
    def cpu_ms_per_task(self) -> float:
        return self.cpu_percent / 100 * (os.cpu_count() or 1) * self.seconds / self.tasks * 1000

    @property
    def worker_cpu_ms_per_task(self) -> float | None:
        """The client side of the drain: CPU spent in the worker processes themselves. The rest of
        ``cpu_ms_per_task`` is the database (or broker), the kernel's networking and the poller."""
        return None if self.worker_cpu_seconds is None else self.worker_cpu_seconds / self.tasks * 1000


class ProcessCpu:
    """CPU time (user + system) of a set of processes between ``start()`` and ``stop()``; a process
    that is gone by then makes the figure unknown (None) rather than wrong."""

    def __init__(self, pids: Sequence[int]) -> None:
        self._procs = [psutil.Process(pid) for pid in pids]

    def _total(self) -> float | None:
        try:
            return sum(sum(p.cpu_times()[:2]) for p in self._procs)  # user + system
        except psutil.Error:
            return None

    def start(self) -> None:
        self._t0 = self._total()

    def stop(self) -> float | None:
        t1 = self._total()
        return None if t1 is None or self._t0 is None else t1 - self._t0


def _timed(procs: WorkerProcs, done: object, n: int, timeout: float = 600.0) -> DrainResult:
    cpu = CpuMeter()
    procs.wait_ready()
    own = ProcessCpu(procs.pids())
    cpu.start()
    own.start()
    started = procs.go()
    try:
        ended = poll_until(done, timeout)
        busy = cpu.stop()
        workers = own.stop()
        procs.wait(timeout=120)
    finally:
        procs.kill()
    return DrainResult(n, ended - started, busy, workers)


# -- HelixCode ------------------------------------------------------------------------------------


def noop_plan(n: int) -> dict[str, object]:
    return {
        "name": "bench-noop",
        "tasks": [
            {"id": f"t{i}", "type": "building", "title": "noop", "run": {"builtin": "noop"}} for i in range(n)
        ],
    }


async def helix_submit(url: str, plan: dict[str, object]) -> str:
    from bench.peers.helix_worker import settings_for
    from helixcode.domain.plan import parse_plan
    from helixcode.store.store import Store

    store = await Store.open(settings_for(url))
    try:
        return (await store.create_job(parse_plan(plan))).id
    finally:
        await store.aclose()


def helix_drain(db: str, n: int, batch: int) -> DrainResult:
    """HelixCode's real worker runtime in 4 processes: concurrency (= claim limit) ``batch``; with
    ``batch > 1`` successes are acknowledged together (``complete_many``)."""
    args = ["--concurrency", str(batch), *(["--batch-acks"] if batch > 1 else [])]
    if db == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            path = Path(tmp) / "helix.db"
            url = f"sqlite+aiosqlite:///{path}"
            job = asyncio.run(helix_submit(url, noop_plan(n)))
            with contextlib.closing(sqlite3.connect(path)) as conn:
                procs = WorkerProcs("bench.peers.helix_worker", ["--url", url, *args], WORKERS)
                return _timed(procs, lambda: _job_done_sqlite(conn, job), n)
    with fresh_pg("tp") as dsn:
        url = helix_url(dsn)
        job = asyncio.run(helix_submit(url, noop_plan(n)))
        with psycopg.connect(dsn, autocommit=True) as conn:
            procs = WorkerProcs("bench.peers.helix_worker", ["--url", url, *args], WORKERS)
            return _timed(procs, lambda: _job_done_pg(conn, job), n)


def _job_done_pg(conn: psycopg.Connection, job: str) -> bool:
    row = conn.execute("SELECT status FROM jobs WHERE id = %s", (job,)).fetchone()
    return row is not None and row[0] != "running"


def _job_done_sqlite(conn: sqlite3.Connection, job: str) -> bool:
    row = conn.execute("SELECT status FROM jobs WHERE id = ?", (job,)).fetchone()
    return row is not None and row[0] != "running"


# -- procrastinate --------------------------------------------------------------------------------


def procrastinate_drain(n: int) -> DrainResult:
    """procrastinate's worker, concurrency 1 per process: one job per fetch and per finish."""
    from bench.peers import procrastinate_worker as pw

    with fresh_pg("pc") as dsn:
        asyncio.run(pw.prepare(dsn, n, 0, 0))
        with psycopg.connect(dsn, autocommit=True) as conn:

            def done() -> bool:
                row = conn.execute(
                    "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
                ).fetchone()
                return row is not None and row[0] == 0

            procs = WorkerProcs("bench.peers.procrastinate_worker", [], WORKERS, env={"BENCH_DSN": dsn})
            return _timed(procs, done, n)


# -- pgqueuer -------------------------------------------------------------------------------------


def pgqueuer_drain(n: int, batch: int) -> DrainResult:
    """pgqueuer's QueueManager in drain mode with ``batch_size=batch`` (dequeue and acknowledgement)."""
    from bench.peers import pgqueuer_worker as qw

    with fresh_pg("pq") as dsn:
        asyncio.run(qw.prepare(dsn, n))
        with psycopg.connect(dsn, autocommit=True) as conn:

            def done() -> bool:
                row = conn.execute("SELECT count(*) FROM pgqueuer").fetchone()
                return row is not None and row[0] == 0

            procs = WorkerProcs("bench.peers.pgqueuer_worker", ["--dsn", dsn, "--batch", str(batch)], WORKERS)
            return _timed(procs, done, n)


# -- Celery ---------------------------------------------------------------------------------------


def celery_drain(n: int, prefetch: int) -> DrainResult:
    """4 Celery worker processes (``--pool solo``), late acknowledgement, prefetch ``prefetch``."""
    import redis

    os.environ["BENCH_PREFETCH"] = str(prefetch)
    from bench.peers.celery_app import QUEUE, noop

    r = redis.Redis.from_url(REDIS_URL)
    r.flushdb()
    with noop.app.producer_or_acquire() as producer:
        for _ in range(n):
            noop.apply_async(producer=producer)
    env = {**os.environ, "BENCH_REDIS_URL": REDIS_URL, "BENCH_PREFETCH": str(prefetch)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bench.peers.celery_app",
                "worker",
                "--pool",
                "solo",
                "-Q",
                QUEUE,
                "-n",
                f"bench{i}@%h",
                "--loglevel",
                "WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(WORKERS)
    ]
    cpu = CpuMeter()
    own = ProcessCpu([p.pid for p in procs])
    try:
        poll_until(lambda: bool(r.keys("bench:start:*")), 120, 0.005)
        cpu.start()
        own.start()

        def done() -> bool:
            return int(r.llen(QUEUE)) == 0 and int(r.hlen("unacked")) == 0

        ended = poll_until(done, 600)
        busy = cpu.stop()
        workers = own.stop()
        started = min(float(r.get(k) or 0) for k in r.keys("bench:start:*"))
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        r.flushdb()
    return DrainResult(n, ended - started, busy, workers)


def pgbench(seconds: int, clients: int = 4) -> tuple[float, float]:
    """The same server's pgbench simple-update TPS with ``clients`` clients, and CPU use meanwhile."""
    with fresh_pg("pgb") as dsn:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
        base = ["-h", str(info.get("host", "127.0.0.1")), "-p", str(info.get("port", "5432"))]
        base += ["-U", str(info.get("user", "postgres"))]
        subprocess.run(
            ["pgbench", *base, "-i", "-q", "-s", "4", str(info["dbname"])], check=True, capture_output=True
        )
        cpu = CpuMeter()
        cpu.start()
        out = subprocess.run(
            [
                "pgbench",
                *base,
                "-N",
                "-n",
                "-c",
                str(clients),
                "-j",
                "2",
                "-T",
                str(seconds),
                str(info["dbname"]),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        busy = cpu.stop()
    for line in out.splitlines():
        if line.startswith("tps ="):
            return float(line.split()[2]), busy
    raise RuntimeError(f"pgbench said: {out[-500:]}")


def _now() -> float:
    return time.time()
