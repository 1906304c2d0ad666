"""Planning with recorded plans: schema, validation, one repair round, insertion under the planner."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa

from helixcode.agent.planning import ask_for_plan, chain, plan_schema, split_uniform, validate_plan
from helixcode.domain.enums import TaskStatus, TaskType
from helixcode.domain.plan import AgentRun, parse_plan
from helixcode.errors import CycleError, LeaseLost, PlanError
from helixcode.llm.types import ChatRequest, ChatResponse, Usage
from helixcode.store.store import Store
from helixcode.store.tables import tasks as task_rows


def plan(*subtasks: dict[str, object]) -> str:
    return json.dumps({"subtasks": list(subtasks)})


def sub(id_: str, type_: str = "building", deps: Sequence[str] = (), **extra: object) -> dict[str, object]:
    return {
        "id": id_,
        "type": type_,
        "title": f"do {id_}",
        "description": "",
        "depends_on": list(deps),
        **extra,
    }


class Recorded:
    """Replays recorded replies and keeps the requests."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.requests: list[ChatRequest] = []

    async def __call__(self, request: ChatRequest) -> ChatResponse:
        self.requests.append(request)
        return ChatResponse(self.replies.pop(0), usage=Usage(10, 20))


def test_agent_plan_validation_collects_faults() -> None:
    with pytest.raises(CycleError, match="t1 -> t2 -> t1"):
        validate_plan(plan(sub("t1", deps=["t2"]), sub("t2", deps=["t1"])))
    with pytest.raises(PlanError) as caught:
        validate_plan(plan(sub("t1", "planning"), sub("t2", "cooking"), sub("t2")))
    text = str(caught.value)
    assert "planning" in text
    assert "cooking" in text
    with pytest.raises(PlanError, match="unknown task 'nope'"):
        validate_plan(plan(sub("t1", deps=["nope"])))
    with pytest.raises(PlanError, match="not valid JSON"):
        validate_plan('{"subtasks": [')
    specs = validate_plan(plan(sub("t1", check="make test"), sub("t2", "testing", ["t1", "t1"])))
    assert specs[1].depends_on == ["t1"]
    assert specs[0].run == AgentRun(agent={"check": "make test"})


def test_agent_plan_schema_orders_dependencies() -> None:
    schema = plan_schema(3)
    positions = schema["properties"]["subtasks"]["prefixItems"]
    assert [p["properties"]["id"]["const"] for p in positions] == ["t1", "t2", "t3"]
    assert "depends_on" not in positions[0]["properties"]
    assert positions[2]["properties"]["depends_on"]["items"]["enum"] == ["t1", "t2"]


async def test_agent_plan_repair_round() -> None:
    chat = Recorded(plan(sub("t1", deps=["t1"])), plan(sub("t1"), sub("t2", deps=["t1"])))
    result = await ask_for_plan(chat, "goal")
    assert [s.id for s in result.subtasks] == ["t1", "t2"]
    assert result.rounds == 2
    assert result.faults_repaired == ["task 't1': depends on itself"]
    assert chat.requests[0].response_schema is not None
    assert "depends on itself" in chat.requests[1].messages[-1].content


async def test_agent_plan_fails_after_one_repair() -> None:
    chat = Recorded("not json", plan(sub("t1", deps=["t9"])))
    with pytest.raises(PlanError, match=r"still invalid after one repair round.*unknown task .t9."):
        await ask_for_plan(chat, "goal")
    assert len(chat.requests) == 2


def test_agent_uniform_work_is_split_and_chain_orders(tmp_path: Path) -> None:
    for i in range(6):
        (tmp_path / f"m{i}.py").write_text("x" * (100 * (i + 1)))
    files = [f"m{i}.py" for i in range(6)]
    specs = validate_plan(plan(sub("t1", "refactoring", files=files), sub("t2", "testing", ["t1"])))
    parts = split_uniform(specs, tmp_path, slots=2)
    assert [s.id for s in parts] == ["t1-1", "t1-2", "t2"]
    assert parts[2].depends_on == ["t1-1", "t1-2"]
    loads = [sum((tmp_path / f).stat().st_size for f in s.run.agent.files or ()) for s in parts[:2]]  # type: ignore[attr-defined]
    assert abs(loads[0] - loads[1]) <= 100
    for part in parts[:2]:
        files = part.run.agent.files  # type: ignore[attr-defined]
        assert part.description.endswith("Only these items:\n" + "\n".join(f"- {f}" for f in files))
    assert [
        s.depends_on for s in chain(validate_plan(plan(sub("t1"), sub("t2"), sub("t3", deps=["t1"]))))
    ] == [[], ["t1"], ["t1", "t2"]]


