"""Errors as RFC 9457 problem documents, one stable shape for every failure the API reports.

    {"type": "https://helixcode.dev/problems/not-found", "title": "Not Found", "status": 404,
     "detail": "no job 'abc'", "instance": "/api/v1/jobs/abc", "errors": [{"field": ..., "message": ...}]}

``errors`` is present for bad input only and names each offending field (``body.plan.tasks.0.type``,
``query.limit``). Engine errors map by class; anything unexpected is a 500 that hides its details.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from helixcode.errors import (
    AccessDenied,
    DatabaseUnavailable,
    Forbidden,
    HelixError,
    NotFound,
    PlanError,
    SchedulerError,
)

__all__ = ["PROBLEM_RESPONSES", "FieldError", "Problem", "install_handlers", "problem_response"]

log = logging.getLogger(__name__)
MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://helixcode.dev/problems/"


class FieldError(BaseModel):
    field: str = Field(description="where: body.plan.tasks.0.type, query.limit, path.job")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str = ""
    instance: str = ""
    errors: list[FieldError] | None = None


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

#: For the OpenAPI schema: every route can answer with these.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": _TITLES[code], "content": {MEDIA_TYPE: {}}}
    for code in (400, 401, 403, 404, 409, 413, 422)
}


def problem_response(
    request: Request,
    status: int,
    detail: str = "",
    *,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    title = _TITLES.get(status, "Error")
    body = Problem(
        type=TYPE_BASE + title.lower().replace(" ", "-"),
        title=title,
        status=status,
        detail=detail,
        instance=request.url.path,
        errors=errors,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, media_type=MEDIA_TYPE, headers=headers
    )


def _status_of(exc: HelixError) -> int:
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, AccessDenied):
        return 401
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, PlanError):
        return 422
    if isinstance(exc, SchedulerError):
        return 409
    if isinstance(exc, DatabaseUnavailable):
        return 503
    return 500


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc) or "body"


async def _on_helix(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HelixError)
    status = _status_of(exc)
    if status == 500:
        log.error("request failed", exc_info=exc, extra={"action": "api.error", "path": request.url.path})
        return problem_response(request, 500, "internal error; see the server log")
    errors = (
        [FieldError(field="body.plan", message=f) for f in exc.faults] if isinstance(exc, PlanError) else None
    )
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return problem_response(request, status, str(exc), errors=errors, headers=headers)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [FieldError(field=_field(e.get("loc", ())), message=str(e.get("msg", ""))) for e in exc.errors()]
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
    return problem_response(request, 422, detail, errors=errors)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers) if exc.headers else None
    detail = exc.detail if isinstance(exc.detail, str) else ""
    return problem_response(request, exc.status_code, detail, headers=headers)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error", exc_info=exc, extra={"action": "api.crash", "path": request.url.path})
    return problem_response(request, 500, "internal error; see the server log")


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HelixError, _on_helix)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unexpected)
