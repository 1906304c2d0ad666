"""What the `helix watch` app is tested against: the test's database through a TaskManager, or a real
`helix serve` on it through a RemoteManager (an operator's token), the two ``JobControl``s."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from helixcode.api.client import RemoteManager
from helixcode.config import Settings
from helixcode.engine.manager import TaskManager
from helixcode.engine.protocol import JobControl
from helixcode.store.store import Store
from tests.integration.api.conftest import start_api

#: ``async with control() as c``: the JobControl the app under test uses.
Control = Callable[[], AbstractAsyncContextManager[JobControl]]


@pytest.fixture(params=["local", "api"])
def control(
    request: pytest.FixtureRequest, settings: Settings, store: Store, tmp_path: Path
) -> Iterator[Control]:
    """The test's ``store`` directly, or a real API server on its database."""
    if request.param == "local":

        @contextlib.asynccontextmanager
        async def local() -> AsyncIterator[JobControl]:
            yield TaskManager(store)

        yield local
        return
    for api in start_api(settings.database.url, tmp_path):

        @contextlib.asynccontextmanager
        async def remote(
            server: str = api.base_url, token: str = api.tokens["operator"]
        ) -> AsyncIterator[JobControl]:
            async with RemoteManager(server, token) as manager:
                yield manager

        yield remote
