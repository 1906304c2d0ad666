"""``Database``: the schema's revision and retention, for `helix db`.

Opening an engine upgrades the schema unless told not to (``Engine.open(settings, upgrade=False)``);
`helix db upgrade` and `helix db current` open it without, to do it or to look.
"""

from __future__ import annotations

from helixcode.store.retention import Pruned
from helixcode.store.store import Store

__all__ = ["Database", "Pruned"]


class Database:
    """Migrations and pruning."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def upgrade(self) -> str | None:
        """Apply pending migrations; the revision the database is at afterwards."""
        await self._store.upgrade()
        return await self.revision()

    async def revision(self) -> str | None:
        """The database's schema revision (None: empty), changing nothing."""
        from helixcode.store import migrate  # lazy: Alembic is heavy, and only `helix db` asks

        return await migrate.current_revision(self._store.engine)

    @staticmethod
    def head() -> str:
        """The newest revision this code knows."""
        from helixcode.store import migrate

        return migrate.head_revision()

    async def prune(self, *, jobs_days: float | None = None, events_days: float | None = None) -> Pruned:
        """Delete, now and until done, what the retention policy no longer keeps (the reaper does the
        same in small steps); ``jobs_days`` / ``events_days`` override the configured ages."""
        return await self._store.prune(jobs_days=jobs_days, events_days=events_days)
