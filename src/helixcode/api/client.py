"""``RemoteManager``: the TaskManager's methods over the REST API instead of the database.

Both satisfy ``engine.protocol.JobControl``, which the CLI and ``helixcode.Client`` are written against.

`helix --server URL` (or ``HELIX_SERVER``) makes the read and control commands use it, with the token
from ``HELIX_TOKEN``. Answers become the same domain records the engine returns; problem documents
become the engine's errors again (404 -> NotFound, 422 -> PlanError, 409 -> SchedulerError), so the CLI
prints them and exits the same way whichever path it took.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from helixcode import tracing
from helixcode.api.app import API_PREFIX
from helixcode.domain.enums import Criticality, JobStatus, Priority, TaskStatus, TaskType
from helixcode.domain.models import Event, Job, JobSummary, Task
from helixcode.domain.plan import JobSpec
from helixcode.domain.records import AttemptRecord, WorkerInfo
from helixcode.errors import (
    AccessDenied,
    Forbidden,
    HelixError,
    NotFound,
    PlanError,
    RemoteError,
    SchedulerError,
)

__all__ = ["RemoteManager", "event_from_dict", "summary_from_dict", "task_from_dict"]

_JOB_FIELDS = (
    "id",
    "name",
    "description",
    "workdir",
    "created_at",
    "updated_at",
    "finished_at",
    "pause_reason",
)


def summary_from_dict(data: Mapping[str, Any]) -> JobSummary:
    job = Job(status=JobStatus(data["status"]), **{k: data[k] for k in _JOB_FIELDS})
    counts = {TaskStatus(k): int(v) for k, v in data["counts"].items()}
    return JobSummary(
        job=job,
        counts=counts,
        progress=data["progress"],
        eta_seconds=data["eta_seconds"],
        tokens=int(data.get("tokens") or 0),
        cost_usd=data.get("cost_usd"),
    )


def task_from_dict(data: Mapping[str, Any]) -> Task:
    fields = dict(data)
    fields.update(
        type=TaskType(data["type"]),
        priority=Priority(data["priority"]),
        criticality=Criticality(data["criticality"]),
        status=TaskStatus(data["status"]),
        requires=tuple(data["requires"]),
        depends_on=tuple(data["depends_on"]),
    )
    return Task(**fields)


def event_from_dict(data: Mapping[str, Any]) -> Event:
    return Event(**dict(data))


def _error(response: httpx.Response) -> HelixError:
    try:
        problem = response.json()
    except ValueError:
        problem = {"detail": response.text[:500]}
    if not isinstance(problem, dict):
        problem = {"detail": str(problem)[:500]}
    detail = str(problem.get("detail") or problem.get("title") or f"HTTP {response.status_code}")
    match response.status_code:
        case 401:
            return AccessDenied(f"{detail} (set HELIX_TOKEN)")
        case 403:
            return Forbidden(detail)
        case 404:
            return NotFound(detail)
        case 409:
            return SchedulerError(detail)
        case 422:
            faults = [f"{e.get('field')}: {e.get('message')}" for e in problem.get("errors") or []]
            return PlanError(faults or [detail])
    return RemoteError(response.status_code, problem)


class RemoteManager:
    """Async HTTP client with the TaskManager's method names; use as ``async with``."""

    def __init__(
        self, server: str, token: str | None = None, *, timeout: float = 30.0, transport: Any = None
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.server = server.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.server + API_PREFIX, headers=headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        """One request; traced, a client span whose context the server's request span continues."""
        with tracing.http_span(method, f"{self.server}{API_PREFIX}{url}") as span:
            try:
                response = await self._http.request(method, url, headers=tracing.headers(), **kwargs)
            except httpx.HTTPError as exc:
                raise RemoteError(0, {"detail": f"cannot reach {self.server}: {exc}"}) from exc
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                tracing.failed(span, str(response.status_code))
                raise _error(response)
        return response.json() if response.content else None

    # -- the TaskManager surface ------------------------------------------------------------------

    async def submit(self, spec: JobSpec, *, workdir: Path | str | None) -> Job:
        """``workdir`` is on the server's host; ``None``: the plan's, else the server's directory."""
        plan = spec.model_dump(mode="json", exclude_none=True)
        body = {"plan": plan, "workdir": None if workdir is None else str(workdir)}
        return summary_from_dict(await self._call("POST", "/jobs", json=body)).job

    async def submit_goal(
        self, goal: str, *, workdir: Path | str | None = None, name: str | None = None
    ) -> Job:
        body = {"goal": goal, "workdir": str(workdir) if workdir else None, "name": name}
        return summary_from_dict(await self._call("POST", "/jobs", json=body)).job

    async def resolve(self, ref: str) -> str:
        return (await self.summary(ref)).job.id

    async def summary(self, ref: str) -> JobSummary:
        return summary_from_dict(await self._call("GET", f"/jobs/{ref}"))

    async def jobs(self, limit: int = 50) -> list[JobSummary]:
        return [summary_from_dict(d) for d in await self._call("GET", "/jobs", params={"limit": limit})]

    async def tasks(self, ref: str, statuses: list[TaskStatus] | None = None) -> list[Task]:
        params = {"status": [s.value for s in statuses]} if statuses else None
        return [task_from_dict(d) for d in await self._call("GET", f"/jobs/{ref}/tasks", params=params)]

    async def task_attempts(self, ref: str, key: str) -> tuple[Task, list[AttemptRecord]]:
        """A task and its finished attempts, oldest first (`helix logs`)."""
        detail = await self._call("GET", f"/jobs/{ref}/tasks/{key}")
        return task_from_dict(detail["task"]), [AttemptRecord(**a) for a in detail["attempts"]]

    async def events(
        self, ref: str, after_id: int = 0, limit: int = 1000, *, settled: bool = False
    ) -> list[Event]:
        params: dict[str, Any] = {"after": after_id, "limit": limit}
        if settled:
            params["settled"] = "true"
        page = await self._call("GET", f"/jobs/{ref}/events", params=params)
        return [event_from_dict(d) for d in page]

    async def pause(self, ref: str, reason: str = "paused by request") -> str:
        return str((await self._call("POST", f"/jobs/{ref}/pause", json={"reason": reason}))["id"])

    async def resume(
        self,
        ref: str,
        retry: Sequence[str] = (),
        skip: Sequence[str] = (),
        *,
        raise_cost: float | None = None,
        raise_tokens: int | None = None,
    ) -> str:
        body: dict[str, Any] = {"retry": list(retry), "skip": list(skip)}
        if raise_cost:
            body["raise_cost"] = raise_cost
        if raise_tokens:
            body["raise_tokens"] = raise_tokens
        return str((await self._call("POST", f"/jobs/{ref}/resume", json=body))["id"])

    async def cancel(self, ref: str) -> int:
        return int((await self._call("POST", f"/jobs/{ref}/cancel"))["cancelled"])

    async def workers(self, include_stopped: bool = True) -> list[WorkerInfo]:
        rows = await self._call("GET", "/workers", params={"all": "true" if include_stopped else "false"})
        return [WorkerInfo(**{**row, "capabilities": tuple(row["capabilities"])}) for row in rows]

    async def worker_history(
        self, ref: str, since: float = 0.0
    ) -> tuple[WorkerInfo, list[tuple[float, dict[str, Any]]]]:
        body = await self._call("GET", f"/workers/{quote(ref, safe='')}/history", params={"since": since})
        row = body["worker"]
        worker = WorkerInfo(**{**row, "capabilities": tuple(row["capabilities"])})
        return worker, [(s["at"], s["resources"]) for s in body["samples"]]

    async def split(self, ref: str, key: str, items: Mapping[str, float], **_: Any) -> list[str]:
        raise HelixError("`helix split` works against the database only; unset HELIX_SERVER to use it")
