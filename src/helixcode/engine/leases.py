"""``Leases``: what a command run inside a task (`helix checkpoint`, `helix progress`) writes with the
task's lease, named by ``HELIX_TASK_ID`` and ``HELIX_LEASE_TOKEN``.

Every such write names the lease token, and the store refuses a stale one (fencing): a task whose
worker lost its lease cannot write over its successor's work.
"""

from __future__ import annotations

from typing import Any

from helixcode.store.store import Store

__all__ = ["Leases"]


class Leases:
    """Writes under a task's lease."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def save_checkpoint(self, task_id: int, token: str, name: str, data: Any) -> None:
        """Keep ``data`` (JSON) as the task's latest checkpoint; the next attempt starts from it."""
        await self._store.save_checkpoint(task_id, token, name, data)

    async def report_progress(
        self, task_id: int, token: str, fraction: float, message: str | None = None
    ) -> None:
        """The task's progress, 0 to 1 (clamped), with what is happening."""
        await self._store.report_progress(task_id, token, fraction, message)
