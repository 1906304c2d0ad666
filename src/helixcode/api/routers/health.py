"""Liveness, readiness (the database answers) and Prometheus metrics, outside the versioned prefix."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from helixcode.api.deps import EngineDep, Viewer
from helixcode.api.metrics import CONTENT_TYPE, render_metrics
from helixcode.api.problems import PROBLEM_RESPONSES
from helixcode.errors import StoreError

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the database is reachable",
    responses={503: {"description": "the database cannot be reached"}},
)
async def readyz(engine: EngineDep) -> Any:
    try:
        await engine.now()
    except StoreError as exc:
        return JSONResponse({"status": "unavailable", "detail": str(exc)}, status_code=503)
    return {"status": "ok"}


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **PROBLEM_RESPONSES},
)
async def metrics(engine: EngineDep, _: Viewer) -> Response:
    snapshot = await engine.fleet.metrics_snapshot()
    workers = await engine.jobs.workers(include_stopped=False)
    return Response(render_metrics(snapshot, workers), media_type=CONTENT_TYPE)
