"""A goal in words becomes a one-task job: a planning task that the agent expands into a graph."""

from __future__ import annotations

from helixcode.domain.enums import Criticality, TaskType
from helixcode.domain.plan import AgentRun, JobSpec, TaskSpec

__all__ = ["goal_spec"]


def goal_spec(
    goal: str, name: str | None = None, workdir: str | None = None, run: AgentRun | None = None
) -> JobSpec:
    """The job `helix run GOAL`, the API's and MCP's goal submissions create: ``plan`` does the rest.
    One place, so the planner is critical however the goal arrives (a plan that fails pauses the
    job for a person); ``run`` carries the agent options (``--tool-rounds``...).

    >>> goal_spec("add a --version flag").tasks[0].type
    <TaskType.PLANNING: 'planning'>
    """
    text = goal.strip()
    if not text:
        raise ValueError("the goal is empty")
    first = text.splitlines()[0]
    return JobSpec(
        name=(name or first)[:200],
        description=text,
        workdir=workdir,
        tasks=[
            TaskSpec(
                id="plan",
                type=TaskType.PLANNING,
                title=first[:200],
                description=text,
                criticality=Criticality.CRITICAL,
                run=run or AgentRun(),
            )
        ],
    )