async def test_agent_expand_makes_the_planner_a_waiting_parent(store: Store) -> None:
    planner = {"id": "plan", "type": "planning", "title": "plan it", "run": {"agent": {"max_rounds": 2}}}
    after = {"id": "after", "type": "testing", "title": "after", "depends_on": ["plan"]}
    spec = parse_plan({"tasks": [planner, {**after, "run": {"builtin": "noop"}}]})
    job = await store.create_job(spec, workdir="/tmp")
    [claim] = await store.claim("w1", ["git", "llm", "sandbox"], 1)
    subtasks = validate_plan(plan(sub("t1"), sub("t2", "testing", ["t1"])))
    with pytest.raises(LeaseLost):
        await store.expand_task(claim.task.id, "stale-token", subtasks)
    outside = subtasks[1].model_copy(update={"depends_on": ["after"]})
    with pytest.raises(PlanError, match="not in the plan"):
        await store.expand_task(claim.task.id, claim.token, [subtasks[0], outside])
    keys = await store.expand_task(claim.task.id, claim.token, subtasks, {"summary": "planned"})
    assert keys == ["plan.t1", "plan.t2"]
    tasks = {t.key: t for t in await store.list_tasks(job.id)}
    assert tasks["plan"].status is TaskStatus.WAITING
    assert tasks["plan.t1"].status is TaskStatus.READY
    assert tasks["plan.t1"].parent_key == "plan"
    assert tasks["plan.t2"].status is TaskStatus.BLOCKED
    assert tasks["plan.t2"].type is TaskType.TESTING
    assert tasks["plan.t1"].run == {"agent": {"max_rounds": 2}}  # options inherited from the planner
    assert tasks["after"].status is TaskStatus.BLOCKED
    assert (await store.task_outputs(job.id))["plan"] == {"summary": "planned"}
    async with store.engine.connect() as conn:
        chains = dict((await conn.execute(sa.select(task_rows.c.key, task_rows.c.chain_rank))).all())
    # Critical path first carries through the planner: its subtasks' chains continue into "after".
    assert {k: -v for k, v in chains.items()} == {"plan": 2, "after": 1, "plan.t1": 3, "plan.t2": 2}
    for key in ("plan.t1", "plan.t2"):
        [c] = await store.claim("w1", ["git", "llm", "sandbox"], 1)
        assert c.task.key == key
        await store.complete(c.task.id, c.token, {})
    tasks = {t.key: t for t in await store.list_tasks(job.id)}
    assert tasks["plan"].status is TaskStatus.SUCCEEDED
    assert tasks["after"].status is TaskStatus.READY


async def test_agent_plan_may_only_require_what_the_workers_offer() -> None:
    """A requirement no worker offers would leave its subtask unclaimable for ever: the schema lists the
    offered capabilities, and a reply that requires anything else gets the repair round."""
    offered = ["git", "llm", "python"]
    schema = plan_schema(2, offered)
    requires = schema["properties"]["subtasks"]["prefixItems"][0]["properties"]["requires"]
    assert requires["items"]["enum"] == offered
    chat = Recorded(
        plan(sub("t1", requires=["calc.py"]), sub("t2", deps=["t1"], requires=["t1"])),
        plan(sub("t1", requires=["python"]), sub("t2", deps=["t1"])),
    )
    result = await ask_for_plan(chat, "goal", capabilities=offered)
    assert result.faults_repaired == [
        "subtask 't1': requires 'calc.py', which no worker offers (offered: git, llm, python)",
        "subtask 't2': requires 't1', which no worker offers (offered: git, llm, python)",
    ]
    assert "python" in result.subtasks[0].requires
    with pytest.raises(PlanError, match="requires 'gpu', which no worker offers"):
        validate_plan(plan(sub("t1", requires=["gpu"])), capabilities=offered)
    assert validate_plan(plan(sub("t1", requires=["gpu"])))[0].requires  # unchecked without a list


def test_the_planner_opens_the_network_only_when_config_allows_it() -> None:
    reply = json.dumps(
        {
            "subtasks": [
                {"id": "t1", "type": "building", "title": "install deps", "description": "d", "network": True}
            ]
        }
    )
    with pytest.raises(PlanError, match="'network' is not allowed here"):
        validate_plan(reply)
    assert "network" not in json.dumps(plan_schema(2))
    [spec] = validate_plan(reply, network=True)
    assert spec.run.agent.network is True  # type: ignore[attr-defined]
    assert plan_schema(2, network=True)["properties"]["subtasks"]["prefixItems"][0]["properties"][
        "network"
    ] == {"type": "boolean"}
