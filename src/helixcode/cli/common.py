"""What every CLI command shares: consoles, the parsed root options, and running async code."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

import typer
from rich.console import Console

from helixcode.config import Settings, load_settings
from helixcode.engine.manager import TaskManager
from helixcode.store.store import Store

__all__ = ["JsonOpt", "console", "err_console", "run", "run_async", "state"]

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]


class State:
    """What the root callback parsed, shared with every command."""

    config_path: Path | None = None
    #: ``--server URL``; ``HELIX_SERVER`` when not given. Read and control commands then use the API.
    server: str | None = None
    _settings: Settings | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings


state = State()


def run(fn: Callable[[TaskManager], Awaitable[T]]) -> T:
    """Open the store, run ``fn`` with a TaskManager, close the store; with a server configured, run
    it with a ``RemoteManager`` (same methods, over the REST API) instead."""

    async def go() -> T:
        if server := state.server or os.environ.get("HELIX_SERVER"):
            from helixcode.api.client import RemoteManager  # lazy: only remote use needs httpx here

            async with RemoteManager(server, os.environ.get("HELIX_TOKEN")) as remote:
                return await fn(cast(TaskManager, remote))
        store = await Store.open(state.settings())
        try:
            return await fn(TaskManager(store))
        finally:
            await store.aclose()

    return asyncio.run(go())


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)
