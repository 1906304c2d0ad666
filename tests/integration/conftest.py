"""Fixtures shared by the integration tests (helpers that are not fixtures live in ``tests.helpers``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from helixcode.config import Settings, TasksSettings, WorkersSettings
from helixcode.store.store import Store
from tests.helpers import OpenStore


@pytest.fixture
async def open_store(settings: Settings) -> AsyncIterator[OpenStore]:
    """Open another Store on the same database, with ``tasks`` settings overridden (and ``workers``
    settings, given as ``workers={...}``)."""
    opened: list[Store] = []

    async def make(*, workers: Mapping[str, Any] | None = None, **tasks_overrides: Any) -> Store:
        tasks_settings = TasksSettings(**{**settings.tasks.model_dump(), **tasks_overrides})
        workers_settings = WorkersSettings(**{**settings.workers.model_dump(), **(workers or {})})
        store = await Store.open(
            Settings(database=settings.database, tasks=tasks_settings, workers=workers_settings)
        )
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.aclose()
