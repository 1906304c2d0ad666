"""What the dashboard's script fetches under ``/ui``: a job's laid-out graph, a task's detail, the
timeline, the event log's tail, the live stream, and the controls.

These sit beside the REST API rather than in it: the API takes bearer tokens and has a public
schema; these take the browser session (and its CSRF token for controls) and answer in the shapes
the page draws. Both call the same engine, so a control here does exactly what its API route does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from helixcode.api.dashboard.auth import Actor, Reader, browser_of
from helixcode.api.dashboard.charts import lanes
from helixcode.api.dashboard.feed import Batch, FeedHub
from helixcode.api.dashboard.layout import GraphTask, layout
from helixcode.api.deps import EngineDep, Manager
from helixcode.api.routers.jobs import JobRef, TaskRef
from helixcode.domain.goals import goal_spec
from helixcode.domain.models import Event
from helixcode.domain.outputs import output_sections, tail_lines
from helixcode.domain.plan import parse_plan
from helixcode.engine.manager import job_workdir
from helixcode.errors import PlanError

__all__ = ["router"]

router = APIRouter(prefix="/ui", include_in_schema=False)

#: Lines of each output section a task's detail shows; characters of a checkpoint's data.
TAIL_LINES = 40
PREVIEW_CHARS = 2000
#: How often a live stream checks that its session's token is still live.
RECHECK_SECONDS = 30.0


def _event(e: Event) -> dict[str, Any]:
    return e.to_dict()


def _summary(s: Any) -> dict[str, Any]:
    return dict(s.to_dict())


@router.get("/jobs/{job}/graph")
async def graph(
    job: JobRef,
    _: Reader,
    manager: Manager,
    engine: EngineDep,
    open_: Annotated[str | None, Query(alias="open", max_length=100_000)] = None,
) -> dict[str, Any]:
    """Boxes, arrows and every task's status and box; ``tag`` is the event the states are as of.
    ``open``: comma-separated groups to draw open (absent: the default for the job's size)."""
    job_id = await manager.resolve(job)
    tag = await engine.browse.last_event_id(job_id)
    rows = await engine.browse.graph_rows(job_id)
    opened = None if open_ is None else [k for k in open_.split(",") if k]
    placed = await asyncio.to_thread(layout, [GraphTask(r.key, r.deps, r.parent) for r in rows], opened)
    status = {r.key: r.status for r in rows}
    titles = {r.key: r.title for r in rows}
    return {
        "job": job_id,
        "tag": tag,
        "width": placed.width,
        "height": placed.height,
        "groups": placed.groups,
        "boxes": [
            [b.key, b.kind, b.x, b.y, b.w, b.h, b.members, titles[b.key], status[b.key]] for b in placed.boxes
        ],
        "edges": placed.edges,
        "tasks": {r.key: [r.status, placed.owner[r.key], r.parent] for r in rows},
    }


@router.get("/jobs/{job}/tasks/{task}")
async def task_detail(
    job: JobRef, task: TaskRef, _: Reader, manager: Manager, engine: EngineDep
) -> dict[str, Any]:
    """A task with its attempts, kept checkpoints (previews), output tail, commit and events."""
    job_id = await manager.resolve(job)
    found = await engine.browse.find_task(job_id, task)
    attempts = await engine.tasks.list_attempts(found.id)
    checkpoints = await engine.tasks.list_checkpoints(found.id)
    latest = attempts[-1].output if attempts else {}
    result = next((a.output for a in reversed(attempts) if a.outcome == "succeeded"), None)
    where = next((a.output for a in reversed(attempts) if a.output.get("commit")), {})
    names = {w.id: w.name for w in await manager.workers(include_stopped=True)}
    return {
        "task": found.to_dict(),
        "attempts": [
            {
                **a.to_dict(),
                "output": None,
                "duration": (a.finished_at - a.started_at) if a.started_at is not None else None,
            }
            for a in attempts
        ],
        "checkpoints": [
            {**asdict(c), "data": json.dumps(c.data, default=str)[:PREVIEW_CHARS]} for c in checkpoints
        ],
        "output": [[label, tail_lines(text, TAIL_LINES)] for label, text in output_sections(latest)],
        "result": json.dumps(result, default=str)[:PREVIEW_CHARS] if result is not None else None,
        "commit": where.get("commit"),
        "branch": where.get("branch"),
        "events": [_event(e) for e in await engine.tasks.task_events(found.id)],
        "workers": {w: names[w] for a in attempts if (w := a.worker_id) in names}
        | ({found.lease_owner: names[found.lease_owner]} if found.lease_owner in names else {}),
    }


@router.get("/jobs/{job}/timeline")
async def timeline(job: JobRef, _: Reader, manager: Manager, engine: EngineDep) -> dict[str, Any]:
    """Attempts in worker slots (see ``charts.lanes``), with the workers' names."""
    job_id = await manager.resolve(job)
    spans = await engine.browse.job_spans(job_id)
    names = {w.id: w.name for w in await manager.workers(include_stopped=True)}
    now = await engine.now()
    rows = lanes(spans, now)
    for row in rows:
        row["name"] = names.get(row["worker"], row["worker"])
    return {"now": now, "workers": rows}


@router.get("/jobs/{job}/events")
async def events_tail(
    job: JobRef,
    _: Reader,
    manager: Manager,
    engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=2000)] = 200,
) -> list[dict[str, Any]]:
    return [_event(e) for e in await engine.browse.recent_events(await manager.resolve(job), limit)]


