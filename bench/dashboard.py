"""Measure 12, the dashboard's graph layout: the time to lay out a 5,000-task job (1,000 tasks in a
two-wide dependency mesh, 40 of them groups of 100 sub-tasks), once with every group closed and once
with every group open, as the dashboard does when a user opens them. Median of 5 after one warm-up.
The layout runs in the API process for each graph request, so it must stay well under a second."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from bench.common import Mode, spread
from bench.report import Report, Row

if TYPE_CHECKING:
    from helixcode.api.dashboard.layout import GraphTask

__all__ = ["five_thousand_tasks", "run"]

SECTION = "12. Dashboard graph layout"
TARGET = 2.0  # seconds, closed and open together
RUNS = 5


def five_thousand_tasks() -> list[GraphTask]:
    """The job the measure lays out (the unit tests check its layout's shape, not its speed)."""
    from helixcode.api.dashboard.layout import GraphTask

    tasks = [GraphTask(f"t{i}", (f"t{i - 50}", f"t{i - 49}") if i >= 50 else (), None) for i in range(1000)]
    tasks += [GraphTask(f"t{g * 25}.{n}", (), f"t{g * 25}") for g in range(40) for n in range(100)]
    return tasks


def run(mode: Mode, report: Report, log: Callable[[str], None]) -> None:
    from helixcode.api.dashboard.layout import layout

    tasks = five_thousand_tasks()
    groups = [f"t{g * 25}" for g in range(40)]
    samples = []
    for i in range(RUNS + 1):
        started = time.perf_counter()
        layout(tasks)
        layout(tasks, open_groups=groups)
        if i:
            samples.append(time.perf_counter() - started)
    figure = spread(samples)
    report.add(
        Row(
            SECTION,
            f"5,000 tasks in 40 groups, closed then open, median of {RUNS}",
            "s",
            figure,
            higher_is_better=False,
            target=f"<= {TARGET:g} s",
            met=figure.median <= TARGET,
        )
    )
    log(f"layout: median {figure.median:.3f} s ({figure.low:.3f}-{figure.high:.3f})")
