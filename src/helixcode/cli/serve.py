"""`helix serve` (the REST API under uvicorn) and `helix token create|list|revoke` (its bearer tokens).

Tokens are managed against the database directly: whoever can reach the database is already trusted
with everything, and the first admin token has to come from somewhere.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from helixcode.cli.common import JsonOpt, console, err_console, open_engine, run_async, state
from helixcode.cli.help import PLAIN_HELP
from helixcode.domain.records import Role

if TYPE_CHECKING:
    from helixcode.domain.records import ApiToken

__all__ = ["register"]

token_app = typer.Typer(
    help="Bearer tokens for `helix serve` (stored hashed; shown once).", no_args_is_help=True, **PLAIN_HELP
)


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: api.host in the config).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port (default: api.port in the config).")
    ] = None,
) -> None:
    """Serve the REST API (/api/v1, OpenAPI at /api/v1/docs) with live events over SSE, and the web
    dashboard at / (log in with a token from `helix token create`)."""
    import uvicorn  # lazy: only this command needs the server stack

    from helixcode.api import create_asgi

    settings = state.settings()
    host = host or settings.api.host
    port = settings.api.port if port is None else port
    err_console.print(
        f"helix API on http://{host}:{port}/api/v1 (docs: /api/v1/docs); dashboard on http://{host}:{port}/",
        highlight=False,
    )
    uvicorn.run(
        create_asgi(settings),
        host=host,
        port=port,
        log_level=settings.logging.level,
        log_config=None,  # uvicorn's loggers use our handler (helixcode.logsetup)
        timeout_graceful_shutdown=3,
        proxy_headers=False,
    )


@token_app.command("create")
def token_create(
    role: Annotated[
        Role, typer.Option(help="viewer: read only; operator: also control jobs; admin: also tokens.")
    ],
    name: Annotated[str, typer.Option(help="Who or what uses it, for `helix token list`.")] = "token",
    as_json: JsonOpt = False,
) -> None:
    """Create a token and print it once; only its hash is stored."""

    async def go() -> tuple[ApiToken, str]:
        async with await open_engine() as engine:
            return await engine.tokens.create_token(name, role)

    token, secret = run_async(go())
    if as_json:
        from helixcode.cli.render import emit_json

        emit_json(console, {**token.to_dict(), "token": secret})
        return
    console.print(secret, markup=False, highlight=False)
    err_console.print(f"token {token.id} ({token.role}); it will not be shown again", highlight=False)


@token_app.command("list")
def token_list(
    revoked: Annotated[bool, typer.Option("--revoked", help="Include revoked tokens.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List tokens (never their secrets)."""

    async def go() -> list[ApiToken]:
        async with await open_engine() as engine:
            return await engine.tokens.list_tokens(include_revoked=revoked)

    tokens = run_async(go())
    if as_json:
        from helixcode.cli.render import emit_json

        emit_json(console, [t.to_dict() for t in tokens])
        return
    from rich import box
    from rich.table import Table

    table = Table(title="API tokens", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("id", "name", "role", "created", "last used", "revoked"):
        table.add_column(column)
    for t in tokens:
        table.add_row(t.id, t.name, t.role, _ago(t.created_at), _ago(t.last_used_at), _ago(t.revoked_at))
    console.print(table if tokens else "No tokens: create one with `helix token create --role admin`.")


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="The token's id (not its secret).")]) -> None:
    """Revoke a token for good; requests with it are refused from now on."""

    async def go() -> None:
        async with await open_engine() as engine:
            await engine.tokens.revoke_token(token_id)

    run_async(go())
    console.print(f"Token {token_id} revoked.")


def _ago(at: float | None) -> str:
    return "-" if at is None else f"{max(0.0, time.time() - at):.0f}s ago"


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel="Server and integrations")(serve)
    app.add_typer(token_app, name="token", rich_help_panel="Server and integrations")
