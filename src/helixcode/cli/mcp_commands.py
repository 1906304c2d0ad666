"""`helix mcp`: serve HelixCode's MCP tools over stdio (default) or streamable HTTP (`--http`)."""

from __future__ import annotations

from typing import Annotated

import typer

from helixcode.cli.common import err_console, run_async, state

__all__ = ["register"]


def mcp(
    http: Annotated[
        bool, typer.Option("--http", help="Serve streamable HTTP at /mcp instead of stdio.")
    ] = False,
    host: Annotated[str, typer.Option(help="HTTP: address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="HTTP: port.")] = 8601,
) -> None:
    """Serve MCP tools to submit, inspect and control jobs (stdio: for a local agent; HTTP: needs tokens)."""
    from helixcode.mcp import server  # lazy: the MCP SDK loads only for this command

    settings = state.settings()
    if http:
        err_console.print(f"helix MCP on http://{host}:{port}/mcp (bearer token required)", highlight=False)
        run_async(server.serve_http(settings, host, port))
    else:
        run_async(server.serve_stdio(settings))


def register(app: typer.Typer) -> None:
    app.command("mcp", rich_help_panel="Server and integrations")(mcp)
