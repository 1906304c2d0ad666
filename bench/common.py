"""What every measure shares: the run's mode, fresh PostgreSQL databases, statistics, CPU use, processes.

Every figure the bench prints comes from a run made here; nothing is estimated. Databases are created
per measure (and dropped after) so measures never see each other's rows.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql

__all__ = [
    "PG_ADMIN_DSN",
    "REDIS_URL",
    "CpuMeter",
    "Mode",
    "Spread",
    "WorkerProcs",
    "fresh_pg",
    "helix_url",
    "pg_durability",
    "spread",
]

PG_ADMIN_DSN = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mode:
    """Sizes of one run: ``quick`` keeps the whole bench under two minutes, the default under ten."""

    quick: bool
    reps: int
    drain_tasks: int
    handoffs: int
    dag_tasks: int
    dag_seconds: tuple[float, float]
    scale_tasks: int
    llm_reps: int
    pgbench_seconds: int

    @classmethod
    def for_run(cls, quick: bool) -> Mode:
        if quick:
            return cls(True, 1, 300, 40, 100, (0.02, 0.08), 10_000, 3, 3)
        return cls(False, 3, 5000, 300, 1000, (0.05, 0.25), 100_000, 7, 10)


@dataclass(frozen=True)
class Spread:
    """Median of repetitions with their minimum and maximum."""

    median: float
    low: float
    high: float
    n: int
    samples: tuple[float, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.low, "max": self.high, "n": self.n}


def spread(samples: Sequence[float]) -> Spread:
    values = [float(s) for s in samples]
    return Spread(statistics.median(values), min(values), max(values), len(values), tuple(values))


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of raw samples."""
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


# -- PostgreSQL -----------------------------------------------------------------------------------


def _dsn_for(dbname: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(PG_ADMIN_DSN)
    info["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]


def helix_url(dsn: str) -> str:
    """A libpq DSN as the SQLAlchemy URL HelixCode takes."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    user = info.get("user", "postgres")
    host = info.get("host", "127.0.0.1")
    port = info.get("port", "5432")
    return f"postgresql+psycopg://{user}@{host}:{port}/{info['dbname']}"


@contextlib.contextmanager
def fresh_pg(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database (its libpq DSN), dropped afterwards."""
    name = f"bench_{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _dsn_for(name)
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def pg_durability() -> dict[str, str]:
    """The server's durability settings, as every PostgreSQL figure ran under them."""
    names = ("fsync", "synchronous_commit", "full_page_writes", "wal_level", "server_version")
    with psycopg.connect(PG_ADMIN_DSN) as conn:
        return {
            n: str(conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(n))).fetchone()[0]) for n in names
        }  # type: ignore[index]


def pg_count(dsn: str, query: str) -> int:
    with psycopg.connect(dsn) as conn:
        return int(conn.execute(query).fetchone()[0])  # type: ignore[index]


# -- CPU ------------------------------------------------------------------------------------------


class CpuMeter:
    """Machine-wide CPU use between ``start()`` and ``stop()``, as a percentage of all cores."""

    def start(self) -> None:
        self._t0 = psutil.cpu_times()

    def stop(self) -> float:
        t1 = psutil.cpu_times()
        busy = sum(t1) - t1.idle - t1.iowait - (sum(self._t0) - self._t0.idle - self._t0.iowait)
        total = sum(t1) - sum(self._t0)
        return 100.0 * busy / total if total > 0 else 0.0


# -- worker processes -----------------------------------------------------------------------------


class WorkerProcs:
    """N worker processes of ``python -m MODULE ARGS``: each prints ``ready`` once set up, then waits for
    ``go`` on stdin, so that start-up (imports, connecting) is never timed."""

    def __init__(self, module: str, args: Sequence[str], n: int, env: dict[str, str] | None = None) -> None:
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by kill(), always called
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", module, *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.log,
                text=True,
                cwd=ROOT,
                env={**os.environ, **(env or {})},
            )
            for _ in range(n)
        ]

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "ready" or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"worker did not start (said {line!r}, exit {proc.poll()}): {self.errors()}"
                )

    def go(self) -> float:
        started = time.time()
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        return started

    def wait(self, timeout: float = 600.0) -> list[str]:
        """Wait for every process to exit; returns each one's last stdout line."""
        lasts = []
        for proc in self.procs:
            out, _ = proc.communicate(timeout=timeout)
            lasts.append(out.strip().splitlines()[-1] if out.strip() else "")
            if proc.returncode != 0:
                raise RuntimeError(f"worker exited with {proc.returncode}: {self.errors()}")
        return lasts

    def errors(self) -> str:
        if self.log.closed:
            return ""
        self.log.seek(0)
        return self.log.read()[-3000:]

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def kill(self) -> None:
        """Stop whatever still runs and release the pipes and the log (always called, in ``finally``)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None and not pipe.closed:
                    with contextlib.suppress(OSError):
                        pipe.close()
        self.log.close()


def wait_go() -> None:
    """Inside a worker process: say ready, then block until the parent says go."""
    print("ready", flush=True)
    line = sys.stdin.readline()
    if line.strip() != "go":
        raise SystemExit(2)


def poll_until(check: Any, timeout: float, interval: float = 0.02) -> float:
    """Call ``check()`` until it is true; returns the wall-clock time (epoch) it first was."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return time.time()
        if time.monotonic() > deadline:
            raise TimeoutError("timed out waiting for the drain")
        time.sleep(interval)
