"""``Fleet``: what the workers and the LLM providers are doing, for the dashboard, ``/metrics`` and the
local pool of `helix run`.

The list of workers itself is ``TaskManager.workers`` (part of ``JobControl``, so that a remote
`helix worker list` has it too); these are the views that exist only next to the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from helixcode.domain.metrics import MetricsSnapshot
from helixcode.domain.views import CallError, ProviderUse, RunningTask
from helixcode.store.store import Store

__all__ = ["Fleet"]


class Fleet:
    """Workers' running tasks and resource samples, providers' recent use, the fleet's counters."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def running_tasks(self) -> list[RunningTask]:
        """Every running task with the worker that holds it."""
        return await self._store.running_tasks()

    async def resource_history(
        self, worker_id: str, since: float = 0.0
    ) -> list[tuple[float, dict[str, Any]]]:
        """A worker's resource samples since ``since``, oldest first, by the worker's exact id
        (``TaskManager.worker_history`` finds a worker by name or prefix first)."""
        return await self._store.worker_history(worker_id, since)

    async def provider_use(self, providers: Sequence[str]) -> tuple[list[ProviderUse], list[CallError]]:
        """Per provider, the fleet's recent model calls (see ``store.browse``) and its latest failures."""
        return await self._store.provider_use(providers)

    async def metrics_snapshot(self) -> MetricsSnapshot:
        """The fleet-wide counters ``/metrics`` renders."""
        return await self._store.metrics_snapshot()

    async def has_work(self, capabilities: Iterable[str] = ()) -> bool:
        """Whether tasks that workers with these capabilities could take are still pending: the local
        pool's view stops waiting when there are none."""
        return await self._store.has_work(capabilities)
