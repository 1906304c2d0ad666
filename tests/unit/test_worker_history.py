"""`helix workers --history`: sparklines over time buckets, the worker a reference names, the table."""

from __future__ import annotations

import pytest
from rich.console import Console

from helixcode.cli.history import history_json, history_table, sparkline
from helixcode.domain.records import WorkerInfo
from helixcode.engine.manager import pick_worker
from helixcode.errors import NotFound


def test_levels_on_a_fixed_scale() -> None:
    assert sparkline([(0, 0.0), (1, 100.0)], lo=0, hi=100) == "▁█"
    assert sparkline([(0, 10.0), (5, 50.0), (10, 90.0)], lo=0, hi=100) == "▂▅▇"
    assert sparkline([(0, -5.0), (1, 150.0)], lo=0, hi=100) == "▁█"  # clamped


def test_levels_on_the_datas_own_range() -> None:
    assert sparkline([(0, 1.0), (1, 2.0), (2, 3.0)]) == "▁▅█"
    assert sparkline([(0, 7.0), (1, 7.0), (2, 7.0)]) == "▁▁▁"  # nothing varies
    assert sparkline([(0, 3.0)]) == "▁"
    assert sparkline([]) == ""


def test_buckets_average_and_gaps_stay_visible() -> None:
    rising = [(float(t), float(t)) for t in range(100)]
    line = sparkline(rising, 10, lo=0, hi=99)
    assert len(line) == 10
    assert list(line) == sorted(line)  # means of consecutive buckets rise
    assert line[0] == "▁"
    assert line[-1] == "█"
    # heartbeats at 0, 1, 2, then none until 9 and 10: the silence is blank
    assert sparkline([(0, 50.0), (1, 50.0), (2, 50.0), (9, 50.0), (10, 50.0)], lo=0, hi=100) == "▅▅  ▅"


def test_a_shared_span_lines_measures_up() -> None:
    assert sparkline([(5, 100.0)], 4, lo=0, hi=100, span=(0, 10)) == "  █ "


def worker(id_: str, name: str, started: float = 0.0, status: str = "active") -> WorkerInfo:
    return WorkerInfo(id_, name, "h", 1, "0", (), {}, 2, status=status, started_at=started)


WORKERS = [
    worker("vm-10-aaaaaa", "build", 1.0, "stopped"),
    worker("vm-11-bbbbbb", "build", 2.0),
    worker("vm-12-cccccc", "vm-11"),
]


def test_a_worker_by_id_name_or_unique_prefix() -> None:
    assert pick_worker(WORKERS, "vm-10-aaaaaa").id == "vm-10-aaaaaa"
    assert pick_worker(WORKERS, "build").id == "vm-11-bbbbbb"  # the latest of that name
    assert pick_worker(WORKERS, "vm-11").id == "vm-12-cccccc"  # a name before a prefix
    assert pick_worker(WORKERS, "vm-10").id == "vm-10-aaaaaa"
    with pytest.raises(NotFound, match="ambiguous"):
        pick_worker(WORKERS, "vm-1")
    with pytest.raises(NotFound, match="no worker 'x'"):
        pick_worker(WORKERS, "x")


def render(table: object) -> str:
    console = Console(width=120, record=True)
    console.print(table)
    return console.export_text()


def test_the_table_shows_what_was_sampled() -> None:
    samples = [
        (100.0, {"cpu_percent": 10.0, "memory_percent": 40.0, "process_rss_mb": 90.0}),
        (105.0, {"cpu_percent": 90.0, "memory_percent": 42.0, "process_rss_mb": 95.5, "gpus": []}),
        (110.0, {"cpu_percent": 50.0, "memory_percent": 44.0, "process_rss_mb": 99.0}),
    ]
    text = render(history_table(WORKERS[1], samples))
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.strip()}
    assert "Worker vm-11-bbbbbb (build, active)" in text
    assert "3 samples over 10s" in text
    assert rows["cpu"][1:] == ["50%", "10%", "50%", "90%", "▂▇▅"]
    assert rows["memory"][1:] == ["44%", "40%", "42%", "44%", "▄▄▄"]
    assert "load" not in rows  # not sampled: no row
    assert "gpu" not in rows


def test_gpu_use_is_the_mean_over_gpus() -> None:
    gpus = [{"utilization": 20.0, "memory_used_mib": 1}, {"utilization": 60.0, "memory_used_mib": 1}]
    text = render(history_table(WORKERS[1], [(1.0, {"gpus": gpus}), (2.0, {"gpus": gpus})]))
    assert [line.split()[1] for line in text.splitlines() if line.strip().startswith("gpu")] == ["40%"]


def test_no_samples_and_json() -> None:
    assert "no samples" in render(history_table(WORKERS[0], []))
    data = history_json(WORKERS[0], [(1.5, {"cpu_percent": 3.0})])
    assert data["worker"]["id"] == "vm-10-aaaaaa"
    assert data["samples"] == [{"at": 1.5, "resources": {"cpu_percent": 3.0}}]
