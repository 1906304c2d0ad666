"""``Notifications``: the outbox of notifications (`helix notify list`): what was sent where, what
waits for a retry and why, what was given up. Delivery itself is the worker's (``worker.notify``)."""

from __future__ import annotations

from helixcode.domain.notify import NotificationRecord
from helixcode.store.store import Store

__all__ = ["Notifications"]


class Notifications:
    """Reads of the outbox."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def list_notifications(
        self, *, status: str | None = None, job_id: str | None = None, limit: int = 50
    ) -> list[NotificationRecord]:
        """Newest first, optionally only those in one state or about one job."""
        return await self._store.list_notifications(status=status, job_id=job_id, limit=limit)
