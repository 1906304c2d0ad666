"""A goal becomes one critical planning task, however it arrives (CLI, API, MCP)."""

from __future__ import annotations

from helixcode.domain.enums import Criticality, TaskType
from helixcode.domain.goals import goal_spec
from helixcode.domain.plan import AgentRun


def test_the_planner_is_critical_and_carries_the_commands_options() -> None:
    run = AgentRun.model_validate({"agent": {"max_rounds": 2, "chain": True}})
    [plan] = goal_spec("Add a subtract function\nwith tests", run=run).tasks
    assert (plan.id, plan.type, plan.criticality) == ("plan", TaskType.PLANNING, Criticality.CRITICAL)
    assert plan.title == "Add a subtract function"
    assert plan.run == run
    [bare] = goal_spec("anything").tasks
    assert bare.criticality is Criticality.CRITICAL
    assert bare.run == AgentRun()
