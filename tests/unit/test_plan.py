from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helixcode.domain.enums import Criticality, Priority, TaskType
from helixcode.domain.plan import AgentRun, BuiltinRun, ShellRun, load_plan, parse_plan
from helixcode.errors import CycleError, PlanError

EXAMPLE = Path(__file__).parents[2] / "examples" / "demo.yaml"


def plan(*tasks: dict[str, Any]) -> dict[str, Any]:
    return {"name": "p", "tasks": list(tasks)}


def task(key: str, **kw: Any) -> dict[str, Any]:
    return {"id": key, "type": "building", "title": key.upper(), **kw}


def test_the_shipped_example_is_valid() -> None:
    spec = load_plan(EXAMPLE)
    assert spec.name == "demo"
    assert len(spec.tasks) == 7
    by_id = {t.id: t for t in spec.tasks}
    assert by_id["plan"].criticality is Criticality.CRITICAL
    assert by_id["deploy"].depends_on == ["test", "diagram"]


def test_defaults_and_run_kinds() -> None:
    spec = parse_plan(
        plan(
            task("a", run={"shell": "make"}),
            task("b", run={"builtin": "sleep", "seconds": 2}),
            task("c", requires=["gpu", "python", "gpu"]),
        )
    )
    a, b, c = spec.tasks
    assert a.priority is Priority.NORMAL
    assert a.type is TaskType.BUILDING
    assert isinstance(a.run, ShellRun)
    assert isinstance(b.run, BuiltinRun)
    assert b.run.seconds == 2
    assert isinstance(c.run, AgentRun)
    assert c.requires == ["gpu", "python"]


def test_json_files_are_read_as_json(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(plan(task("a"))))
    assert load_plan(path).tasks[0].id == "a"


@pytest.mark.parametrize(
    ("data", "fault"),
    [
        (plan(task("a", priority="urgent")), "task 'a' (tasks[0]): priority: Input should be"),
        (plan(task("a", colour="red")), "task 'a' (tasks[0]): unknown field 'colour'"),
        (plan(task("a", type="cooking")), "task 'a' (tasks[0]): type: Input should be"),
        (plan(task("a"), task("a")), "task 'a': id used 2 times"),
        (plan(task("a", depends_on=["ghost"])), "task 'a': depends on unknown task 'ghost'"),
        (plan(task("a", max_attempts=0)), "task 'a' (tasks[0]): max_attempts"),
        (plan(task("bad id!")), "tasks[0]): id: String should match pattern"),
        ({"name": "p", "tasks": []}, "plan: tasks: List should have at least 1 item"),
        ({"name": "p", "tasks": [], "owner": "me"}, "plan: unknown field 'owner'"),
        ([1, 2], "the document must be a mapping"),
    ],
)
def test_faults_name_the_task_and_the_field(data: Any, fault: str) -> None:
    with pytest.raises(PlanError) as info:
        parse_plan(data)
    assert any(fault in f for f in info.value.faults), info.value.faults


def test_a_cycle_is_refused_with_its_path() -> None:
    with pytest.raises(CycleError, match="b -> c -> b"):
        parse_plan(plan(task("a"), task("b", depends_on=["c"]), task("c", depends_on=["b", "a"])))


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="cannot read"):
        load_plan(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("tasks: [unclosed")
    with pytest.raises(PlanError, match="not valid YAML"):
        load_plan(broken)


def test_a_fault_repeated_across_many_tasks_is_named_ten_times_and_counted() -> None:
    with pytest.raises(PlanError) as info:
        parse_plan({"tasks": [{"id": f"t{i}", "title": "t"} for i in range(1_000)]})
    assert len(info.value.faults) == 1_000  # every fault is kept (the API returns them all)
    message = str(info.value)
    assert message.count("type: Field required") == 10
    assert message.endswith("; and 990 more")
    assert message.startswith("task 't0' (tasks[0]): type: Field required")
