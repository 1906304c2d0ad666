"""Run kinds: one registry, strict plans, lenient stored rows, unchanged JSON, split parts' items."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from helixcode.agent.executors import PythonContext
from helixcode.agent.executors.python import _asks_for_context, not_json
from helixcode.agent.executors.registry import EXECUTORS
from helixcode.domain.kinds import RUN_KINDS, default_requires, load_run, run_kind
from helixcode.domain.plan import parse_plan
from helixcode.domain.runs import (
    AgentOptions,
    AgentRun,
    BuiltinRun,
    PythonRun,
    ShellRun,
    TestCycleOptions,
    TestCycleRun,
)
from helixcode.domain.testcycle import TestCycleOutcome, next_round, suite_command
from helixcode.errors import PlanError


def plan(run: Any, **task: Any) -> dict[str, Any]:
    return {"name": "p", "tasks": [{"id": "a", "type": "building", "title": "A", "run": run, **task}]}


def faults(data: dict[str, Any]) -> list[str]:
    with pytest.raises(PlanError) as info:
        parse_plan(data)
    return info.value.faults


# -- the registry -------------------------------------------------------------------------------


def test_every_run_kind_has_an_executor_and_is_keyed_by_its_name() -> None:
    assert set(EXECUTORS) == {k.model for k in RUN_KINDS}
    names = [k.name for k in RUN_KINDS]
    assert len(set(names)) == len(names)
    for kind in RUN_KINDS:
        assert kind.name in kind.model.model_fields, "a kind's JSON is keyed by its name"


@pytest.mark.parametrize(
    ("run", "kind", "requires"),
    [
        (None, "agent", ["git", "llm", "sandbox"]),
        ({}, "agent", ["git", "llm", "sandbox"]),
        ({"agent": {"max_rounds": 2}}, "agent", ["git", "llm", "sandbox"]),
        (AgentRun(), "agent", ["git", "llm", "sandbox"]),
        ({"tests": {}}, "tests", ["git", "sandbox"]),
        ({"shell": "make"}, "shell", []),
        (ShellRun(shell="make"), "shell", []),
        ({"builtin": "noop"}, "builtin", []),
        ({"python": "m:f"}, "python", []),
        ({"colour": "red"}, "unknown", []),
        ("make", "unknown", []),
    ],
)
def test_run_kind_and_default_requires_read_the_registry(run: Any, kind: str, requires: list[str]) -> None:
    assert run_kind(run) == kind
    assert default_requires("building", run) == requires


def test_a_plan_task_of_each_kind_gets_its_default_requires() -> None:
    spec = parse_plan(
        {
            "tasks": [
                {"id": "py", "type": "building", "title": "t", "run": {"python": "m:f"}},
                {"id": "tests", "type": "testing", "title": "t", "run": {"tests": {}}},
                {"id": "mine", "type": "testing", "title": "t", "run": {"tests": {}}, "requires": ["x"]},
            ]
        }
    )
    assert [t.requires for t in spec.tasks] == [[], ["git", "sandbox"], ["x"]]


# -- strict plans -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run", "fault"),
    [
        ({"agent": {"max_round": 3}}, "task 'a' (tasks[0]): unknown field 'run.agent.max_round'"),
        ({"agent": {"on_limit": "stop"}}, "task 'a' (tasks[0]): run.agent.on_limit: Input should be"),
        ({"agent": {"tool_choice": "any"}}, "run.agent.tool_choice: Input should be"),
        ({"agent": {"max_rounds": 0}}, "run.agent.max_rounds: Input should be greater than or equal to 1"),
        ({"tests": {"agent": {"max_round": 1}}}, "unknown field 'run.tests.agent.max_round'"),
        ({"shell": "make", "agent": {}}, "unknown field 'run.agent'"),
        ({"colour": "red"}, "run: must be a mapping keyed by one of: agent, shell, builtin, tests, python"),
        (
            {"python": "module_only"},
            "run.python: Value error, 'module_only' is not 'package.module:function'",
        ),
        ({"python": "m:f", "args": {"not ok": 1}}, "argument names must be Python identifiers: 'not ok'"),
    ],
)
def test_a_plan_names_the_task_and_the_field_of_a_bad_run(run: dict[str, Any], fault: str) -> None:
    found = faults(plan(run))
    assert any(fault in f for f in found), found
    assert len(found) == 1, "one fault, not one per run kind"


def test_agent_options_are_typed_and_only_those_set_are_written() -> None:
    spec = parse_plan(plan({"agent": {"max_rounds": "3", "verify": True, "files": ["a.py"]}}))
    run = spec.tasks[0].run
    assert isinstance(run, AgentRun)
    assert (run.agent.max_rounds, run.agent.max_tokens, run.agent.on_limit) == (3, 512, "succeed")
    assert spec.model_dump(mode="json")["tasks"][0]["run"] == {
        "agent": {"max_rounds": 3, "verify": True, "files": ["a.py"]}
    }


@pytest.mark.parametrize(
    ("run", "stored"),
    [
        ({"shell": "make"}, {"shell": "make", "env": {}}),
        ({"builtin": "noop"}, {"builtin": "noop", "seconds": 0.0, "fail_attempts": None}),
        ({"agent": {}}, {"agent": {}}),
        (
            {"tests": {"command": "make test"}},
            {
                "tests": {
                    "command": "make test",
                    "rounds": 3,
                    "round": 1,
                    "output_chars": 1500,
                    "agent": {},
                    "network": None,
                }
            },
        ),
        ({"python": "m:f", "args": {"x": [1]}}, {"python": "m:f", "args": {"x": [1]}}),
    ],
)
def test_the_json_shape_of_runs_is_unchanged_and_survives_the_api_round_trip(
    run: dict[str, Any], stored: dict[str, Any]
) -> None:
    spec = parse_plan(plan(run))
    assert spec.model_dump(mode="json")["tasks"][0]["run"] == stored
    # The API and MCP servers dump a validated plan (without nulls) and parse it again.
    assert parse_plan(spec.model_dump(mode="json", exclude_none=True)) == spec


# -- stored rows, leniently ---------------------------------------------------------------------


def test_a_stored_run_drops_what_its_model_no_longer_accepts_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stored = {
        "agent": {"max_round": 3, "max_rounds": 2, "on_limit": "stop", "resolves": ["a", 7]},
        "items": ["x"],
    }
    with caplog.at_level(logging.WARNING, logger="helixcode.domain.kinds"):
        run = load_run(stored, job="j1", task="t1")
    assert run == AgentRun(agent=AgentOptions(max_rounds=2, resolves=["a"]))
    [record] = caplog.records
    assert record.getMessage() == (
        "stored agent run: ignored items, agent.resolves.1, agent.on_limit, agent.max_round"
        " (no longer accepted)"
    )
    assert (record.action, record.job, record.task_key) == ("run.lenient", "j1", "t1")  # type: ignore[attr-defined]
    assert stored["agent"]["max_round"] == 3, "the row's data is not changed"


def test_a_stored_run_reads_silently_when_nothing_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert load_run({"tests": {"round": 2, "rounds": 2}}) == TestCycleRun(
            tests=TestCycleOptions(round=2, rounds=2)
        )
        assert load_run(None) == AgentRun()
    assert caplog.records == []


@pytest.mark.parametrize("stored", [{"shell": 42}, {"colour": "red"}, {"python": "m"}, "make"])
def test_a_stored_run_that_cannot_be_read_is_a_plan_error(stored: Any) -> None:
    with pytest.raises(PlanError, match="stored"):
        load_run(stored)


# -- split parts --------------------------------------------------------------------------------


def test_each_kind_carries_a_split_parts_items_where_its_executor_reads_them() -> None:
    items = ["a.py", "b c.py"]
    agent = AgentRun(agent=AgentOptions(max_rounds=2)).for_items(items)
    assert agent.model_dump(mode="json") == {"agent": {"max_rounds": 2, "files": items}}
    assert ShellRun(shell="x").for_items(items).model_dump(mode="json") == {
        "shell": "x",
        "env": {},
        "items": items,
    }
    assert BuiltinRun(builtin="noop").for_items(items).items == items
    assert PythonRun(python="m:f").for_items(items).model_dump(mode="json")["items"] == items
    suite = TestCycleRun(tests=TestCycleOptions(command="pytest -q")).for_items(items)
    assert suite.tests.items == items
    assert suite_command(suite.tests) == "pytest -q a.py 'b c.py'"
    assert suite_command(TestCycleOptions(items=items), "make test") == "make test a.py 'b c.py'"
    assert suite_command(TestCycleOptions(), None) is None


def test_a_split_test_runs_debugging_and_retest_run_the_parts_command() -> None:
    options = TestCycleRun(tests=TestCycleOptions(command="pytest -q", rounds=1)).for_items(["t_a.py"]).tests
    command = suite_command(options)
    assert command is not None
    fix, retest = next_round(options, TestCycleOutcome(command, 1, "1 failed", {"failed": 1}))
    assert isinstance(fix.run, AgentRun)
    assert fix.run.agent.test_command == "pytest -q t_a.py"
    assert isinstance(retest.run, TestCycleRun)
    assert suite_command(retest.run.tests) == "pytest -q t_a.py", "the items once, not twice"


def test_a_subtask_inherits_the_options_it_leaves_unset() -> None:
    planner = AgentOptions(max_rounds=2, model="m", verify=False)
    mine = AgentOptions(model="other", files=["a.py"])
    assert mine.under(planner).model_dump() == {
        "max_rounds": 2,
        "model": "other",
        "verify": False,
        "files": ["a.py"],
    }


# -- Python tasks, without a worker -------------------------------------------------------------


def test_what_is_not_json_is_named_by_type() -> None:
    assert not_json({"a": [1, 2.5, None, True, "x", (1, 2)]}) is None
    assert not_json({1, 2}) == "a set"
    assert not_json({"a": [object()]}) == "a object"
    assert not_json({1: "a"}) == "a dict key of type int"
    assert not_json(float("nan")) == "a float nan"


def test_the_context_goes_to_the_parameter_that_asks_for_it() -> None:
    assert _asks_for_context("anything", PythonContext)
    assert _asks_for_context("c", "PythonContext")
    assert _asks_for_context("c", "helixcode.agent.executors.PythonContext")
    assert _asks_for_context("ctx", "Any")
    assert not _asks_for_context("count", int)
