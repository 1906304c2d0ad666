"""The live view and the summary fit the console: every row one line, nothing past the edge at 80."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console, RenderableType

from helixcode.cli.live import final_table, job_view, suite_report, tree
from helixcode.domain.enums import Criticality, JobStatus, Priority, TaskStatus, TaskType
from helixcode.domain.models import Event, Job, JobSummary, Task

LONG = "tests still failing after 2 debugging rounds (1 failed, 2 passed): /opt/venv/bin/python -m pytest -q"


def task(id_: int, key: str, type_: TaskType, status: TaskStatus, **kw: Any) -> Task:
    parent = key.rsplit(".", 1)[0] if "." in key else None
    fields: dict[str, Any] = {
        "id": id_, "job_id": "a1b2c3d4e5f6", "key": key, "type": type_, "title": key, "description": "",
        "priority": Priority.NORMAL, "criticality": Criticality.NORMAL, "status": status, "requires": (),
        "depends_on": (), "run": {"tests": {"round": 1}} if type_ is TaskType.TESTING else {"agent": {}},
        "max_attempts": 3, "attempts": 1, "failures": 0, "lease_losses": 0, "timeout": None,
        "progress": 0.5, "progress_message": None, "parent_key": parent, "weight": 1.0,
        "created_at": 0.0, "ready_at": 0.0, "started_at": 100.0, "finished_at": 160.0,
        "next_attempt_at": None, "lease_owner": None, "lease_expires_at": None, "last_error": None,
    }  # fmt: skip
    fields.update(kw)
    return Task(**fields)


TASKS = [
    task(1, "test", TaskType.TESTING, TaskStatus.WAITING),
    task(2, "test.fix1", TaskType.DEBUGGING, TaskStatus.SUCCEEDED),
    task(3, "test.test2", TaskType.TESTING, TaskStatus.WAITING, depends_on=("test.fix1",)),
    task(
        4,
        "test.test2.fix2",
        TaskType.DEBUGGING,
        TaskStatus.RUNNING,
        progress_message="round 3/8, 2 tool calls",
    ),
    task(
        5, "test.test2.test3", TaskType.TESTING, TaskStatus.UPSTREAM_FAILED, depends_on=("test.test2.fix2",)
    ),
]
OUTPUTS = {"test.fix1": {"tokens": 123456, "rounds": 8, "commit": "0123456789abcdef", "summary": LONG}}
SUMMARY = JobSummary(
    Job("a1b2c3d4e5f6", "test my-project", "", JobStatus.RUNNING, "/repo", 0.0, 0.0),
    {TaskStatus.RUNNING: 1},
    0.42,
)
EVENTS = [Event(9, "a1b2c3d4e5f6", "test.test2.fix2", "progress", 1.0, 1, "host-1234-abcdef", {"m": LONG})]


def render(thing: RenderableType, width: int) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None, legacy_windows=False).print(thing)
    return out.getvalue().rstrip("\n").splitlines()


@pytest.mark.parametrize("width", [80, 100])
def test_live_view_is_compact_and_one_line_per_task_when_narrow(width: int) -> None:
    view = job_view(SUMMARY, TASKS, OUTPUTS, EVENTS, 12.0, 2, width)
    lines = render(view, width)
    assert max(len(line) for line in lines) <= width
    rows = [line for line in lines if line.lstrip().startswith(("test", "fix"))]
    assert [r.split()[0] for r in rows] == ["test", "fix1", "test2", "fix2", "test3"]  # one line each
    indent = [len(r) - len(r.lstrip()) for r in rows]
    assert [i - indent[0] for i in indent] == [0, 2, 2, 4, 4]  # the last key part, indented under its parent
    for row, status in zip(
        rows, ["waiting", "succeeded", "waiting", "running", "upstream_failed"], strict=True
    ):
        assert status in row.split()  # statuses are never cut
    assert "100%" in rows[1]
    assert "round 3/8" in rows[3]
    header = next(line for line in lines if line.lstrip().startswith("task"))
    assert header.split() == ["task", "status", "tries", "progress", "time", "now"]  # type, tokens go
    assert lines[0].startswith("job a1b2c3d4e5f6 running")


def test_live_view_shows_every_column_when_wide() -> None:
    lines = render(job_view(SUMMARY, TASKS, OUTPUTS, EVENTS, 12.0, 2, 160), 160)
    assert max(len(line) for line in lines) <= 160
    header = next(line for line in lines if line.lstrip().startswith("task"))
    assert header.split() == ["task", "type", "status", "tries", "progress", "tokens", "time", "now"]
    assert any(line.lstrip().startswith("test.test2.fix2") and "debugging" in line for line in lines)
    assert any("123456" in line for line in lines)


@pytest.mark.parametrize("width", [80, 160])
def test_live_summary_fits_and_keeps_outcomes_whole(width: int) -> None:
    lines = render(final_table(TASKS, OUTPUTS, width), width)
    assert max(len(line) for line in lines) <= width
    row = next(line for line in lines if "fix1" in line)
    assert "succeeded" in row.split()
    assert ("0123456" if width < 100 else "0123456789") in row.split()
    header = next(line for line in lines if line.lstrip().startswith("task"))
    assert ("rounds" in header.split()) is (width >= 100)


def test_live_tree_orders_children_under_parents() -> None:
    shuffled = [TASKS[4], TASKS[0], TASKS[3], TASKS[1], TASKS[2]]
    assert [(t.key, d) for t, d in tree(sorted(shuffled, key=lambda t: t.id))] == [
        ("test", 0), ("test.fix1", 1), ("test.test2", 1), ("test.test2.fix2", 2), ("test.test2.test3", 2),
    ]  # fmt: skip
    orphan = task(7, "gone.child", TaskType.BUILDING, TaskStatus.READY)
    assert [t.key for t, _ in tree([orphan])] == ["gone.child"]  # a parent outside the list


def test_live_suite_report_says_how_the_cycle_ended() -> None:
    assert suite_report([t for t in TASKS if t.type is TaskType.DEBUGGING], {}) is None
    failed = [
        *TASKS[:3],
        task(4, "test.test2.fix2", TaskType.DEBUGGING, TaskStatus.FAILED, last_error="no model"),
    ]
    report = suite_report([*failed, TASKS[4]], {})
    assert report is not None
    assert "test.test2.fix2 failed: no model" in report.plain
    done = task(6, "test.test2.test3", TaskType.TESTING, TaskStatus.FAILED, last_error=LONG)
    assert suite_report([*TASKS[:4], done], {}).plain == LONG  # type: ignore[union-attr]
    passed = task(6, "test.test2.test3", TaskType.TESTING, TaskStatus.SUCCEEDED)
    summary = "tests pass in round 3 (3 passed): pytest -q"
    report = suite_report([*TASKS[:4], passed], {"test.test2.test3": {"summary": summary}})
    assert report is not None
    assert report.plain == summary


def test_progress_lines_name_a_status_the_task_passed_between_two_looks() -> None:
    """A task claimed and finished between two looks still gets its `running` line (from the events),
    before the line of the status its snapshot shows; one the snapshot still shows is not repeated."""
    from helixcode.cli.live import passed_through

    done = task(1, "fast", TaskType.BUILDING, TaskStatus.SUCCEEDED)
    running = task(2, "slow", TaskType.BUILDING, TaskStatus.RUNNING)
    events = [
        Event(1, "a1b2c3d4e5f6", "fast", "claimed", 1.0),
        Event(2, "a1b2c3d4e5f6", "slow", "claimed", 1.0),
        Event(3, "a1b2c3d4e5f6", "fast", "succeeded", 2.0),
        Event(4, "a1b2c3d4e5f6", None, "created", 0.0),
    ]
    found = passed_through(events, [done, running], {"fast": "ready", "slow": "ready"})
    assert [(t.key, t.status) for t in found] == [("fast", TaskStatus.RUNNING)]
    assert passed_through(events, [done, running], {"fast": "running"}) == []