def _frame(batch: Batch) -> str:
    data = {
        "events": [_event(e) for e in batch.events],
        "states": {s.key: s.to_list() for s in batch.states},
        "tag": batch.tag,
        "job": _summary(batch.summary) if batch.summary is not None else None,
    }
    text = json.dumps(data, separators=(",", ":"), default=str)
    return f"id: {batch.tag}\nevent: {'end' if batch.end else 'batch'}\ndata: {text}\n\n"


async def _stream(
    request: Request, hub: FeedHub, job_id: str, after: int, keepalive: float
) -> AsyncIterator[str]:
    yield "retry: 2000\n\n"
    loop = asyncio.get_running_loop()
    checked = loop.time()
    async with hub.subscribe(job_id, after, idle=keepalive) as batches:
        async for batch in batches:
            if batch is None:
                yield ": keep-alive\n\n"
            else:
                yield _frame(batch)
                if batch.end:
                    return
            if loop.time() - checked > RECHECK_SECONDS:
                checked = loop.time()
                if await browser_of(request) is None:
                    yield "event: logout\ndata: {}\n\n"
                    return


@router.get("/jobs/{job}/stream")
async def stream(
    job: JobRef,
    _: Reader,
    manager: Manager,
    request: Request,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
) -> StreamingResponse:
    """Server-Sent Events for one browser: batches of events with the touched tasks' states, from
    the job's shared follower (``feed``); resumes after ``Last-Event-ID`` when the browser reconnects."""
    job_id = await manager.resolve(job)
    cursor = int(last_event_id) if last_event_id and last_event_id.strip().isdigit() else after
    hub: FeedHub = request.app.state.feeds
    keepalive = request.app.state.settings_sse["keepalive"]
    return StreamingResponse(
        _stream(request, hub, job_id, cursor, keepalive),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# -- controls -------------------------------------------------------------------------------------


@router.post("/jobs/{job}/pause")
async def pause(job: JobRef, _: Actor, manager: Manager) -> dict[str, Any]:
    return _summary(await manager.summary(await manager.pause(job, "paused from the dashboard")))


@router.post("/jobs/{job}/resume")
async def resume(job: JobRef, _: Actor, manager: Manager) -> dict[str, Any]:
    return _summary(await manager.summary(await manager.resume(job)))


@router.post("/jobs/{job}/cancel")
async def cancel(job: JobRef, _: Actor, manager: Manager) -> dict[str, Any]:
    job_id = await manager.resolve(job)
    return {"job_id": job_id, "cancelled": await manager.cancel(job_id)}


@router.post("/jobs/{job}/tasks/{task}/retry")
async def retry_task(job: JobRef, task: TaskRef, _: Actor, manager: Manager) -> dict[str, Any]:
    return _summary(await manager.summary(await manager.resume(job, retry=[task])))


@router.post("/jobs/{job}/tasks/{task}/skip")
async def skip_task(job: JobRef, task: TaskRef, _: Actor, manager: Manager) -> dict[str, Any]:
    return _summary(await manager.summary(await manager.resume(job, skip=[task])))


class SubmitForm(BaseModel):
    """A plan file's text (YAML or JSON), or a goal for the planner."""

    model_config = ConfigDict(extra="forbid")
    plan: str | None = Field(default=None, min_length=1)
    goal: str | None = Field(default=None, min_length=1, max_length=20_000)
    name: str | None = Field(default=None, max_length=200)
    workdir: str | None = Field(default=None, max_length=4096)


@router.post("/jobs", status_code=201)
async def submit(body: SubmitForm, _: Actor, manager: Manager, request: Request) -> dict[str, Any]:
    if (body.plan is None) == (body.goal is None):
        raise PlanError(["give a plan or a goal, not both"])
    if body.plan is not None:
        try:
            data = yaml.safe_load(body.plan)
        except yaml.YAMLError as exc:
            raise PlanError([f"plan: not valid YAML or JSON: {exc}"]) from exc
        spec = parse_plan(data)
    else:
        try:
            spec = goal_spec(body.goal or "", body.name or None)
        except ValueError as exc:
            raise PlanError([f"goal: {exc}"]) from exc
    workdir = job_workdir(body.workdir or spec.workdir, request.app.state.workdir)
    job = await manager.submit(spec, workdir=workdir)
    return _summary(await manager.summary(job.id))
