"""The REST API's application factory: ``create_app(settings)`` gives an ASGI app for uvicorn.

The app opens one ``Engine`` (the engine's facades over one store) for its lifetime; the LLM manager
is built on first use (only ``/providers`` and metrics need it). Every route but ``/healthz`` and
``/readyz`` requires a bearer token; the OpenAPI schema and its docs page describe the API and are
public. The web dashboard (``api.dashboard``) is served beside the API at ``/``, with browser
sessions instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.types import ASGIApp

from helixcode import __version__, tracing
from helixcode.api import dashboard
from helixcode.api.limits import BodyLimit
from helixcode.api.problems import PROBLEM_RESPONSES, install_handlers
from helixcode.api.routers import admin, health, jobs, tasks
from helixcode.config import Settings
from helixcode.engine.engine import Engine
from helixcode.llm.manager import LLMManager
from helixcode.llm.registry import build_manager

__all__ = ["API_PREFIX", "create_app", "create_asgi"]

API_PREFIX = "/api/v1"


class _LazyLLM:
    """Build the LLM manager on first use; a configuration error surfaces on that request."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.manager: LLMManager | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> LLMManager | None:
        async with self._lock:
            if self.manager is None:
                self.manager = build_manager(self.settings)
            return self.manager

    async def aclose(self) -> None:
        if self.manager is not None:
            await self.manager.aclose()


def create_app(
    settings: Settings, *, workdir: Path | None = None, sse_poll: float = 0.5, sse_keepalive: float = 15.0
) -> FastAPI:
    """The FastAPI app (without the body limit; see ``create_asgi`` for what `helix serve` runs)."""
    lazy = _LazyLLM(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = await Engine.open(settings)
        app.state.engine = engine
        app.state.manager = engine.jobs
        feeds = dashboard.start(app, engine.browse, sse_poll)
        try:
            yield
        finally:
            await feeds.aclose()
            await lazy.aclose()
            await engine.aclose()

    app = FastAPI(
        title="HelixCode API",
        version=__version__,
        description="Submit, watch and control HelixCode jobs. Every route but `/healthz` and `/readyz` "
        "needs `Authorization: Bearer TOKEN` (from `helix token create`); errors are RFC 9457 problems.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
        telemetry=_telemetry(),
    )
    app.state.workdir = (workdir or Path.cwd()).resolve()
    app.state.settings_sse = {"poll": sse_poll, "keepalive": sse_keepalive}
    app.state.llm = lazy
    install_handlers(app)
    v1 = APIRouter(prefix=API_PREFIX, responses=PROBLEM_RESPONSES)
    v1.include_router(jobs.router)
    v1.include_router(tasks.router)
    v1.include_router(admin.router)
    app.include_router(v1)
    app.include_router(health.router)
    dashboard.install(app, settings)

    return app


def _telemetry() -> TelemetryConfig | None:
    """FastAPI's own request spans (``POST /api/v1/jobs``, continuing an incoming ``traceparent``) go to
    this process's tracer provider when it traces (``helixcode.tracing``, configured before the app is
    created); None leaves FastAPI's defaults, which record nothing unless an embedder set a global one."""
    provider = tracing.tracer_provider()
    if provider is None:
        return None
    return TelemetryConfig(
        tracer_provider=provider,
        tracing=True,
        metrics=False,  # /metrics serves the fleet's counters (Prometheus), not this process's
        logs=False,
        operation_spans=False,
        auto_configure=False,
    )


def create_asgi(settings: Settings, *, workdir: Path | None = None, sse_poll: float = 0.5) -> ASGIApp:
    """The app wrapped in the request size limit from ``[api] max_body_bytes``."""
    return BodyLimit(create_app(settings, workdir=workdir, sse_poll=sse_poll), settings.api.max_body_bytes)
