"""The bench harness still runs: its report formatting, and the tiniest HelixCode-only measure.

The full bench (``make bench``) needs its own environment with the peers; this only guards the harness
against breaking, in seconds, with what the project's own environment has.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("psutil")

from bench.common import spread
from bench.report import Report, Row


def test_report_orients_ratios_and_writes_json(tmp_path: Path) -> None:
    report = Report("smoke")
    report.add(
        Row("s", "rate", "tasks/s", spread([200, 220, 180]), "peer", 100.0, target=">= 1.5x", met=True)
    )
    report.add(Row("s", "latency", "ms", 10.0, "peer", 20.0, higher_is_better=False))
    report.add(Row("s", "dag", "s", 1.0, "peer", "n/a: no dependencies"))
    assert [r.ratio for r in report.rows] == [2.0, 2.0, None]
    path = report.write(tmp_path)
    data = json.loads(path.read_text())
    assert data["rows"][0]["helixcode"] == {"median": 200.0, "min": 180.0, "max": 220.0, "n": 3}
    assert data["rows"][2]["peer_figure"] == "n/a: no dependencies"
    assert report.table().row_count == 4  # a section header and three rows


@pytest.mark.slow
def test_tiniest_helix_drain_on_sqlite() -> None:
    from bench.drains import helix_drain

    result = helix_drain("sqlite", 20, 10)
    assert result.tasks == 20
    assert result.rate > 0
    assert result.worker_cpu_ms_per_task is None or result.worker_cpu_ms_per_task > 0


@pytest.mark.usefixtures("sandbox")
def test_the_sandbox_measure_reports_added_latency() -> None:
    from bench import sandbox
    from bench.common import Mode

    report = Report("smoke")
    sandbox.run(Mode.for_run(quick=True), report, lambda _msg: None)
    assert [r.metric for r in report.rows] == [
        "`true` through Sandbox.run, p50",
        "`true` through Sandbox.run, p99",
    ]
    assert all(isinstance(r.ours, float) and isinstance(r.theirs, float) for r in report.rows)


def test_the_tracing_measure_times_the_workers_calls_off_and_on() -> None:
    pytest.importorskip("opentelemetry.sdk")
    from bench import tracing as measure

    from helixcode import tracing

    try:
        measure._on(False)
        assert measure._per_task(1000) > 0
        measure._on(True)
        assert tracing.active()
        assert measure._per_task(100) > 0
        assert measure._noop_api_span(1000) > 0
    finally:
        tracing.shutdown()


@pytest.mark.slow
def test_the_startup_measure_times_help_and_progress() -> None:
    from bench import startup
    from bench.common import Mode, Spread

    report = Report("smoke")
    startup.run(Mode.for_run(quick=True), report, lambda _msg: None)
    assert [r.metric.split(",")[0] for r in report.rows] == [
        "helix --help",
        "helix progress 0.5",
        "helix progress 0.5 through the task channel",
    ]
    assert all(isinstance(r.ours, Spread) and r.ours.n == startup.RUNS for r in report.rows)


def test_the_dashboard_measure_times_the_layout_of_five_thousand_tasks() -> None:
    from bench import dashboard
    from bench.common import Mode, Spread

    report = Report("smoke")
    dashboard.run(Mode.for_run(quick=True), report, lambda _msg: None)
    [row] = report.rows
    assert isinstance(row.ours, Spread)
    assert row.ours.n == dashboard.RUNS
    assert row.met is not None
