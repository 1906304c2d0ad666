"""Charts as plain data, without I/O: a job's attempts in worker slots (the Gantt view), and the
points of a worker's resource plot.

Slots: a worker runs up to ``concurrency`` tasks at once but does not record which slot ran which;
the slot of an attempt is the first of the worker's lanes that is free when it starts (interval
partitioning), which needs no more lanes than the worker had slots.

    lanes([AttemptSpan("a", 1, "w", 0, 5, "succeeded"), AttemptSpan("b", 1, "w", 1, 2, "failed")], now=9)
    # [{'worker': 'w', 'lanes': [[['a', 1, 0, 5, 'succeeded']], [['b', 1, 1, 2, 'failed']]]}]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from helixcode.domain.views import AttemptSpan

__all__ = ["lanes", "plot_points", "series"]

Bar = list[Any]  # [key, attempt, start, end (None: running), outcome (None: running)]


def lanes(spans: Iterable[AttemptSpan], now: float) -> list[dict[str, Any]]:
    """Per worker (in order of first start), its attempts packed into lanes; running ones end ``now``."""

    def end_of(s: AttemptSpan) -> float:
        return s.finished_at if s.finished_at is not None else now

    def start_of(s: AttemptSpan) -> float:
        return s.started_at if s.started_at is not None else end_of(s)

    by_worker: dict[str, list[AttemptSpan]] = {}
    for span in sorted(spans, key=start_of):
        by_worker.setdefault(span.worker_id or "?", []).append(span)
    out = []
    for worker, found in by_worker.items():
        ends: list[float] = []
        packed: list[list[Bar]] = []
        for s in found:
            start, end = start_of(s), end_of(s)
            slot = next((i for i, e in enumerate(ends) if e <= start), len(ends))
            if slot == len(ends):
                ends.append(end)
                packed.append([])
            ends[slot] = max(end, start)
            packed[slot].append([s.key, s.attempt, start, s.finished_at, s.outcome])
        out.append({"worker": worker, "lanes": packed})
    return out


def series(samples: Sequence[tuple[float, Mapping[str, Any]]]) -> dict[str, list[tuple[float, float]]]:
    """The plotted measures of heartbeat samples: CPU and memory (percent), and each GPU's
    utilisation (``gpu0``...), as (time, value) points; a measure no sample has is left out."""
    out: dict[str, list[tuple[float, float]]] = {}
    for at, res in samples:
        for name, key in (("cpu", "cpu_percent"), ("memory", "memory_percent")):
            if isinstance(value := res.get(key), int | float):
                out.setdefault(name, []).append((at, float(value)))
        for i, gpu in enumerate(res.get("gpus") or []):
            if isinstance(gpu, Mapping) and isinstance(value := gpu.get("utilization"), int | float):
                out.setdefault(f"gpu{i}", []).append((at, float(value)))
    return out


def plot_points(
    points: Sequence[tuple[float, float]], t0: float, t1: float, width: float, height: float, top: float = 100
) -> str:
    """An SVG polyline's ``points`` for values 0..``top`` over the time span t0..t1."""
    span = max(t1 - t0, 1e-9)
    return " ".join(
        f"{(t - t0) / span * width:.1f},{height - min(max(v, 0.0), top) / top * height:.1f}"
        for t, v in points
    )
