"""Wake idle workers when tasks become claimable: PostgreSQL ``LISTEN``; polling stays the truth.

LISTEN needs a long-lived connection of its own, outside the pool; when it drops, the listener
reconnects with backoff while the worker goes on polling.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import ClassVar

import psycopg
from sqlalchemy.engine import make_url

from helixcode.store.base import READY_CHANNEL
from helixcode.store.database import application_name

__all__ = ["ReadyListener", "WakeHub", "libpq_dsn"]

log = logging.getLogger(__name__)


def libpq_dsn(url: str) -> str:
    """A SQLAlchemy ``postgresql+psycopg://`` URL as a plain libpq connection string. SQLAlchemy's
    form for several hosts (``?host=a:5432&host=b:5432&target_session_attrs=read-write``, for a
    standby to fail over to) becomes libpq's (``host=a,b port=5432,5432 ...``)."""
    parsed = make_url(url)
    hosts = parsed.query.get("host")
    if not isinstance(hosts, tuple):
        return parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    names, ports = zip(*(h.rpartition(":")[::2] if ":" in h else (h, "5432") for h in hosts), strict=True)
    params = {k: v for k, v in parsed.query.items() if k != "host" and isinstance(v, str)}
    return psycopg.conninfo.make_conninfo(
        dbname=parsed.database,
        user=parsed.username,
        password=parsed.password,
        host=",".join(names),
        port=",".join(ports),
        **params,
    )


class ReadyListener:
    """The LISTEN connection: calls ``on_note`` with each notification's payload, and with None when it
    (re)connects (anything may have become ready while it was away)."""

    def __init__(self, url: str, on_note: Callable[[str | None], None]) -> None:
        self.dsn = libpq_dsn(url)
        self.on_note = on_note
        self.connected = asyncio.Event()

    async def run(self) -> None:
        delay = 0.1
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.dsn, autocommit=True, application_name=application_name()
                ) as conn:
                    await conn.execute(f"LISTEN {READY_CHANNEL}")
                    self.connected.set()
                    delay = 0.1
                    self.on_note(None)
                    async for note in conn.notifies():
                        self.on_note(note.payload)
            except (psycopg.Error, OSError) as exc:
                self.connected.clear()
                log.info("listener disconnected: %s", exc, extra={"action": "worker.listen_error"})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class WakeHub:
    """One LISTEN connection for every worker of a process, and a notification wakes as many idle
    workers as it says tasks became ready (its payload), not all of them: a process that runs many
    worker identities (or a bench that simulates a thousand) must not wake a thousand claims for one
    task. A notification without a count, and every reconnect, wakes all idle workers.

    ``shared(url)`` gives the process's hub for a database (per event loop); workers ``join`` with
    their wake-up event, say when they are ``waiting``, and ``leave`` when they stop; the listener runs
    while anyone is joined."""

    _hubs: ClassVar[dict[tuple[str, int], WakeHub]] = {}

    def __init__(self, url: str) -> None:
        self.listener = ReadyListener(url, self._on_note)
        self.connected = self.listener.connected
        self._members: set[asyncio.Event] = set()
        self._idle: dict[asyncio.Event, None] = {}  # insertion-ordered: the longest waiting first
        self._task: asyncio.Task[None] | None = None
        # Wake-ups a notification asked for while fewer workers were waiting (they were busy claiming):
        # the next ones to wait are woken at once, so a task made ready mid-claim is not left to the
        # safety-net poll.
        self._owed = 0
        self.woken = 0  # workers woken so far (for the bench's "how many does one NOTIFY wake")
        self.notes = 0

    @classmethod
    def shared(cls, url: str) -> WakeHub:
        key = (libpq_dsn(url), id(asyncio.get_running_loop()))
        hub = cls._hubs.get(key)
        if hub is None:
            hub = cls._hubs[key] = cls(url)
        return hub

    def join(self, wake: asyncio.Event) -> None:
        self._members.add(wake)
        if self._task is None:
            self._task = asyncio.create_task(self.listener.run(), name="listener")

    async def leave(self, wake: asyncio.Event) -> None:
        self._members.discard(wake)
        self._idle.pop(wake, None)
        if not self._members and self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self.connected.clear()
            for key, hub in list(self._hubs.items()):
                if hub is self:
                    del self._hubs[key]

    def waiting(self, wake: asyncio.Event) -> None:
        if self._owed > 0:
            self._owed -= 1
            self.woken += 1
            wake.set()
            return
        self._idle[wake] = None

    def busy(self, wake: asyncio.Event) -> None:
        self._idle.pop(wake, None)

    def _on_note(self, payload: str | None) -> None:
        self.notes += 1
        count = int(payload) if payload and payload.isdigit() else None
        wanted = len(self._members) if count is None else count
        busy = len(self._members) - len(self._idle)  # workers not waiting now (claiming, or full)
        chosen = list(self._idle)[:wanted]
        for wake in chosen:
            del self._idle[wake]
            wake.set()
        self.woken += len(chosen)
        self._owed = min(busy, max(self._owed, wanted - len(chosen)))
