"""Measure 8, what traces cost a task (``helixcode.tracing``).

Three figures. Off (the default), the calls an attempt makes into ``helixcode.tracing`` on the worker's
hot path (the claim's timing check, the attempt's span, its outcome), per task, beside a no-op span of
OpenTelemetry's own API (what instrumenting through ``trace.get_tracer`` without an SDK would cost). On,
the same calls with the SDK recording (the ``task.claim`` and ``task.attempt`` spans, exported to a
sink that drops them), per task. And a drain of no-op tasks by one in-process worker on SQLite with
tracing off and on, interleaved, in tasks per second.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import Mode, spread
from bench.report import Report, Row

__all__ = ["run"]

SECTION = "8. Traces (OpenTelemetry)"
LOOPS = 100_000


def _claim() -> Any:
    from helixcode.domain.enums import Criticality, Priority, TaskStatus, TaskType
    from helixcode.domain.models import Claim, Task

    task = Task(
        1, "j", "a", TaskType.BUILDING, "t", "", Priority.NORMAL, Criticality.NORMAL, TaskStatus.RUNNING,
        (), (), {"builtin": "noop"}, 3, 1, 0, 0, None, 0.0, None, None, 1.0, 0.0, 1.0, 1.5, None, None,
        "w", None, None,
    )  # fmt: skip
    return Claim(task, "token", 1, None, None, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")


def _per_task(loops: int) -> float:
    """Seconds per task of the tracing calls ``Worker`` makes for one attempt (see worker.runtime)."""
    from helixcode import tracing
    from helixcode.worker.runtime import _span_times

    claim = _claim()
    started = time.perf_counter()
    for _ in range(loops):
        began = time.time_ns() if tracing.active() else 0
        with tracing.attempt_span(claim, "w", _span_times(began)):
            tracing.outcome("succeeded", None)
    return (time.perf_counter() - started) / loops


def _noop_api_span(loops: int) -> float:
    """Seconds per enter/exit of a span from OpenTelemetry's API with no SDK behind it."""
    from opentelemetry import trace

    tracer = trace.NoOpTracerProvider().get_tracer("bench")
    started = time.perf_counter()
    for _ in range(loops):
        with tracer.start_as_current_span("task.attempt"):
            pass
    return (time.perf_counter() - started) / loops


def _empty(loops: int) -> float:
    started = time.perf_counter()
    for _ in range(loops):
        pass
    return (time.perf_counter() - started) / loops


class _Drop:
    """A span exporter that takes every span and keeps none."""

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _on(enabled: bool) -> None:
    from helixcode import tracing
    from helixcode.config import TracingSettings

    tracing.configure(TracingSettings(enabled=enabled), exporter=_Drop() if enabled else None)


async def _drain(folder: Path, tasks: int) -> float:
    """Tasks per second: ``tasks`` no-op tasks submitted, then drained by one worker (concurrency 4)."""
    from helixcode.config import DatabaseSettings, Settings, WorkersSettings
    from helixcode.domain.plan import parse_plan
    from helixcode.engine.manager import TaskManager
    from helixcode.store.store import Store
    from helixcode.worker.runtime import Worker, WorkerOptions

    url = f"sqlite+aiosqlite:///{folder / f'{time.monotonic_ns()}.db'}"
    settings = Settings(database=DatabaseSettings(url=url), workers=WorkersSettings(poll_interval=0.05))
    store = await Store.open(settings)
    try:
        plan = {
            "name": "drain",
            "tasks": [
                {"id": f"t{i}", "type": "building", "title": "t", "run": {"builtin": "noop"}}
                for i in range(tasks)
            ],
        }
        await TaskManager(store).submit(parse_plan(plan), workdir=None)
        options = WorkerOptions(
            concurrency=4, exit_when_idle=True, detect=False, sample_gpu=False, reaper=False
        )
        started = time.perf_counter()
        stats = await Worker(store, settings, options).run()
        elapsed = time.perf_counter() - started
    finally:
        await store.aclose()
    assert stats.succeeded == tasks, stats
    return tasks / elapsed


def run(mode: Mode, report: Report, log: Callable[[str], None]) -> None:
    try:
        import opentelemetry.sdk  # noqa: F401
    except ImportError:
        report.add(Row(SECTION, "per task", "µs", None, note="not run: pip install 'helixcode[otel]'"))
        return
    from helixcode import tracing

    loops = LOOPS // 10 if mode.quick else LOOPS
    empty = min(_empty(loops) for _ in range(3))
    _on(False)
    off = min(_per_task(loops) for _ in range(3)) - empty
    api = min(_noop_api_span(loops) for _ in range(3)) - empty
    report.add(
        Row(
            SECTION,
            "per task, tracing off: the worker's tracing calls",
            "µs",
            off * 1e6,
            "a no-op span of OpenTelemetry's API",
            api * 1e6,
            higher_is_better=False,
            target="<= 1 µs",
            met=off * 1e6 <= 1.0,
        )
    )
    _on(True)
    try:
        on = min(_per_task(loops // 10) for _ in range(3)) - empty
    finally:
        _on(False)
    report.add(Row(SECTION, "per task, tracing on: task.claim + task.attempt spans", "µs", on * 1e6,
                   higher_is_better=False, note="(SDK, spans dropped by the exporter)"))  # fmt: skip
    tasks = min(mode.drain_tasks, 2000)
    rates: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="helix-bench-tracing-") as tmp:
        for _ in range(mode.reps):
            for enabled in (False, True):
                _on(enabled)
                try:
                    rates[enabled].append(asyncio.run(_drain(Path(tmp), tasks)))
                finally:
                    tracing.shutdown()
                state = "on" if enabled else "off"
                log(f"drain of {tasks} no-op tasks, tracing {state}: {rates[enabled][-1]:.0f}/s")
    report.add(
        Row(
            SECTION,
            f"drain of {tasks} no-op tasks (SQLite, 1 worker), tracing on",
            "tasks/s",
            spread(rates[True]),
            "the same, tracing off",
            spread(rates[False]),
        )
    )
