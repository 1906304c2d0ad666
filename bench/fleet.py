"""Measure 9, a thousand workers on one PostgreSQL: what an idle fleet costs the database, claim latency
while it drains 20,000 tasks, and how many workers one NOTIFY wakes.

The workers are real ``Worker`` runtimes (real registration, heartbeats, reaper standbys, claims,
LISTEN wake-ups), many per process as a big host would run them: ``PROCESSES`` child processes each
run their share on one ``Store`` (``database.pool_size`` connections), one LISTEN connection (the
process's ``WakeHub``) and one heartbeat (the process's ``BeatHub``: one round trip renews the leases
of all its workers). Database CPU is read from ``/proc`` for every ``postgres`` process of the
server (background processes included), so it is an upper bound on what the fleet costs.

Two drains: of no-op tasks, where every worker claims again the moment it finishes (the database is
saturated, so by Little's law a claim waits about workers / throughput: this measures the ceiling, not
latency), and of tasks that take ``WORK_SECONDS`` on average (``bench.fleet:work``, the ``python`` run
kind), a fleet of real tasks: claims then arrive at workers / seconds per second and their latency is
the database's and the pool's, which the 50 ms target is about. Its first wave (every worker claims
the moment the job appears: a burst) is reported apart from the steady state that follows. A claim is
any round trip that gets a worker a task: ``claim`` by an idle worker, and ``complete_and_claim`` by
one that just finished.

Children are driven through files in a shared folder: each writes its counters (workers woken,
notifications seen, claim latencies) to ``<pid>.json`` every half second and stops when ``stop``
appears.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import psycopg

from bench.common import ROOT, Mode, fresh_pg, helix_url, percentile
from bench.report import Report, Row

__all__ = ["run"]

SECTION = "9. A thousand workers on one PostgreSQL"
PROCESSES = 4
#: How long each task of the second drain takes on average: claims then arrive at workers /
#: WORK_SECONDS a second. Each task takes between half and one and a half times this (seeded), as real
#: tasks vary: identical durations would keep the fleet in lockstep, a thousand claims at once every
#: WORK_SECONDS, which measures a burst, not a fleet.
WORK_SECONDS = 5.0
#: A claim: when it began (seconds, from the wall clock or from its drain's start) and how long it took (ms).
Claimed = tuple[float, float]


async def work(seconds: float) -> dict[str, float]:
    """The second drain's task: a pause, as a task that waits on something else (a model) would."""
    await asyncio.sleep(seconds)
    return {"worked": seconds}


def _postgres_cpu_seconds() -> float:
    """User + system CPU seconds of every ``postgres`` process now running."""
    total = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("postgres", "postmaster"):
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
    return total


