"""Workers (with resources), LLM providers (with models and health), and API tokens (admin only)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from helixcode.api.deps import Admin, EngineDep, Manager, Viewer
from helixcode.api.schemas import (
    ProviderOut,
    TokenCreatedOut,
    TokenCreateIn,
    TokenOut,
    WorkerHistoryOut,
    WorkerOut,
)
from helixcode.llm.manager import LLMManager

__all__ = ["router"]

router = APIRouter()


@router.get("/workers", response_model=list[WorkerOut], tags=["workers"], summary="List workers")
async def list_workers(
    manager: Manager,
    _: Viewer,
    all_: Annotated[bool, Query(alias="all", description="include stopped workers")] = False,
) -> list[dict[str, Any]]:
    return [w.to_dict() for w in await manager.workers(include_stopped=all_)]


@router.get(
    "/workers/{ref}/history",
    response_model=WorkerHistoryOut,
    tags=["workers"],
    summary="A worker's resource samples",
    description="The worker ``ref`` names (its id, its name, or a unique prefix of its id) and the "
    "resource samples its heartbeats stored since ``since`` (kept ``workers.heartbeat_retention``), "
    "oldest first: what `helix worker list --history` and `helix watch`'s sparklines draw.",
)
async def worker_history(
    manager: Manager,
    _: Viewer,
    ref: Annotated[str, Path(description="worker id, name or unique id prefix")],
    since: Annotated[float, Query(description="seconds since the epoch; 0 for all that is kept")] = 0.0,
) -> dict[str, Any]:
    worker, samples = await manager.worker_history(ref, since)
    return {"worker": worker.to_dict(), "samples": [{"at": at, "resources": res} for at, res in samples]}


def _model(m: Any) -> dict[str, Any]:
    c = m.capabilities
    return {
        "name": m.name,
        "tools": c.tools,
        "vision": c.vision,
        "json_schema": c.json_schema,
        "embeddings": c.embeddings,
        "streaming": c.streaming,
        "context_length": c.context_length,
    }


@router.get("/providers", response_model=list[ProviderOut], tags=["providers"], summary="List LLM providers")
async def list_providers(request: Request, _: Viewer) -> list[dict[str, Any]]:
    """Models and health: discovery calls and health probes only, nothing billed."""
    llm: LLMManager | None = await request.app.state.llm()
    if llm is None:
        return []
    models, health = await asyncio.gather(llm.refresh_models(), llm.monitor.probe_all())
    return [
        {
            "name": name,
            "type": entry.provider.kind,
            "priority": entry.priority,
            "cost": entry.cost,
            "healthy": health[name].ok,
            "health": health[name].detail,
            "latency_s": health[name].latency_s,
            "discovery_error": llm.discovery_errors.get(name),
            "models": [_model(m) for m in models.get(name, [])],
        }
        for name, entry in llm.entries.items()
    ]


@router.get("/tokens", response_model=list[TokenOut], tags=["tokens"], summary="List API tokens")
async def list_tokens(
    engine: EngineDep,
    _: Admin,
    revoked: Annotated[bool, Query(description="include revoked tokens")] = False,
) -> list[dict[str, Any]]:
    return [t.to_dict() for t in await engine.tokens.list_tokens(include_revoked=revoked)]


@router.post(
    "/tokens", status_code=201, response_model=TokenCreatedOut, tags=["tokens"], summary="Create a token"
)
async def create_token(body: TokenCreateIn, engine: EngineDep, _: Admin) -> dict[str, Any]:
    token, secret = await engine.tokens.create_token(body.name, body.role)
    return {**token.to_dict(), "token": secret}


@router.delete("/tokens/{token_id}", status_code=204, tags=["tokens"], summary="Revoke a token")
async def revoke_token(
    token_id: Annotated[str, Path(min_length=1, max_length=16)], engine: EngineDep, _: Admin
) -> Response:
    await engine.tokens.revoke_token(token_id)
    return Response(status_code=204)
