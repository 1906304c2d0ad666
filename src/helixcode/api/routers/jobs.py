"""Jobs: submit (a graph or a goal), list, show, and control (pause, resume, cancel, retry/skip a task)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam

from helixcode.api.deps import Manager, Operator, Viewer
from helixcode.api.schemas import CancelOut, JobSummaryOut, PauseIn, ResumeIn, SubmitIn
from helixcode.domain.goals import goal_spec
from helixcode.domain.plan import parse_plan
from helixcode.engine.manager import job_workdir
from helixcode.errors import PlanError

__all__ = ["JobRef", "TaskRef", "router"]

router = APIRouter(prefix="/jobs", tags=["jobs"])

JobRef = Annotated[str, PathParam(min_length=1, max_length=32, description="a job id or a unique prefix")]
TaskRef = Annotated[str, PathParam(min_length=1, max_length=64, description="a task's key in its job")]


@router.post("", status_code=201, response_model=JobSummaryOut, summary="Submit a job")
async def submit(body: SubmitIn, manager: Manager, _: Operator, request: Request, response: Response) -> Any:
    """A task graph (the format of `helix submit`), validated as a whole, or a goal for the planner."""
    if body.plan is not None:
        spec = parse_plan(body.plan.model_dump(mode="json", exclude_none=True))
    else:
        try:
            spec = goal_spec(body.goal or "", body.name)
        except ValueError as exc:
            raise PlanError([f"goal: {exc}"]) from exc
    base: Path = request.app.state.workdir
    job = await manager.submit(spec, workdir=job_workdir(body.workdir or spec.workdir, base))
    response.headers["Location"] = f"{request.url.path}/{job.id}"
    return (await manager.summary(job.id)).to_dict()


@router.get("", response_model=list[JobSummaryOut], summary="List recent jobs")
async def list_jobs(
    manager: Manager, _: Viewer, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[dict[str, Any]]:
    return [s.to_dict() for s in await manager.jobs(limit)]


@router.get("/{job}", response_model=JobSummaryOut, summary="Show a job")
async def show_job(job: JobRef, manager: Manager, _: Viewer) -> Any:
    return (await manager.summary(job)).to_dict()


@router.post("/{job}/pause", response_model=JobSummaryOut, summary="Pause a job")
async def pause(job: JobRef, manager: Manager, _: Operator, body: PauseIn | None = None) -> Any:
    job_id = await manager.pause(job, (body or PauseIn()).reason)
    return (await manager.summary(job_id)).to_dict()


@router.post("/{job}/resume", response_model=JobSummaryOut, summary="Resume a job")
async def resume(job: JobRef, manager: Manager, _: Operator, body: ResumeIn | None = None) -> Any:
    given = body or ResumeIn()
    job_id = await manager.resume(
        job, given.retry, given.skip, raise_cost=given.raise_cost, raise_tokens=given.raise_tokens
    )
    return (await manager.summary(job_id)).to_dict()


@router.post("/{job}/cancel", response_model=CancelOut, summary="Cancel a job")
async def cancel(job: JobRef, manager: Manager, _: Operator) -> Any:
    job_id = await manager.resolve(job)
    return {"job_id": job_id, "cancelled": await manager.cancel(job_id)}


@router.post("/{job}/tasks/{task}/retry", response_model=JobSummaryOut, summary="Retry a failed task")
async def retry_task(job: JobRef, task: TaskRef, manager: Manager, _: Operator) -> Any:
    job_id = await manager.resume(job, retry=[task])
    return (await manager.summary(job_id)).to_dict()


@router.post("/{job}/tasks/{task}/skip", response_model=JobSummaryOut, summary="Skip a task")
async def skip_task(job: JobRef, task: TaskRef, manager: Manager, _: Operator) -> Any:
    job_id = await manager.resume(job, skip=[task])
    return (await manager.summary(job_id)).to_dict()
