"""``Engine``: what an edge (the CLI, the API and its dashboard, MCP, the Python client) opens to reach
the system of record, calls, and closes.

The edges never call the store: they open an ``Engine`` from their settings and use its facades,
each one concept in its own module, each a thin layer over the store where that is all there is::

    jobs           TaskManager   submit, inspect and control jobs (``JobControl``, remote too)
    tasks          TaskViews     a task's attempts, checkpoints, events; a job's outputs
    browse         Browse        what the web dashboard reads, by job id
    fleet          Fleet         workers' running tasks and samples, providers' use, the counters
    tokens         Tokens        the API's bearer tokens
    notifications  Notifications the outbox
    leases         Leases        writes under a task's lease (`helix checkpoint`, `helix progress`)
    database       Database      the schema's revision, pruning

Example::

    async with await Engine.open(settings) as engine:
        job = await engine.jobs.submit(spec, workdir=None)
        print(await engine.tasks.task_outputs(job.id))
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Self

from helixcode.config import Settings
from helixcode.store.store import Store

if TYPE_CHECKING:
    from helixcode.engine.browse import Browse
    from helixcode.engine.database import Database
    from helixcode.engine.fleet import Fleet
    from helixcode.engine.leases import Leases
    from helixcode.engine.manager import TaskManager
    from helixcode.engine.notifications import Notifications
    from helixcode.engine.tasks import TaskViews
    from helixcode.engine.tokens import Tokens

__all__ = ["Engine"]


class Engine:
    """The engine's facades over one open store; ``aclose`` (or ``async with``) closes it."""

    def __init__(self, store: Store) -> None:
        #: The store itself, for the worker runtime (``worker.runtime.Worker``), which works below the
        #: facades; an edge passes it on and calls the facades.
        self.store = store

    # Each facade is built, and its module imported, on first use: `helix progress` runs inside shell
    # tasks, many times per task, and needs only ``leases`` (not the plan models, Alembic or tracing
    # that the others import).

    @cached_property
    def jobs(self) -> TaskManager:
        from helixcode.engine.manager import TaskManager

        return TaskManager(self.store)

    @cached_property
    def tasks(self) -> TaskViews:
        from helixcode.engine.tasks import TaskViews

        return TaskViews(self.store)

    @cached_property
    def browse(self) -> Browse:
        from helixcode.engine.browse import Browse

        return Browse(self.store)

    @cached_property
    def fleet(self) -> Fleet:
        from helixcode.engine.fleet import Fleet

        return Fleet(self.store)

    @cached_property
    def tokens(self) -> Tokens:
        from helixcode.engine.tokens import Tokens

        return Tokens(self.store)

    @cached_property
    def notifications(self) -> Notifications:
        from helixcode.engine.notifications import Notifications

        return Notifications(self.store)

    @cached_property
    def leases(self) -> Leases:
        from helixcode.engine.leases import Leases

        return Leases(self.store)

    @cached_property
    def database(self) -> Database:
        from helixcode.engine.database import Database

        return Database(self.store)

    @classmethod
    async def open(cls, settings: Settings, *, upgrade: bool = True) -> Self:
        """Connect to the configured database and bring its schema up to date unless told not to."""
        return cls(await Store.open(settings, upgrade=upgrade))

    async def now(self) -> float:
        """The database's clock (sessions and timelines use it, since hosts' clocks drift); a cheap
        round trip, so also what readiness checks ask."""
        return await self.store.now()

    async def aclose(self) -> None:
        await self.store.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