def _counters(folder: Path) -> dict[str, Any]:
    """The children's latest counters, summed (latencies concatenated)."""
    out: dict[str, Any] = {
        "woken": 0,
        "notes": 0,
        "beats": 0,
        "workers": 0,
        "claims": [],
        "max_lag_ms": 0.0,
    }
    for path in folder.glob("*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        out["woken"] += data["woken"]
        out["notes"] += data["notes"]
        out["beats"] += data["beats"]
        out["workers"] += data["workers"]
        out["claims"].extend(data["claims"])
        out["max_lag_ms"] = max(out["max_lag_ms"], data.get("max_lag_ms", 0.0))
    return out


def _wait(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    end = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _job_done(dsn: str, job: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT status FROM jobs WHERE id = %s", (job,)).fetchone()
    return row is not None and row[0] == "succeeded"


def _submit(url: str, tasks: int, seconds: float = 0.0) -> str:
    """A job of ``tasks`` independent tasks: no-ops, or ``work`` calls of ``seconds`` on average."""
    from bench.drains import noop_plan
    from bench.peers.helix_worker import settings_for
    from helixcode.domain.plan import parse_plan
    from helixcode.store.store import Store

    plan = noop_plan(tasks)
    if seconds:
        durations = random.Random(9)
        for task in plan["tasks"]:  # type: ignore[attr-defined]
            took = round(seconds * durations.uniform(0.5, 1.5), 3)
            task["run"] = {"python": "bench.fleet:work", "args": {"seconds": took}}

    async def go() -> str:
        store = await Store.open(settings_for(url))
        try:
            return (await store.create_job(parse_plan(plan))).id
        finally:
            await store.aclose()

    return asyncio.run(go())


def _drain(url: str, dsn: str, folder: Path, tasks: int, seconds: float) -> tuple[list[Claimed], float]:
    """Submit a job and wait for it: the claims made meanwhile (when each began, its latency), and the
    drain's wall time."""
    began = time.time()
    started = time.monotonic()
    job = _submit(url, tasks, seconds)
    _wait(lambda: _job_done(dsn, job), 1800, "the drain")
    elapsed = time.monotonic() - started
    ended = time.time()
    time.sleep(1.0)
    return [(at - began, ms) for at, ms in _counters(folder)["claims"] if began <= at <= ended], elapsed


def run(mode: Mode, report: Report, log: Callable[[str], None]) -> None:
    workers = 100 if mode.quick else 1000
    drain = 2000 if mode.quick else 20_000
    idle_window = 5.0 if mode.quick else 20.0
    with fresh_pg("fleet") as dsn, tempfile.TemporaryDirectory() as tmp:
        url = helix_url(dsn)
        _submit(url, 1)  # migrates the schema; the one task is the first wake-up's
        folder = Path(tmp)
        per = workers // PROCESSES
        children = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.fleet", url, str(per), str(folder)],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=(Path(os.environ.get("FLEET_LOGS", str(folder))) / f"child-{i}.log").open("w"),
            )
            for i in range(PROCESSES)
        ]
        try:
            _wait(lambda: _counters(folder)["workers"] >= per * PROCESSES, 300, "the workers to start")
            time.sleep(15 if not mode.quick else 5)  # past the first claims, elections and heartbeats
            cpu0, t0, beats0 = _postgres_cpu_seconds(), time.monotonic(), _counters(folder)["beats"]
            time.sleep(idle_window)
            idle_cpu = (_postgres_cpu_seconds() - cpu0) / (time.monotonic() - t0) * 100
            idle_beats = (_counters(folder)["beats"] - beats0) / (time.monotonic() - t0)
            before = _counters(folder)
            job = _submit(url, 1)
            _wait(lambda: _job_done(dsn, job), 60, "the single task")
            time.sleep(1.0)
            after = _counters(folder)
            woken_by_one = after["woken"] - before["woken"]
            noops, drain_s = _drain(url, dsn, folder, drain, 0.0)
            log(f"longest event-loop stall in a worker process: {_counters(folder)['max_lag_ms']:.0f} ms")
            working, work_s = _drain(url, dsn, folder, drain, WORK_SECONDS)
        finally:
            (folder / "stop").touch()
            for child in children:
                try:
                    child.wait(120)
                except subprocess.TimeoutExpired:
                    child.kill()
    latencies = [ms for _at, ms in noops]
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    rate = drain / drain_s
    little = workers / rate * 1000  # ms a claim waits when every worker claims at once
    # The first wave: every idle worker claims the moment the job appears, a thousand claims at once
    # that queue behind each other (a burst, served at the saturated rate above). Before WORK_SECONDS / 2
    # no task of the drain can have finished; after it, each claim follows a completion: the steady state.
    wave = WORK_SECONDS / 2
    steady = [ms for at, ms in working if at >= wave]
    first = [ms for at, ms in working if at < wave]
    w50, w99 = percentile(steady, 50), percentile(steady, 99)
    every99 = percentile([ms for _at, ms in working], 99)
    buckets = sorted({int(at // 10) for at, _ms in working})
    log(
        "p99 by 10 s of the working drain: "
        + ", ".join(
            f"{b * 10}s {percentile([ms for at, ms in working if int(at // 10) == b], 99):.0f}"
            for b in buckets
        )
    )
    log(
        f"{workers} workers in {PROCESSES} processes: idle database CPU {idle_cpu:.1f}% of a core "
        f"({idle_beats:.1f} heartbeat round trips a second); "
        f"one task woke {woken_by_one}; no-op drain of {drain:,} in {drain_s:.1f}s ({rate:.0f}/s), "
        f"{len(latencies):,} claims, p50 {p50:.1f} ms, p99 {p99:.1f} ms (saturated: about "
        f"{little:.0f} ms by Little's law); tasks of {WORK_SECONDS:g} s on average: "
        f"{drain:,} in {work_s:.1f}s; first wave {len(first):,} claims, p99 "
        f"{percentile(first, 99):.0f} ms; then {len(steady):,} claims, p50 {w50:.1f} ms, p99 {w99:.1f} ms"
    )
    report.add(
        Row(
            SECTION,
            f"database CPU with {workers:,} idle workers",
            "% of a core",
            idle_cpu,
            "",
            "n/a: measured against the target",
            higher_is_better=False,
            target="<= 10%",
            met=idle_cpu <= 10.0,
            note=f"({idle_beats:.1f} heartbeat round trips a second: one per process and beat)",
        )
    )
    report.add(
        Row(
            SECTION,
            f"claim latency, {drain:,} tasks of {WORK_SECONDS / 2:g}-{WORK_SECONDS * 1.5:g} s, after the "
            "first wave (p99; p50 in the note)",
            "ms",
            w99,
            "",
            "n/a",
            higher_is_better=False,
            target="<= 50 ms",
            met=w99 <= 50.0,
            note=f"(p50 {w50:.1f} ms over {len(steady):,} claims; {drain / work_s:.0f} tasks/s; with the "
            f"first wave, {len(first):,} claims at once as the job appears: p99 {every99:.0f} ms)",
        )
    )
    report.add(
        Row(
            SECTION,
            f"claim latency, {drain:,} no-op tasks: the database saturated (p99)",
            "ms",
            p99,
            "",
            "n/a",
            higher_is_better=False,
            note=f"(p50 {p50:.1f} ms over {len(latencies):,} claims at {rate:.0f} tasks/s: a claim "
            f"waits about workers / throughput = {little:.0f} ms, whatever the code)",
        )
    )
    report.add(
        Row(
            SECTION,
            f"workers one NOTIFY wakes (one task made ready, {workers:,} idle)",
            "workers",
            woken_by_one,
            "",
            "n/a",
            higher_is_better=False,
            target=f"<= {PROCESSES} (one per process)",
            met=woken_by_one <= PROCESSES,
        )
    )


# -- child: many workers in one process ----------------------------------------------------------------


async def _child(url: str, count: int, folder: Path) -> None:
    from helixcode.config import DatabaseSettings, Settings, TasksSettings, WorkersSettings
    from helixcode.store.store import Store
    from helixcode.worker.runtime import Worker, WorkerOptions

    settings = Settings(
        database=DatabaseSettings(url=url, pool_size=8),
        tasks=TasksSettings(),
        workers=WorkersSettings(),
    )
    store = await Store.open(settings, upgrade=False)
    claims: list[Claimed] = []
    claim = store.claim

    async def timed_claim(*args: Any, **kwargs: Any) -> Any:
        at, started = time.time(), time.perf_counter()
        got = await claim(*args, **kwargs)
        if got:  # a round trip that got the worker a task (an idle worker's empty poll is not a claim)
            claims.append((at, (time.perf_counter() - started) * 1000))
        return got

    complete_and_claim = store.complete_and_claim

    async def timed_complete_and_claim(*args: Any, **kwargs: Any) -> Any:
        at, started = time.time(), time.perf_counter()
        got = await complete_and_claim(*args, **kwargs)
        if got:  # a round trip that got the worker a task (an idle worker's empty poll is not a claim)
            claims.append((at, (time.perf_counter() - started) * 1000))
        return got

    store.claim = timed_claim  # type: ignore[method-assign]
    store.complete_and_claim = timed_complete_and_claim  # type: ignore[method-assign]
    lags: list[float] = []

    async def loop_lag() -> None:  # the event loop's own delay: claims waiting on a busy loop, not SQL
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append((time.perf_counter() - started - 0.01) * 1000)

    lagging = asyncio.create_task(loop_lag())
    options = WorkerOptions(concurrency=1, detect=False, sample_gpu=False)
    fleet = [Worker(store, settings, options) for _ in range(count)]
    running = [asyncio.create_task(w.run()) for w in fleet]
    out = folder / f"{os.getpid()}.json"
    try:
        while not (folder / "stop").exists():
            hub = next((w._hub for w in fleet if w._hub is not None), None)
            beats = next((w._beats for w in fleet if w._beats is not None), None)
            out.write_text(
                json.dumps(
                    {
                        "workers": sum(1 for w in fleet if w._hub is not None),
                        "woken": hub.woken if hub else 0,
                        "notes": hub.notes if hub else 0,
                        "beats": beats.rounds if beats else 0,
                        "claims": claims,
                        "max_lag_ms": max(lags, default=0.0),
                    }
                )
            )
            await asyncio.sleep(0.5)
    finally:
        for w in fleet:
            w.stop()
        await asyncio.gather(*running, return_exceptions=True)
        lagging.cancel()
        await store.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("count", type=int)
    parser.add_argument("folder", type=Path)
    a = parser.parse_args()
    asyncio.run(_child(a.url, a.count, a.folder))
