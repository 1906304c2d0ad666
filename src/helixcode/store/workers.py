"""Workers: registration, heartbeats (which renew leases in the same transaction), listing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from helixcode.domain.models import Beat, LeaseState
from helixcode.domain.records import WorkerInfo
from helixcode.store.database import db_now
from helixcode.store.leases import LeaseOps
from helixcode.store.tables import tasks, worker_heartbeats, workers

LIVE = ("active", "draining")

__all__ = ["WorkerOps"]


class WorkerOps(LeaseOps):
    """Workers: registration, heartbeats (renewing leases), the capacity they give, listing."""

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
        self, beats: Sequence[Beat], resources: Mapping[str, Any] | None = None
    ) -> dict[str, dict[int, LeaseState]]:
        """Record that these workers live (with the process's resource sample) and renew their leases,
        in one transaction for them all; returns each worker's lease states."""
        if not beats:
            return {}
        leases = [(task, token, b.worker_id) for b in beats for task, token in b.leases.items()]
        marks = self._alive(beats, resources)
        if not leases and self.dialect == "postgresql":
            # Idle workers' beat: a statement in autocommit, one round trip (a fleet of idle workers
            # should cost the database next to nothing).
            async with self._statement() as conn:
                for mark in marks:
                    await conn.execute(mark)
            return {b.worker_id: {} for b in beats}
        async with self._write() as conn:
            for mark in marks:
                await conn.execute(mark)
            states = await self._renew(conn, leases)
        return {b.worker_id: {task: states[task] for task in b.leases} for b in beats}

    def _alive(self, beats: Sequence[Beat], resources: Mapping[str, Any] | None) -> list[sa.Executable]:
        """The statements that mark ``beats``' workers alive and keep a resource sample of each: one per
        status the beats set (almost always one), each one statement on PostgreSQL (the sample is
        inserted for the rows the update found), two on SQLite."""
        by_status: dict[str | None, list[str]] = {}
        for b in beats:
            by_status.setdefault(b.status, []).append(b.worker_id)
        marks: list[sa.Executable] = []
        for status, ids in by_status.items():
            values: dict[str, Any] = {"last_heartbeat_at": db_now()}
            if resources is not None:
                values["resources"] = dict(resources)
            if status is not None:
                values["status"] = status
            mark = workers.update().where(workers.c.id.in_(ids)).values(**values)
            if resources is None:
                marks.append(mark)
                continue
            sample = sa.bindparam("resources", dict(resources), type_=worker_heartbeats.c.resources.type)
            columns = ["worker_id", "at", "resources"]
            if self.dialect == "postgresql":
                marked = mark.returning(workers.c.id).cte("marked")
                select = sa.select(marked.c.id, db_now(), sample)
                marks.append(worker_heartbeats.insert().from_select(columns, select).add_cte(marked))
            else:
                select = sa.select(workers.c.id, db_now(), sample).where(workers.c.id.in_(ids))
                marks += [mark, worker_heartbeats.insert().from_select(columns, select)]
        return marks

    async def worker_history(self, worker_id: str, since: float = 0.0) -> list[tuple[float, dict[str, Any]]]:
        """Resource samples of one worker, oldest first, for plots."""
        stmt = (
            sa.select(worker_heartbeats.c.at, worker_heartbeats.c.resources)
            .where(worker_heartbeats.c.worker_id == worker_id, worker_heartbeats.c.at >= since)
            .order_by(worker_heartbeats.c.at)
        )
        async with self._read() as conn:
            return [(at, dict(res)) for at, res in (await conn.execute(stmt)).all()]

    async def healthy_capacity(self) -> int:
        async with self._read() as conn:
            return await self._capacity(conn, await self._now(conn))

    async def _capacity(self, conn: AsyncConnection, now: float) -> int:
        total = await conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(workers.c.concurrency), 0)).where(
                workers.c.status == "active",
                workers.c.last_heartbeat_at >= now - self.settings.workers.lost_after,
            )
        )
        return int(total.scalar_one())

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
