"""A real `helix serve` app under uvicorn on a free port, in a thread, on both databases.

Tokens of every role are created in the store before the server starts; ``api.client(role)`` gives an
httpx client that sends that role's token (``role=None``: no token at all).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn

from helixcode.api import create_asgi
from helixcode.config import DatabaseSettings, LLMSettings, ProviderSettings, Settings, TasksSettings
from helixcode.store.store import Store


@dataclass
class Api:
    base_url: str
    settings: Settings
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, role: str | None = "admin", **kwargs: object) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]


class ServerThread:
    """uvicorn on an already bound socket, so the port is known before it starts."""

    def __init__(self, app: object) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)  # type: ignore[arg-type]
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve([self.sock])), daemon=True
        )

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def api_settings(db_url: str) -> Settings:
    return Settings(
        database=DatabaseSettings(url=db_url),
        tasks=TasksSettings(lease_ttl=5.0, heartbeat_interval=0.5, backoff_base=0.05, backoff_cap=0.5),
        llm=LLMSettings(embedded=False, health_interval=3600),
        # A provider nobody listens to: its listing must say "unhealthy", quickly, without a model.
        providers={
            "offline": ProviderSettings(
                type="openai", base_url="http://127.0.0.1:9/v1", models=["m1"], connect_timeout=0.5, timeout=1
            )
        },
    )


async def _make_tokens(settings: Settings) -> dict[str, str]:
    store = await Store.open(settings)
    try:
        return {
            role: (await store.create_token(f"test-{role}", role))[1]
            for role in ("admin", "operator", "viewer")
        }  # type: ignore[arg-type]
    finally:
        await store.aclose()


def start_api(db_url: str, tmp_path: Path) -> Iterator[Api]:
    settings = api_settings(db_url)
    tokens = asyncio.run(_make_tokens(settings))
    with ServerThread(create_asgi(settings, workdir=tmp_path, sse_poll=0.05)) as server:
        yield Api(f"http://127.0.0.1:{server.port}", settings, tokens)


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[Api]:
    """The API on a fresh database, once per engine."""
    yield from start_api(db_url, tmp_path)


@pytest.fixture
def sqlite_api(tmp_path: Path) -> Iterator[Api]:
    """The API on SQLite only, for tests about the HTTP surface rather than the database."""
    yield from start_api(f"sqlite+aiosqlite:///{tmp_path / 'helix.db'}", tmp_path)


@pytest.fixture
async def admin(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client("admin") as client:
        yield client


PLAN = {
    "name": "api-demo",
    "tasks": [
        {"id": "a", "type": "building", "title": "A", "run": {"builtin": "noop"}},
        {"id": "b", "type": "testing", "title": "B", "depends_on": ["a"], "run": {"builtin": "noop"}},
        {
            "id": "c",
            "type": "testing",
            "title": "C",
            "depends_on": ["a"],
            "run": {"builtin": "fail"},
            "max_attempts": 1,
        },
    ],
}
