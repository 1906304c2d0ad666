"""Wake idle workers when tasks become claimable: PostgreSQL ``LISTEN``; polling stays the truth.

LISTEN needs a long-lived connection of its own, outside the pool; when it drops, the listener
reconnects with backoff while the worker goes on polling.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg
from sqlalchemy.engine import make_url

from helixcode.store.base import READY_CHANNEL
from helixcode.store.database import application_name

__all__ = ["ReadyListener", "libpq_dsn"]

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
    def __init__(self, url: str, wake: asyncio.Event) -> None:
        self.dsn = libpq_dsn(url)
        self.wake = wake
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
                    self.wake.set()  # anything that became ready while we were away
                    async for _note in conn.notifies():
                        self.wake.set()
            except (psycopg.Error, OSError) as exc:
                self.connected.clear()
                log.info("listener disconnected: %s", exc, extra={"action": "worker.listen_error"})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
