"""`helix mcp`: HelixCode's jobs as MCP tools and resources, over stdio or streamable HTTP.

Tools submit a job (a task graph or a goal), show status, list tasks, show a task's events and
result, and pause, resume or cancel. Resources give job summaries (``helix://jobs/{job}``) and task
logs (``helix://jobs/{job}/tasks/{task}/log``). Engine errors come back as MCP tool errors
(``isError``), never as crashes.

Over stdio the caller is the local user, as trusted as the CLI that reaches the database directly.
Over HTTP every request needs a bearer token from `helix token create`; a viewer's token can read but
not change anything.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import ToolAnnotations
from pydantic import Field
from starlette.types import ASGIApp, Receive, Scope, Send

from helixcode import __version__
from helixcode.config import Settings
from helixcode.domain.enums import TaskStatus
from helixcode.domain.goals import goal_spec
from helixcode.domain.plan import JobSpec, parse_plan
from helixcode.domain.records import ROLES, Role
from helixcode.engine.engine import Engine
from helixcode.engine.manager import TaskManager, job_workdir
from helixcode.errors import AccessDenied, HelixError

__all__ = ["Backend", "TokenGate", "build_server", "serve_http", "serve_stdio"]

T = TypeVar("T")

JobRef = Annotated[str, Field(min_length=1, max_length=32, description="a job id or a unique prefix of it")]
TaskKey = Annotated[str, Field(min_length=1, max_length=64, description="a task's key within its job")]
READ = ToolAnnotations(readOnlyHint=True, openWorldHint=False)
WRITE = ToolAnnotations(readOnlyHint=False, destructiveHint=False, openWorldHint=False)


class Backend:
    """The engine behind the tools, opened on first use and closed by ``aclose``."""

    def __init__(self, settings: Settings, *, workdir: Path | None = None) -> None:
        self.settings = settings
        self.workdir = (workdir or Path.cwd()).resolve()
        self._engine: Engine | None = None

    async def engine(self) -> Engine:
        if self._engine is None:
            self._engine = await Engine.open(self.settings)
        return self._engine

    async def manager(self) -> TaskManager:
        return (await self.engine()).jobs

    async def aclose(self) -> None:
        if self._engine is not None:
            await self._engine.aclose()
            self._engine = None


def build_server(backend: Backend) -> MCPServer:
    """The MCP server; the same tools over stdio and HTTP (HTTP adds token checks per call)."""
    mcp = MCPServer(
        "helix",
        version=__version__,
        instructions="Submit HelixCode jobs (task graphs or goals), watch their tasks and events, "
        "and pause, resume or cancel them.",
    )

    async def guarded(ctx: Context, role: Role, fn: Callable[[TaskManager], Awaitable[T]]) -> T:
        """Run ``fn`` as a tool: check the caller's token over HTTP, turn engine errors into tool errors."""
        try:
            await _authorize(backend, ctx, role)
            return await fn(await backend.manager())
        except HelixError as exc:
            raise ToolError(f"{type(exc).__name__}: {exc}") from exc

    @mcp.tool(annotations=WRITE)
    async def submit_job(
        ctx: Context,
        plan: Annotated[
            JobSpec | None, Field(description="a task graph, as in a `helix submit` file")
        ] = None,
        goal: Annotated[
            str | None, Field(min_length=1, max_length=20_000, description="or: a goal to plan")
        ] = None,
        name: Annotated[str | None, Field(min_length=1, max_length=200, description="goal: job name")] = None,
        workdir: Annotated[
            str | None, Field(max_length=4096, description="where tasks run (absolute)")
        ] = None,
    ) -> dict[str, Any]:
        """Create a job from a task graph or from a goal (exactly one). Returns the job's summary."""
        if (plan is None) == (goal is None):
            raise ToolError("give exactly one of 'plan' or 'goal'")

        async def go(m: TaskManager) -> dict[str, Any]:
            spec = (
                parse_plan(plan.model_dump(mode="json", exclude_none=True))
                if plan
                else goal_spec(goal or "", name)
            )
            job = await m.submit(spec, workdir=job_workdir(workdir or spec.workdir, backend.workdir))
            return (await m.summary(job.id)).to_dict()

        return await guarded(ctx, "operator", go)

    @mcp.tool(annotations=READ)
    async def job_status(ctx: Context, job: JobRef) -> dict[str, Any]:
        """One job: status, task counts by status, progress (0..1) and an ETA in seconds."""
        return await guarded(ctx, "viewer", lambda m: _summary(m, job))

    @mcp.tool(annotations=READ)
    async def list_jobs(
        ctx: Context, limit: Annotated[int, Field(ge=1, le=200, description="how many, newest first")] = 20
    ) -> dict[str, Any]:
        """Recent jobs with their status and progress."""

        async def go(m: TaskManager) -> dict[str, Any]:
            return {"jobs": [s.to_dict() for s in await m.jobs(limit)]}

        return await guarded(ctx, "viewer", go)

    @mcp.tool(annotations=READ)
    async def list_tasks(
        ctx: Context,
        job: JobRef,
        status: Annotated[list[TaskStatus] | None, Field(description="only tasks in these statuses")] = None,
    ) -> dict[str, Any]:
        """A job's tasks: key, type, status, attempts, progress, dependencies, last error."""

        async def go(m: TaskManager) -> dict[str, Any]:
            return {"tasks": [_brief(t.to_dict()) for t in await m.tasks(job, status or None)]}

        return await guarded(ctx, "viewer", go)

    @mcp.tool(annotations=READ)
    async def task_events(
        ctx: Context,
        job: JobRef,
        task: TaskKey,
        after: Annotated[int, Field(ge=0, description="only events with a larger id")] = 0,
        limit: Annotated[int, Field(ge=1, le=1000)] = 200,
    ) -> dict[str, Any]:
        """A task's events, oldest first; pass the last id as ``after`` to continue."""

        async def go(m: TaskManager) -> dict[str, Any]:
            tasks = (await backend.engine()).tasks
            found = await tasks.get_task(await m.resolve(job), task)
            return {"events": [e.to_dict() for e in await tasks.task_events(found.id, after, limit)]}

        return await guarded(ctx, "viewer", go)

    @mcp.tool(annotations=READ)
    async def task_result(ctx: Context, job: JobRef, task: TaskKey) -> dict[str, Any]:
        """A task's status, its result (output of the last success) and every attempt's outcome."""

        async def go(m: TaskManager) -> dict[str, Any]:
            found, attempts = await m.task_attempts(job, task)
            return {
                "task": _brief(found.to_dict()),
                "result": found.result,
                "attempts": [a.to_dict() for a in attempts],
            }

        return await guarded(ctx, "viewer", go)

    @mcp.tool(annotations=WRITE)
    async def pause_job(
        ctx: Context, job: JobRef, reason: Annotated[str, Field(max_length=2000)] = "paused by request"
    ) -> dict[str, Any]:
        """Stop claiming the job's tasks (running ones finish)."""

        async def go(m: TaskManager) -> dict[str, Any]:
            return await _summary(m, await m.pause(job, reason))

        return await guarded(ctx, "operator", go)

    @mcp.tool(annotations=WRITE)
    async def resume_job(
        ctx: Context,
        job: JobRef,
        retry: Annotated[list[str], Field(max_length=1000, description="failed tasks to retry first")] = [],  # noqa: B006
        skip: Annotated[list[str], Field(max_length=1000, description="tasks to skip first")] = [],  # noqa: B006
    ) -> dict[str, Any]:
        """Resume a paused or failed job, optionally retrying or skipping tasks."""

        async def go(m: TaskManager) -> dict[str, Any]:
            return await _summary(m, await m.resume(job, retry, skip))

        return await guarded(ctx, "operator", go)

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True, openWorldHint=False))
    async def cancel_job(ctx: Context, job: JobRef) -> dict[str, Any]:
        """Cancel every unfinished task of the job; running workers stop them."""

        async def go(m: TaskManager) -> dict[str, Any]:
            job_id = await m.resolve(job)
            return {"job_id": job_id, "cancelled": await m.cancel(job_id)}

        return await guarded(ctx, "operator", go)

    @mcp.resource("helix://jobs/{job}", mime_type="application/json")
    async def job_resource(job: str, ctx: Context) -> str:
        """A job's summary: status, counts, progress, ETA."""
        return json.dumps(await _resource(backend, ctx, lambda m: _summary(m, job)))

    @mcp.resource("helix://jobs/{job}/tasks/{task}/log", mime_type="text/plain")
    async def task_log(job: str, task: str, ctx: Context) -> str:
        """A task's log: its events one per line, then each attempt's outcome and error."""

        async def go(m: TaskManager) -> str:
            tasks = (await backend.engine()).tasks
            found = await tasks.get_task(await m.resolve(job), task)
            lines = [
                f"{e.id} {e.kind} attempt={e.attempt} worker={e.worker_id} {json.dumps(e.details)}"
                for e in await tasks.task_events(found.id)
            ]
            lines += [
                f"attempt {a.attempt}: {a.outcome}" + (f": {a.error}" if a.error else "")
                for a in await tasks.list_attempts(found.id)
            ]
            return "\n".join(lines) + "\n"

        return await _resource(backend, ctx, go)

    return mcp


