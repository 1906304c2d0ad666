"""A worker's resource use over time (`helix workers --history WORKER`): one row per measure, with a
sparkline drawn in Unicode block characters.

The heartbeat samples are put in time buckets, so a stretch without heartbeats (the worker stalled,
the database was away) shows as a gap rather than being squeezed out:

    sparkline([(0, 10.0), (5, 50.0), (10, 90.0)], lo=0, hi=100)   # '▂▅▇'
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rich import box
from rich.table import Table

from helixcode.domain.records import WorkerInfo

__all__ = ["MEASURES", "history_json", "history_table", "series", "sparkline"]

BLOCKS = "▁▂▃▄▅▆▇█"
WIDTH = 40

Samples = Sequence[tuple[float, Mapping[str, Any]]]


def _gpu_utilization(res: Mapping[str, Any]) -> float | None:
    values = [g["utilization"] for g in res.get("gpus") or () if g.get("utilization") is not None]
    return sum(values) / len(values) if values else None


def _key(name: str) -> Callable[[Mapping[str, Any]], float | None]:
    def read(res: Mapping[str, Any]) -> float | None:
        value = res.get(name)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    return read


#: (label, unit, read a sample, fixed scale or None to scale to the data)
MEASURES: list[tuple[str, str, Callable[[Mapping[str, Any]], float | None], tuple[float, float] | None]] = [
    ("cpu", "%", _key("cpu_percent"), (0.0, 100.0)),
    ("memory", "%", _key("memory_percent"), (0.0, 100.0)),
    ("worker cpu", "%", _key("process_cpu_percent"), None),  # one process may use several cores
    ("worker rss", " MB", _key("process_rss_mb"), None),
    ("load 1m", "", _key("load_1m"), None),
    ("gpu", "%", _gpu_utilization, (0.0, 100.0)),
]


def series(samples: Samples, read: Callable[[Mapping[str, Any]], float | None]) -> list[tuple[float, float]]:
    """(time, value) for the samples that carry the measure."""
    return [(at, v) for at, res in samples if (v := read(res)) is not None]


def sparkline(
    points: Sequence[tuple[float, float]],
    width: int = WIDTH,
    *,
    lo: float | None = None,
    hi: float | None = None,
    span: tuple[float, float] | None = None,
) -> str:
    """Points over time as at most ``width`` block characters, each the mean of its time bucket; an
    empty bucket is a space. The scale is ``lo``..``hi`` (clamped), or the data's own range; ``span``
    (first, last time) lines several sparklines up on one time axis."""
    if not points:
        return ""
    start, end = span or (points[0][0], points[-1][0])
    cells = max(1, width if span else min(width, len(points)))
    buckets: list[list[float]] = [[] for _ in range(cells)]
    for at, value in points:
        index = 0 if end <= start else int((at - start) / (end - start) * cells)
        buckets[min(cells - 1, max(0, index))].append(value)
    values = [v for _, v in points]
    low = min(values) if lo is None else lo
    high = max(values) if hi is None else hi
    out = []
    for bucket in buckets:
        if not bucket:
            out.append(" ")
            continue
        mean = sum(bucket) / len(bucket)
        level = 0.0 if high <= low else (min(high, max(low, mean)) - low) / (high - low)
        out.append(BLOCKS[round(level * (len(BLOCKS) - 1))])
    return "".join(out)


def _fmt(value: float, unit: str) -> str:
    return f"{value:.0f}{unit}" if unit == "%" else f"{value:.1f}{unit}" if unit else f"{value:.2f}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def history_table(worker: WorkerInfo, samples: Samples, width: int = WIDTH) -> Table:
    """Per measure: the last, lowest, mean and highest value, and the sparkline over the whole time."""
    title = f"Worker {worker.id} ({worker.name}, {worker.status})"
    if samples:
        first, last = samples[0][0], samples[-1][0]
        caption = (
            f"{len(samples)} samples over {_duration(last - first)}, oldest to newest; "
            f"latest {_duration(max(0.0, time.time() - last))} ago"
        )
    else:
        caption = "no samples (kept for workers.heartbeat_retention seconds)"
    table = Table(title=title, caption=caption, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("measure", "last", "min", "mean", "max"):
        table.add_column(col, justify="left" if col == "measure" else "right", no_wrap=True)
    table.add_column("over time", no_wrap=True)
    span = (samples[0][0], samples[-1][0]) if samples else None
    cells = min(width, len(samples))  # one cell per sample until there are more samples than cells
    for label, unit, read, scale in MEASURES:
        points = series(samples, read)
        if not points:
            continue
        values = [v for _, v in points]
        lo, hi = scale or (None, None)
        table.add_row(
            label,
            _fmt(values[-1], unit),
            _fmt(min(values), unit),
            _fmt(sum(values) / len(values), unit),
            _fmt(max(values), unit),
            sparkline(points, cells, lo=lo, hi=hi, span=span),
        )
    return table


def history_json(worker: WorkerInfo, samples: Samples) -> dict[str, Any]:
    return {
        "worker": worker.to_dict(),
        "samples": [{"at": at, "resources": dict(res)} for at, res in samples],
    }
