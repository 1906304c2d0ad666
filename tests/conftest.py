"""Shared fixtures: a fresh database per test, on SQLite always and on PostgreSQL when reachable.

PostgreSQL tests clone a migrated template database (fast); they are skipped when the server cannot be
reached, unless ``HELIXTEST_REQUIRE_POSTGRES=1`` (CI sets it), in which case they fail; the same for
model-backed tests (marked ``llm``) under ``HELIXTEST_REQUIRE_LLM=1``. Tests of the
agent sandbox take the ``sandbox`` fixture: skipped where bubblewrap cannot run here, failed instead
under ``HELIXTEST_REQUIRE_SANDBOX=1`` (CI).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from helixcode.agent.sandbox import Probe, Sandbox
from helixcode.config import DatabaseSettings, Settings, TasksSettings
from helixcode.store.store import Store
from tests.run_counter import RunCounter

PG_ADMIN_DSN = os.environ.get("HELIXTEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("HELIXTEST_REQUIRE_POSTGRES") == "1"
REQUIRE_SANDBOX = os.environ.get("HELIXTEST_REQUIRE_SANDBOX") == "1"
REQUIRE_LLM = os.environ.get("HELIXTEST_REQUIRE_LLM") == "1"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under ``HELIXTEST_REQUIRE_LLM=1`` (CI), a model-backed test (marked ``llm``) that would skip
    fails instead: CI must never pass because the model was missing."""
    report = yield
    if REQUIRE_LLM and report.skipped and item.get_closest_marker("llm") is not None:
        report.outcome = "failed"
        report.longrepr = f"HELIXTEST_REQUIRE_LLM=1 but the model-backed test would skip: {report.longrepr}"
    return report


@pytest.fixture
def run_counter() -> Iterator[RunCounter]:
    """A counter on loopback for tests (run in the sandbox) that must count their own runs."""
    counter = RunCounter().start()
    yield counter
    counter.stop()


@pytest.fixture
def sandbox() -> Probe:
    """The sandbox works here (its probe), or the test skips; under HELIXTEST_REQUIRE_SANDBOX, fails."""
    probe = Sandbox().probe()
    if probe.backend is None:
        if REQUIRE_SANDBOX:
            pytest.fail(f"HELIXTEST_REQUIRE_SANDBOX=1 but {probe.line()}")
        pytest.skip(probe.line())
    return probe


def _pg_reachable() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]


def pg_url(dbname: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(PG_ADMIN_DSN)
    user = info.get("user", "postgres")
    host = info.get("host", "127.0.0.1")
    port = info.get("port", "5432")
    return f"postgresql+psycopg://{user}@{host}:{port}/{dbname}"


def _admin(statement: sql.Composable) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated database that per-test databases are cloned from."""
    problem = _pg_reachable()
    if problem is not None:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required but unreachable: {problem}")
        pytest.skip(f"PostgreSQL unreachable: {problem}")
    name = f"helix_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    _admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    import asyncio

    async def migrate() -> None:
        store = await Store.open(Settings(database=DatabaseSettings(url=pg_url(name))))
        await store.aclose()

    asyncio.run(migrate())
    yield name
    _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def pg_database(pg_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database URL for one test."""
    name = f"helix_t_{uuid.uuid4().hex[:12]}"
    _admin(
        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(pg_template))
    )
    yield pg_url(name)
    _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def empty_pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database with no schema at all (for migration tests)."""
    problem = _pg_reachable()
    if problem is not None:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required but unreachable: {problem}")
        pytest.skip(f"PostgreSQL unreachable: {problem}")
    name = f"helix_e_{uuid.uuid4().hex[:12]}"
    _admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield pg_url(name)
    _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL, once per engine."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "helix.db")
    return str(request.getfixturevalue("pg_database"))


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(
        database=DatabaseSettings(url=db_url),
        tasks=TasksSettings(lease_ttl=5.0, heartbeat_interval=0.5, backoff_base=0.05, backoff_cap=0.5),
    )


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    s = await Store.open(settings)
    try:
        yield s
    finally:
        await s.aclose()
