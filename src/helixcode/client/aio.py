"""``AsyncClient``: submit task graphs, follow their events and control jobs, from Python.

One class over two backends: the local database (the settings the CLI finds, or a database URL) or a
`helix serve` API (``server=`` and ``token=``). Both are reached through ``engine.protocol.JobControl``,
so every method is written once and behaves the same way; errors are the engine's own (``NotFound``,
``PlanError``, ``SchedulerError``...), whichever backend raised them.

    async with AsyncClient() as helix:
        job = await helix.submit(JobSpec(name="demo", tasks=[...]))
        async for event in helix.follow(job.job.id):
            print(event.kind, event.task_key)
        final = await helix.wait(job.job.id)
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeAlias

from helixcode.domain.enums import TaskStatus
from helixcode.domain.models import Event, JobSummary, Task
from helixcode.domain.plan import JobSpec, load_plan, parse_plan
from helixcode.domain.records import WorkerInfo
from helixcode.errors import ConfigError, HelixError

if TYPE_CHECKING:
    from helixcode.config import Settings
    from helixcode.engine.protocol import JobControl

__all__ = ["AsyncClient", "Plan"]

#: What ``submit`` takes: a plan built in code, plain data as in a plan file, or a plan file's path.
Plan: TypeAlias = JobSpec | Mapping[str, Any] | str | os.PathLike[str]


def _spec_of(plan: Plan) -> tuple[JobSpec, Path | None]:
    """The validated plan, and the folder its ``workdir`` is relative to (a plan file's folder).

    A ``JobSpec`` built in code has had its fields checked by pydantic, but not its graph (duplicate
    ids, unknown dependencies, cycles): it goes through ``parse_plan`` like a file does, so a faulty
    graph is a ``PlanError`` naming the task and the fault, and nothing is written."""
    if isinstance(plan, JobSpec):
        return parse_plan(plan.model_dump(mode="json", exclude_none=True)), None
    if isinstance(plan, Mapping):
        return parse_plan(dict(plan)), None
    path = Path(plan).expanduser()
    return load_plan(path), path.resolve().parent


class AsyncClient:
    """Submit, follow and control HelixCode jobs; use as ``async with`` (or ``await aclose()``).

    ``AsyncClient()`` uses the database the CLI would (``helix.toml``, ``HELIX_*``, else the nearest
    ``.helix/helix.db``); ``AsyncClient("postgresql+psycopg://...")`` that database, with the other
    settings found as usual; ``settings=`` exactly those settings. ``AsyncClient(server=URL,
    token=...)`` goes through a `helix serve` API instead (the token defaults to ``HELIX_TOKEN``).
    The backend opens on first use; ``poll`` is the seconds between looks in ``follow`` and ``wait``.

    A job is named by its id or any unique prefix of it.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        server: str | None = None,
        token: str | None = None,
        settings: Settings | None = None,
        poll: float = 0.5,
    ) -> None:
        if server is not None and (database_url is not None or settings is not None):
            raise ConfigError("give a database (database_url or settings) or a server, not both")
        if poll <= 0:
            raise ConfigError(f"poll must be positive, not {poll}")
        self.server = server
        self.poll = poll
        self._database_url = database_url
        self._settings = settings
        self._token = token
        self._control: JobControl | None = None
        self._close: Callable[[], Awaitable[None]] | None = None
        self._closed = False
        self._opening = asyncio.Lock()

    def __repr__(self) -> str:
        where = f"server={self.server!r}" if self.server else "database"
        return f"<AsyncClient {where}{' closed' if self._closed else ''}>"

    # -- lifetime ---------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self._backend()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the database connections or the HTTP client; the client cannot be used again."""
        self._closed = True
        close, self._close, self._control = self._close, None, None
        if close is not None:
            await close()

    async def _backend(self) -> JobControl:
        """The ``JobControl`` to call, opened on first use (once, however many callers race)."""
        if self._control is not None:
            return self._control
        async with self._opening:
            if self._closed:
                raise HelixError("this client is closed; create a new one")
            if self._control is None:
                self._control, self._close = await self._open()
            return self._control

    async def _open(self) -> tuple[JobControl, Callable[[], Awaitable[None]]]:
        if self.server is not None:
            from helixcode.api.client import RemoteManager  # lazy: only remote use needs httpx

            remote = RemoteManager(self.server, self._token or os.environ.get("HELIX_TOKEN"))
            return remote, remote.aclose
        from helixcode.engine.engine import Engine  # lazy: only local use needs SQLAlchemy

        engine = await Engine.open(self._local_settings())
        return engine.jobs, engine.aclose

    def _local_settings(self) -> Settings:
        from helixcode.config import load_settings

        settings = self._settings or load_settings()
        if self._database_url is None:
            return settings
        database = settings.database.model_copy(update={"url": self._database_url})
        return settings.model_copy(update={"database": database})

    def _workdir(self, given: str | os.PathLike[str] | None, spec: JobSpec, base: Path | None) -> str | None:
        """Where the job's tasks run. Locally: ``given`` against the current directory, else the plan's
        ``workdir`` against its file's folder (or the current directory), made absolute, as `helix
        submit` does; a repository URL stays as it is. Through a server the path is on the server's
        host, sent as given (``None``: the plan's, else the server's directory)."""
        if self.server is not None:
            return os.fspath(given) if given is not None else spec.workdir
        from helixcode.engine.manager import job_workdir

        if given is not None:
            return job_workdir(os.fspath(given), Path.cwd())
        return job_workdir(spec.workdir, base or Path.cwd())

    # -- submitting -------------------------------------------------------------------------------

    async def submit(self, plan: Plan, *, workdir: str | os.PathLike[str] | None = None) -> JobSummary:
        """Validate a plan (a ``JobSpec``, plain data, or a YAML/JSON file's path) and create its job,
        in one transaction; its summary. A faulty plan raises ``PlanError`` and writes nothing."""
        spec, base = _spec_of(plan)
        control = await self._backend()
        job = await control.submit(spec, workdir=self._workdir(workdir, spec, base))
        return await control.summary(job.id)

    async def submit_goal(
        self, goal: str, repo: str | os.PathLike[str] | None = None, *, name: str | None = None
    ) -> JobSummary:
        """Create the job `helix run GOAL` starts with: one critical planning task that workers with
        a model expand into a graph, working in ``repo`` (a folder or a repository URL)."""
        control = await self._backend()
        job = await control.submit_goal(goal, workdir=self._goal_workdir(repo), name=name)
        return await control.summary(job.id)

    def _goal_workdir(self, repo: str | os.PathLike[str] | None) -> str | None:
        if self.server is not None:
            return None if repo is None else os.fspath(repo)
        from helixcode.engine.manager import job_workdir

        return job_workdir(None if repo is None else os.fspath(repo), Path.cwd())

    # -- reading ----------------------------------------------------------------------------------

    async def status(self, job: str) -> JobSummary:
        """The job with its task counts, progress and ETA."""
        return await (await self._backend()).summary(job)

    async def jobs(self, limit: int = 50) -> list[JobSummary]:
        """The most recent jobs, newest first."""
        return await (await self._backend()).jobs(limit)

    async def tasks(self, job: str, statuses: Iterable[TaskStatus] | None = None) -> list[Task]:
        """The job's tasks, or only those with one of ``statuses``."""
        wanted = list(statuses) if statuses is not None else None
        return await (await self._backend()).tasks(job, wanted or None)

    async def events(self, job: str, after: int = 0, limit: int = 1000) -> list[Event]:
        """The job's events with an id above ``after``, oldest first (one page of ``limit``)."""
        return await (await self._backend()).events(job, after, limit)

    async def follow(self, job: str, after: int = 0) -> AsyncGenerator[Event, None]:
        """Every event after ``after``, then new ones as they happen, until the job has ended and its
        last event has been given. Polls the event log (as `helix events --follow` and the API's SSE
        stream do): while the job runs only settled events are read, so none is skipped on
        PostgreSQL, where ids can commit out of order; once it has ended, the rest is read as is."""
        control = await self._backend()
        job_id = await control.resolve(job)
        cursor, ended = after, False
        while True:
            batch = await control.events(job_id, cursor, settled=not ended)
            for event in batch:
                yield event
                cursor = event.id
            if batch:
                continue
            if ended:
                return
            ended = (await control.summary(job_id)).job.status.terminal
            if not ended:
                await asyncio.sleep(self.poll)

    async def wait(self, job: str, timeout: float | None = None) -> JobSummary:  # noqa: ASYNC109
        """Block until the job ends (succeeded, failed or cancelled) and give its final summary; a
        paused job is waited on until someone resumes or cancels it. ``TimeoutError`` after
        ``timeout`` seconds, naming the job's status then. (A parameter rather than
        ``asyncio.timeout`` because ``Client.wait``, which blocks, needs one too.)"""
        control = await self._backend()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            summary = await control.summary(job)
            if summary.job.status.terminal:
                return summary
            if deadline is not None and time.monotonic() >= deadline:
                status = summary.job.status.value
                raise TimeoutError(f"job {summary.job.id} still {status} after {timeout:g}s")
            left = self.poll if deadline is None else min(self.poll, deadline - time.monotonic())
            await asyncio.sleep(max(0.0, left))

    async def workers(self, include_stopped: bool = True) -> list[WorkerInfo]:
        """Registered workers with their status, capabilities and last heartbeat."""
        return await (await self._backend()).workers(include_stopped)

    # -- control: each returns the job's summary after the change ---------------------------------

    async def pause(self, job: str, reason: str = "paused by request") -> JobSummary:
        """Stop handing out the job's tasks; running ones finish."""
        return await self._after(lambda c: c.pause(job, reason))

    async def resume(
        self,
        job: str,
        retry: Sequence[str] = (),
        skip: Sequence[str] = (),
        *,
        raise_cost: float | None = None,
        raise_tokens: int | None = None,
    ) -> JobSummary:
        """Resume a paused job, retrying the ``retry`` tasks and skipping the ``skip`` ones, and adding
        ``raise_cost`` USD / ``raise_tokens`` to a budget it reached."""
        return await self._after(
            lambda c: c.resume(job, retry, skip, raise_cost=raise_cost, raise_tokens=raise_tokens)
        )

    async def retry_task(self, job: str, task: str) -> JobSummary:
        """Run a failed task again (its job resumes if it was paused)."""
        return await self.resume(job, retry=[task])

    async def skip_task(self, job: str, task: str) -> JobSummary:
        """Mark a task skipped so its dependents can run (its job resumes if it was paused)."""
        return await self.resume(job, skip=[task])

    async def cancel(self, job: str) -> JobSummary:
        """Cancel the job's unfinished tasks; running workers stop them at their next heartbeat."""
        control = await self._backend()
        job_id = await control.resolve(job)
        await control.cancel(job_id)
        return await control.summary(job_id)

    async def _after(self, change: Callable[[JobControl], Awaitable[str]]) -> JobSummary:
        control = await self._backend()
        return await control.summary(await change(control))
