"""The dashboard's pages, rendered on the server: log in and out, jobs, a job, workers, providers.

Every page but the login form needs a session (see ``auth``); without one the browser is sent to
the login form, which brings it back afterwards (``next``, only ever a path on this site).
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from helixcode.api.dashboard.auth import PageUser, browser_of, same_origin, sessions_of
from helixcode.api.dashboard.charts import plot_points, series
from helixcode.api.dashboard.session import COOKIE, CSRF_FIELD, LOGIN_COOKIE
from helixcode.api.dashboard.templates import render
from helixcode.api.deps import EngineDep, Manager
from helixcode.api.routers.jobs import JobRef
from helixcode.domain.enums import JobStatus, TaskStatus
from helixcode.domain.views import RECENT_CALLS, ProviderUse
from helixcode.errors import Forbidden
from helixcode.llm.manager import LLMManager

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

#: How far back the workers' plots go.
PLOT_WINDOW = 900.0
PLOT_W, PLOT_H = 240, 60


#: Pages run only this site's script and style, and no other site may frame them.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _page(name: str, code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(render(name, **context), status_code=code, headers=SECURITY_HEADERS)


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a path on this site, never another site (``//evil``, ``https:``)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _cookie_secure(request: Request) -> bool:
    return sessions_of(request).secure or request.url.scheme == "https"


# -- logging in and out ---------------------------------------------------------------------------


def _login_form(request: Request, next_path: str, error: str | None = None, code: int = 200) -> Response:
    nonce = secrets.token_urlsafe(18)
    response = _page("login.html", code, user=None, login_csrf=nonce, next=safe_next(next_path), error=error)
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=900,
        httponly=True,
        samesite="strict",
        secure=_cookie_secure(request),
        path="/login",
    )
    return response


@router.get("/login")
async def login_form(request: Request, next: Annotated[str, Query(max_length=2000)] = "/") -> Response:
    if await browser_of(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_form(request, next)


@router.post("/login")
async def login(request: Request, engine: EngineDep) -> Response:
    """Check the token as the API does; on success a session cookie, and back where the browser was."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    field = {k: v[0] for k, v in form.items() if v}
    next_path = safe_next(field.get("next"))
    given, expected = field.get(CSRF_FIELD, ""), request.cookies.get(LOGIN_COOKIE, "")
    if not same_origin(request) or not expected or not secrets.compare_digest(given, expected):
        return _login_form(request, next_path, "The form expired: log in again.", 403)
    token = await engine.tokens.authenticate(field.get("token", "").strip()) if field.get("token") else None
    if token is None:
        return _login_form(request, next_path, "Unknown or revoked token.", 401)
    sessions = sessions_of(request)
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        COOKIE,
        sessions.issue(token.id, await engine.now()),
        max_age=int(sessions.ttl),
        httponly=True,
        samesite="strict",
        secure=_cookie_secure(request),
        path="/",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.get("/logout")
async def logout_form(user: PageUser) -> Response:
    return _page("logout.html", user=user)


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End this browser's session (a form with the session's CSRF token: no other site can)."""
    found = await browser_of(request)
    if found is not None:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        given = (form.get(CSRF_FIELD) or [""])[0] or request.headers.get("x-csrf-token")
        if not sessions_of(request).csrf_ok(found.claims, given):
            raise Forbidden("missing or wrong CSRF token")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


# -- jobs -----------------------------------------------------------------------------------------


def _cursor(value: tuple[float, str]) -> str:
    return f"{value[0]!r}_{value[1]}"


def _parse_cursor(value: str | None) -> tuple[float, str] | None:
    if not value or "_" not in value:
        return None
    at, _, job_id = value.partition("_")
    try:
        return float(at), job_id
    except ValueError:
        return None


@router.get("/")
async def jobs_page(
    user: PageUser,
    engine: EngineDep,
    status: Annotated[JobStatus | None, Query()] = None,
    before: Annotated[str | None, Query(max_length=80)] = None,
) -> Response:
    page = await engine.browse.list_jobs_page([status] if status else (), _parse_cursor(before), 50)
    return _page(
        "jobs.html",
        user=user,
        nav="jobs",
        page=page,
        status=status.value if status else None,
        statuses=[s.value for s in JobStatus],
        before=before,
        cursor=_cursor,
    )


@router.get("/jobs/{job}")
async def job_page(job: JobRef, user: PageUser, manager: Manager) -> Response:
    summary = await manager.summary(job)
    return _page("job.html", user=user, nav="jobs", s=summary, task_statuses=[s.value for s in TaskStatus])


# -- workers --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Plot:
    points: str
    last: float


@router.get("/workers")
async def workers_page(
    user: PageUser, engine: EngineDep, all_: Annotated[bool, Query(alias="all")] = False
) -> Response:
    found = await engine.jobs.workers(include_stopped=all_)
    running = await engine.fleet.running_tasks()
    now = await engine.now()
    since = now - PLOT_WINDOW
    histories = await asyncio.gather(*(engine.fleet.resource_history(w.id, since) for w in found))
    workers = []
    for info, samples in zip(found, histories, strict=True):
        # From the first sample (a young worker's plot is not a sliver at the right), a minute at least.
        t0 = min(samples[0][0] if samples else since, now - 60)
        plots = [
            (name, _Plot(plot_points(points, t0, now, PLOT_W, PLOT_H), points[-1][1]))
            for name, points in series(samples).items()
        ]
        workers.append(
            {"info": info, "running": [t for t in running if t.worker_id == info.id], "plots": plots}
        )
    return _page(
        "workers.html",
        user=user,
        nav="workers",
        workers=workers,
        all=all_,
        window=PLOT_WINDOW,
        plot_w=PLOT_W,
        plot_h=PLOT_H,
    )


# -- providers ------------------------------------------------------------------------------------


@router.get("/providers")
async def providers_page(request: Request, user: PageUser, engine: EngineDep) -> Response:
    llm: LLMManager | None = await request.app.state.llm()
    providers: list[dict[str, Any]] = []
    if llm is not None:
        models, health, (uses, errors) = await asyncio.gather(
            llm.refresh_models(), llm.monitor.probe_all(), engine.fleet.provider_use(list(llm.entries))
        )
        by_name: dict[str, ProviderUse] = {u.provider: u for u in uses}
        for name, entry in llm.entries.items():
            use = by_name[name]
            providers.append(
                {
                    "name": name,
                    "type": entry.provider.kind,
                    "priority": entry.priority,
                    "cost": entry.cost,
                    "healthy": health[name].ok,
                    "health": health[name].detail,
                    "latency_s": health[name].latency_s,
                    "breaker": "open" if use.down_until else llm.breakers[name].state,
                    "discovery_error": llm.discovery_errors.get(name),
                    "models": models.get(name, []),
                    "use": use,
                    "errors": [e for e in errors if e.provider == name],
                }
            )
    return _page("providers.html", user=user, nav="providers", providers=providers, recent=RECENT_CALLS)
