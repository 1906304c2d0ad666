"""Measure 11, the ``helix`` command's start-up (issue #18): wall time of ``helix --help`` and of ``helix
progress`` as a shell task runs it (``HELIX_DATABASE_URL``, ``HELIX_TASK_ID`` and ``HELIX_LEASE_TOKEN``
set, on a small SQLite database, the task leased), each a new ``python -m helixcode`` process; and
``helix progress`` as it runs under a worker, through the task channel (``HELIX_TASK_SOCKET``: the
real channel, served by a thread that writes with the lease as the worker does). Median of 5 after
one warm-up run. The interpreter's own start-up (``python -c pass``) is noted for scale.

To find where the time goes: ``python -X importtime -m helixcode progress 0.5``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from bench.common import Mode, spread
from bench.report import Report, Row

__all__ = ["run"]

SECTION = "11. Start-up of the helix command"
TARGET = 0.3  # seconds, each command
RUNS = 5


async def _leased_task(url: str) -> tuple[int, str]:
    """A one-task job on a new database, its task claimed: the lease `helix progress` reports under."""
    from helixcode.config import DatabaseSettings, Settings
    from helixcode.domain.enums import TaskType
    from helixcode.domain.plan import JobSpec, ShellRun, TaskSpec
    from helixcode.store.store import Store

    task = TaskSpec(id="a", type=TaskType.BUILDING, title="A", run=ShellRun(shell="true"))
    spec = JobSpec(name="startup", tasks=[task])
    store = await Store.open(Settings(database=DatabaseSettings(url=url)))
    try:
        await store.create_job(spec)
        (claim,) = await store.claim("bench-startup")
        return claim.task.id, claim.token
    finally:
        await store.aclose()


@contextlib.contextmanager
def _channel(url: str, task_id: int, token: str, folder: Path) -> Iterator[Path]:
    """The task channel of the leased task, served from a thread as a worker serves it; its path."""
    from types import SimpleNamespace

    from helixcode.agent.task_channel import task_channel
    from helixcode.config import DatabaseSettings, Settings
    from helixcode.store.store import Store

    ready: queue.Queue[Path] = queue.Queue()
    stop = threading.Event()

    async def serve() -> None:
        store = await Store.open(Settings(database=DatabaseSettings(url=url)), upgrade=False)
        ctx = SimpleNamespace(
            token=token,
            report_progress=lambda f, m: store.report_progress(task_id, token, f, m),
            save_checkpoint=lambda n, d: store.save_checkpoint(task_id, token, n, d),
        )
        try:
            async with task_channel(ctx, folder) as path:  # type: ignore[arg-type]
                ready.put(path)
                await asyncio.to_thread(stop.wait)
        finally:
            await store.aclose()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    try:
        yield ready.get(timeout=30)
    finally:
        stop.set()
        thread.join(10)


def _times(args: Sequence[str], env: dict[str, str], cwd: Path) -> list[float]:
    samples = []
    for i in range(RUNS + 1):  # the first run warms the page cache and writes the bytecode
        started = time.perf_counter()
        subprocess.run(args, env=env, cwd=cwd, check=True, capture_output=True, timeout=60)
        if i:
            samples.append(time.perf_counter() - started)
    return samples


def run(mode: Mode, report: Report, log: Callable[[str], None]) -> None:
    with tempfile.TemporaryDirectory(prefix="helix-bench-startup-") as tmp:
        cwd = Path(tmp)
        url = f"sqlite+aiosqlite:///{cwd / 'helix.db'}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("HELIX_")}
        task_id, token = asyncio.run(_leased_task(url))
        env.update(HELIX_DATABASE_URL=url, HELIX_TASK_ID=str(task_id), HELIX_LEASE_TOKEN=token)
        helix = [sys.executable, "-m", "helixcode"]
        python = spread(_times([sys.executable, "-c", "pass"], env, cwd))
        commands = (
            ("helix --help", ["--help"], env),
            ("helix progress 0.5", ["progress", "0.5", "bench"], env),
        )
        figures = [(label, spread(_times([*helix, *args], given, cwd))) for label, args, given in commands]
        with _channel(url, task_id, token, cwd) as socket_path:
            # No database URL: a command that fell back to the database would fail, not time it.
            through = {k: v for k, v in env.items() if k != "HELIX_DATABASE_URL"}
            through["HELIX_TASK_SOCKET"] = str(socket_path)
            progress = spread(_times([*helix, "progress", "0.5", "bench"], through, cwd))
        figures.append(("helix progress 0.5 through the task channel", progress))
        for label, figure in figures:
            report.add(
                Row(
                    SECTION,
                    f"{label}, wall time, median of {RUNS}",
                    "s",
                    figure,
                    target=f"<= {TARGET:g} s",
                    met=figure.median <= TARGET,
                    note=f"(python -c pass: {python.median:.3f} s)",
                )
            )
            log(f"{label}: median {figure.median:.3f} s ({figure.low:.3f}-{figure.high:.3f})")