async def _summary(m: TaskManager, job: str) -> dict[str, Any]:
    return (await m.summary(job)).to_dict()


def _brief(task: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "key", "type", "title", "status", "priority", "criticality", "attempts", "max_attempts",
        "progress", "progress_message", "depends_on", "parent_key", "last_error",
    )  # fmt: skip
    return {k: task[k] for k in keep}


async def _resource(backend: Backend, ctx: Context, fn: Callable[[TaskManager], Awaitable[T]]) -> T:
    try:
        await _authorize(backend, ctx, "viewer")
        return await fn(await backend.manager())
    except HelixError as exc:
        raise ResourceError(str(exc)) from exc


async def _authorize(backend: Backend, ctx: Context, role: Role) -> None:
    """Over HTTP, the bearer token must be live and strong enough; stdio has no request and no token."""
    request = ctx.request_context.request
    if request is None:
        return
    header = str(request.headers.get("authorization", ""))
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret:
        raise AccessDenied("a bearer token is required")
    token = await (await backend.engine()).tokens.authenticate(secret.strip())
    if token is None:
        raise AccessDenied("unknown or revoked token")
    if ROLES.index(token.role) < ROLES.index(role):
        raise AccessDenied(f"this needs the {role} role; the token has {token.role}")


class TokenGate:
    """Refuse HTTP requests without a live token before the MCP transport sees them (401, JSON)."""

    def __init__(self, app: ASGIApp, backend: Backend) -> None:
        self.app = app
        self.backend = backend

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            scheme, _, secret = header.partition(" ")
            ok = scheme.lower() == "bearer" and bool(secret.strip())
            if ok:
                ok = await (await self.backend.engine()).tokens.authenticate(secret.strip()) is not None
            if not ok:
                body = json.dumps(
                    {"title": "Unauthorized", "status": 401, "detail": "a live bearer token is required"}
                )
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/problem+json"),
                            (b"www-authenticate", b"Bearer"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body.encode()})
                return
        await self.app(scope, receive, send)


async def serve_stdio(settings: Settings) -> None:
    backend = Backend(settings)
    try:
        await build_server(backend).run_stdio_async()
    finally:
        await backend.aclose()


async def serve_http(settings: Settings, host: str, port: int, *, sock: Any = None) -> None:
    """Streamable HTTP at ``/mcp`` behind the token gate."""
    import uvicorn

    backend = Backend(settings)
    app = build_server(backend).streamable_http_app(host=host)
    config = uvicorn.Config(
        TokenGate(app, backend),
        host=host,
        port=port,
        log_level=settings.logging.level,
        log_config=None,  # uvicorn's loggers use our handler (helixcode.logsetup)
        lifespan="on",
    )
    try:
        await uvicorn.Server(config).serve(sockets=[sock] if sock is not None else None)
    finally:
        await backend.aclose()
