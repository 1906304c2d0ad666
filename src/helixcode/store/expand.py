"""A running task that becomes a parent: a planning task inserting the subtasks it planned.

``expand_task`` is one transaction, fenced by the planner's lease: it validates the job's graph with
the new subtasks, inserts them under the planner (``parent_id``), records the planner's attempt as
succeeded and leaves the planner ``waiting``, like a split parent: it succeeds when all its children
have (``PropagationOps._finish_parents``), and only then are its own dependents released, so everything
that depended on the planning task waits for the planned work too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from helixcode.domain.enums import TaskStatus
from helixcode.domain.graph import chain_lengths, validate_graph
from helixcode.errors import PlanError
from helixcode.store.base import event, task_event
from helixcode.store.leases import LEASE_CLEARED
from helixcode.store.outcomes import OutcomeOps
from helixcode.store.rows import task_values
from helixcode.store.tables import results, task_dependencies, tasks

if TYPE_CHECKING:
    from helixcode.domain.plan import TaskSpec
    from helixcode.domain.runs import AgentOptions

__all__ = ["ExpandOps", "child_key"]

S = TaskStatus
KEY_LIMIT = 64


def child_key(parent: str, sub: str) -> str:
    return f"{parent}.{sub}"


class ExpandOps(OutcomeOps):
    async def expand_task(
        self,
        task_id: int,
        token: str,
        subtasks: Sequence[TaskSpec],
        output: Mapping[str, Any] | None = None,
        *,
        details: Mapping[str, Any] | None = None,
    ) -> list[str]:
        """Insert ``subtasks`` under the running task ``task_id``; it then waits for them. Returns keys.
        ``details`` go into the ``expanded`` event (why it expanded: a plan, a merge conflict)."""
        # Lazy: the run models (pydantic) load with the plan that made ``subtasks``, not with the store.
        from helixcode.domain.kinds import load_run
        from helixcode.domain.runs import AgentOptions, AgentRun

        if not subtasks:
            raise PlanError(["plan: no subtasks"])
        defaults = self.settings.tasks
        async with self._write() as conn:
            now = await self._now(conn)
            parent = await self._fenced(conn, task_id, token)
            job_id, pkey = parent["job_id"], parent["key"]
            keys = {s.id: child_key(pkey, s.id) for s in subtasks}
            too_long = [
                f"task '{k}': key longer than {KEY_LIMIT} characters"
                for k in keys.values()
                if len(k) > KEY_LIMIT
            ]
            if too_long:
                raise PlanError(too_long)
            graph = await self._job_graph(conn, job_id)
            clash = [f"task '{k}' already exists in job {job_id}" for k in keys.values() if k in graph]
            if clash:
                raise PlanError(clash)
            outside = [
                f"task '{s.id}': depends on '{d}', which is not in the plan"
                for s in subtasks
                for d in s.depends_on
                if d not in keys
            ]
            if outside:
                raise PlanError(outside)
            for spec in subtasks:
                graph[keys[spec.id]] = [keys.get(d, d) for d in spec.depends_on]
            validate_graph(graph)
            chains = chain_lengths({s.id: s.depends_on for s in subtasks})
            parent_run = load_run(parent["run"], job=job_id, task=pkey)
            inherited = parent_run.agent if isinstance(parent_run, AgentRun) else AgentOptions()
            rows = [
                task_values(
                    spec,
                    job_id=job_id,
                    key=keys[spec.id],
                    run=_inherit(spec, inherited),
                    now=now,
                    defaults=defaults,
                    # The chain under the planner continues into what waits on the planner.
                    chain=chains[spec.id] - 1 - parent["chain_rank"],
                    parent_id=task_id,
                )
                for spec in subtasks
            ]
            result = await conn.execute(
                tasks.insert().returning(tasks.c.id, tasks.c.key, sort_by_parameter_order=True), rows
            )
            ids = {key: tid for tid, key in result.all()}
            deps = [
                {"task_id": ids[keys[s.id]], "depends_on_id": ids[keys[d]]}
                for s in subtasks
                for d in s.depends_on
            ]
            if deps:
                await conn.execute(task_dependencies.insert(), deps)
            await self._fenced(conn, task_id, token, status=S.WAITING.value, progress=0.0, **LEASE_CLEARED)
            await self._record_result(conn, parent, "succeeded", now, output, None)
            await self._events(
                conn,
                [task_event(parent, "expanded", now, children=list(keys.values()), **dict(details or {}))]
                + [
                    event(job_id, "ready", now, task_id=ids[keys[s.id]]) for s in subtasks if not s.depends_on
                ],
            )
        return list(keys.values())

    async def task_outputs(self, job_id: str) -> dict[str, dict[str, Any]]:
        """The output of each task's latest successful attempt, by task key."""
        stmt = (
            sa.select(tasks.c.key, results.c.output)
            .join(results, results.c.task_id == tasks.c.id)
            .where(tasks.c.job_id == job_id, results.c.outcome == "succeeded")
            .order_by(results.c.task_id, results.c.attempt)
        )
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        return {key: dict(output or {}) for key, output in rows}


def _inherit(spec: TaskSpec, inherited: AgentOptions) -> dict[str, Any]:
    """A planned agent subtask runs with the planner's agent options unless it sets its own."""
    from helixcode.domain.runs import AgentRun  # lazy, as in expand_task

    run = spec.run
    if isinstance(run, AgentRun):
        run = AgentRun(agent=run.agent.under(inherited))
    return run.model_dump(mode="json")
