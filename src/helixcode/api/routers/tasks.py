"""Tasks of a job (filtered), one task with its attempts, checkpoints and events, and the job's events
as JSON or as a live Server-Sent Events stream."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from helixcode.api.deps import EngineDep, Manager, Viewer
from helixcode.api.routers.jobs import JobRef, TaskRef
from helixcode.api.schemas import EventOut, TaskDetailOut, TaskOut
from helixcode.api.sse import event_stream
from helixcode.domain.enums import TaskStatus, TaskType

__all__ = ["router"]

router = APIRouter(prefix="/jobs/{job}", tags=["tasks"])


@router.get("/tasks", response_model=list[TaskOut], summary="List a job's tasks")
async def list_tasks(
    job: JobRef,
    manager: Manager,
    _: Viewer,
    status: Annotated[list[TaskStatus] | None, Query(description="only these statuses (repeatable)")] = None,
    type: Annotated[list[TaskType] | None, Query(description="only these types (repeatable)")] = None,
    parent: Annotated[str | None, Query(max_length=64, description="only parts of this split task")] = None,
) -> list[dict[str, Any]]:
    found = await manager.tasks(job, status or None)
    if type:
        found = [t for t in found if t.type in type]
    if parent is not None:
        found = [t for t in found if t.parent_key == parent]
    return [t.to_dict() for t in found]


@router.get("/tasks/{task}", response_model=TaskDetailOut, summary="Show a task")
async def show_task(job: JobRef, task: TaskRef, manager: Manager, engine: EngineDep, _: Viewer) -> Any:
    """The task with every finished attempt, its kept checkpoints and its events."""
    tasks = engine.tasks
    found = await tasks.get_task(await manager.resolve(job), task)
    return {
        "task": found.to_dict(),
        "attempts": [a.to_dict() for a in await tasks.list_attempts(found.id)],
        "checkpoints": [asdict(c) for c in await tasks.list_checkpoints(found.id)],
        "events": [e.to_dict() for e in await tasks.task_events(found.id)],
    }


@router.get(
    "/events",
    response_model=list[EventOut],
    summary="A job's events (JSON, or a live SSE stream)",
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)
async def job_events(
    job: JobRef,
    manager: Manager,
    _: Viewer,
    request: Request,
    after: Annotated[int, Query(ge=0, le=2**62, description="only events with a larger id")] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    settled: Annotated[
        bool, Query(description="only events old enough that no earlier id can still commit (following)")
    ] = False,
    last_event_id: Annotated[
        str | None, Header(max_length=32, description="SSE resume cursor; wins over `after`")
    ] = None,
) -> Any:
    """With ``Accept: text/event-stream``: every event after the cursor, then live ones until the job
    ends. Otherwise one JSON page (``after``/``limit``)."""
    job_id = await manager.resolve(job)
    if "text/event-stream" not in request.headers.get("accept", ""):
        return [e.to_dict() for e in await manager.events(job_id, after, limit, settled=settled)]
    cursor = after
    if last_event_id is not None and last_event_id.strip().isdigit():
        cursor = int(last_event_id.strip())
    settings = request.app.state.settings_sse
    return StreamingResponse(
        event_stream(manager, job_id, cursor, poll=settings["poll"], keepalive=settings["keepalive"]),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
