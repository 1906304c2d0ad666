"""A real `helix mcp` process per test (stdio or streamable HTTP), reached with the official SDK's client."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from helixcode.config import DatabaseSettings, Settings
from helixcode.store.store import Store
from tests.helpers import free_port

HELIX = shutil.which("helix", path=str(Path(sys.executable).parent)) or "helix"

Connect = Callable[[str | None], AbstractAsyncContextManager[ClientSession]]


def _env(db_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELIX_")}
    env.update({"HELIX_DATABASE_URL": db_url, "XDG_CONFIG_HOME": str(tmp_path / ".xdg")})
    return env


@pytest.fixture
def tokens(db_url: str) -> dict[str, str]:
    async def make() -> dict[str, str]:
        async with await Store.open(Settings(database=DatabaseSettings(url=db_url))) as store:
            return {r: (await store.create_token(r, r))[1] for r in ("viewer", "operator")}  # type: ignore[arg-type]

    return asyncio.run(make())


@pytest.fixture
def stdio_session(db_url: str, tmp_path: Path) -> Connect:
    @asynccontextmanager
    async def connect(_token: str | None = None) -> AsyncIterator[ClientSession]:
        params = StdioServerParameters(command=HELIX, args=["mcp"], env=_env(db_url, tmp_path), cwd=tmp_path)
        with (tmp_path / "mcp-stderr.log").open("w") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                yield session

    return connect


@pytest.fixture
def http_server(db_url: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "mcp-http.log").open("w")
    proc = subprocess.Popen(
        [HELIX, "mcp", "--http", "--port", str(port)],
        env=_env(db_url, tmp_path),
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp_path / "mcp-http.log").read_text()) from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture
def http_session(http_server: str) -> Connect:
    @asynccontextmanager
    async def connect(token: str | None) -> AsyncIterator[ClientSession]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with (
            create_mcp_http_client(headers=headers) as http,
            streamable_http_client(http_server, http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session

    return connect
