"""Apply Alembic revisions to a live engine, safely from many processes at once.

The upgrade runs in one write transaction: on SQLite ``BEGIN IMMEDIATE`` serialises concurrent starters,
on PostgreSQL a transaction-scoped advisory lock does; whoever comes second finds the schema current.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from helixcode.store.database import WRITE, transactional

__all__ = ["alembic_config", "current_revision", "downgrade", "head_revision", "upgrade"]

#: Arbitrary constant naming HelixCode's migration lock among PostgreSQL advisory locks.
MIGRATION_LOCK_ID = 0x48454C4958


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "helixcode.store:migrations")
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _current(sync_conn: sa.Connection) -> str | None:
    return MigrationContext.configure(sync_conn).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


def _run(sync_conn: sa.Connection, action: str, revision: str) -> None:
    if sync_conn.dialect.name == "postgresql":
        sync_conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    fn: Any = getattr(command, action)
    fn(cfg, revision)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; a no-op when it is there already."""
    async with transactional(engine).execution_options(**{WRITE: True}).begin() as conn:
        await conn.run_sync(_run, "upgrade", revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    async with transactional(engine).execution_options(**{WRITE: True}).begin() as conn:
        await conn.run_sync(_run, "downgrade", revision)
