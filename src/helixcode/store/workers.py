"""Workers: registration, heartbeats (which renew leases in the same transaction), listing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from helixcode.domain.models import LeaseState
from helixcode.store.base import StoreBase
from helixcode.store.queue import QueueOps
from helixcode.store.tables import tasks, workers

__all__ = ["WorkerInfo", "WorkerOps"]


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    id: str
    name: str
    host: str
    pid: int
    version: str
    capabilities: tuple[str, ...]
    resources: dict[str, Any]
    concurrency: int
    status: str = "active"
    started_at: float | None = None
    last_heartbeat_at: float | None = None
    stopped_at: float | None = None
    running: int = 0

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


class WorkerOps(QueueOps, StoreBase):
    async def register_worker(self, info: WorkerInfo) -> None:
        async with self._write() as conn:
            now = await self._now(conn)
            await conn.execute(
                workers.insert().values(
                    id=info.id,
                    name=info.name,
                    host=info.host,
                    pid=info.pid,
                    version=info.version,
                    status="active",
                    capabilities=list(info.capabilities),
                    resources=info.resources,
                    concurrency=info.concurrency,
                    started_at=now,
                    last_heartbeat_at=now,
                )
            )

    async def heartbeat(
        self,
        worker_id: str,
        leases: Mapping[int, str],
        resources: Mapping[str, Any] | None = None,
        status: str | None = None,
    ) -> dict[int, LeaseState]:
        """Record that the worker is alive and renew its leases, in one transaction."""
        values: dict[str, Any] = {"last_heartbeat_at": self._clock()}
        if resources is not None:
            values["resources"] = dict(resources)
        if status is not None:
            values["status"] = status
        async with self._write() as conn:
            await conn.execute(workers.update().where(workers.c.id == worker_id).values(**values))
            return await self._renew(conn, worker_id, leases)

    async def deregister_worker(self, worker_id: str) -> None:
        async with self._write() as conn:
            now = await self._now(conn)
            await conn.execute(
                workers.update().where(workers.c.id == worker_id).values(status="stopped", stopped_at=now)
            )

    async def list_workers(self, include_stopped: bool = True) -> list[WorkerInfo]:
        running = (
            sa.select(sa.func.count())
            .where(tasks.c.lease_owner == workers.c.id, tasks.c.status == "running")
            .scalar_subquery()
        )
        stmt = sa.select(workers, running.label("running")).order_by(workers.c.started_at)
        if not include_stopped:
            stmt = stmt.where(workers.c.status != "stopped")
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [
            WorkerInfo(
                id=r["id"],
                name=r["name"],
                host=r["host"],
                pid=r["pid"],
                version=r["version"],
                capabilities=tuple(r["capabilities"]),
                resources=dict(r["resources"]),
                concurrency=r["concurrency"],
                status=r["status"],
                started_at=r["started_at"],
                last_heartbeat_at=r["last_heartbeat_at"],
                stopped_at=r["stopped_at"],
                running=r["running"],
            )
            for r in rows
        ]
