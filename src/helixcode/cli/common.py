"""What every CLI command shares: consoles, the parsed root options, opening the engine (saying which
database it is when that matters), and running async code.

Start-up matters here (`helix progress` runs inside shell tasks, `helix --help` is a newcomer's first
command): nothing heavy is imported at module level, here or in the command modules. The engine (and
the store under it), the LLM layer, the HTTP client and Rich's tables load inside the commands that
use them.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

if TYPE_CHECKING:
    from helixcode.config import Settings
    from helixcode.engine.engine import Engine
    from helixcode.engine.protocol import JobControl

__all__ = ["JsonOpt", "console", "err_console", "open_engine", "run", "run_async", "state"]

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
    #: The database line (see :func:`open_engine`) is printed once per process.
    announced: bool = False
    #: Set by the console-script entry (``app.main``): this process's logging (and tracing) is ours to
    #: set up, from the settings, as soon as they load. Code that runs the app in process (tests) keeps
    #: its own.
    owns_logging: bool = False
    #: The level a command logs at when ``logging.level`` is not configured (see :meth:`log_level`).
    default_log_level: str | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            from helixcode.config import load_settings  # lazy: pydantic-settings costs start-up time

            self._settings = load_settings(self.config_path)
            self._configure_logging()
            self._configure_tracing()
        return self._settings

    def log_level(self, level: str) -> None:
        """Make ``level`` this command's default: used unless ``logging.level`` is configured (in a
        file or ``HELIX_LOGGING_LEVEL``). ``helix worker`` logs at info, so that it shows its work."""
        self.default_log_level = level
        if self._settings is not None:
            self._configure_logging()

    def _configure_logging(self) -> None:
        if not self.owns_logging or self._settings is None:
            return
        from helixcode.logsetup import configure_logging

        chosen = self._settings.logging
        if self.default_log_level is not None and "level" not in chosen.model_fields_set:
            chosen = chosen.model_copy(update={"level": self.default_log_level})
        configure_logging(chosen)

    def _configure_tracing(self) -> None:
        """Traces, when ``[tracing] enabled``: this process's spans continue ``TRACEPARENT`` if it is
        set (a CI job's trace; a shell task's, for the commands it runs). Exported at exit."""
        if not self.owns_logging or self._settings is None or not self._settings.tracing.enabled:
            return
        from helixcode import tracing  # lazy: OpenTelemetry loads only when tracing is on

        tracing.configure(self._settings.tracing)
        tracing.adopt_environment()

    def remote(self) -> str | None:
        """The REST API to use instead of the database, if any."""
        return self.server or os.environ.get("HELIX_SERVER")


state = State()


async def open_engine(*, upgrade: bool = True) -> Engine:
    """Open the engine over the configured database. When the database was found rather than configured
    (see ``config.find_database``), say which file it is if it was just created or holds no job: a
    newcomer who runs a command in the wrong folder sees it at once (one line, on stderr)."""
    from helixcode.engine.engine import Engine

    settings = state.settings()
    engine = await Engine.open(settings, upgrade=upgrade)
    if settings.discovered_database is not None and not state.announced:
        state.announced = True
        path, found = settings.discovered_database
        if not found:
            err_console.print(
                f"database: created {path} (none in this folder or a parent)", highlight=False, soft_wrap=True
            )
        elif not await engine.jobs.jobs(1):
            err_console.print(f"database: {path} (no jobs yet)", highlight=False, soft_wrap=True)
    return engine


def run(fn: Callable[[JobControl], Awaitable[T]]) -> T:
    """Open the engine, run ``fn`` with its TaskManager, close it; with a server configured, run
    it with a ``RemoteManager`` (the same ``JobControl`` protocol, over the REST API) instead."""

    async def go() -> T:
        if server := state.remote():
            from helixcode.api.client import RemoteManager  # lazy: only remote use needs httpx here

            async with RemoteManager(server, os.environ.get("HELIX_TOKEN")) as remote:
                return await fn(remote)
        engine = await open_engine()
        try:
            return await fn(engine.jobs)
        finally:
            await engine.aclose()

    return run_async(go())


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    import asyncio  # lazy: commands that never run async code start faster

    return asyncio.run(coro)
