"""CLI commands of the LLM layer (``helix providers``, ``helix chat``).

Exit codes as everywhere in the CLI: 2 for bad input (config, unknown provider), 1 for a runtime failure.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from helixcode.cli.common import console, err_console, run_async, state
from helixcode.errors import ConfigError, LLMError

if TYPE_CHECKING:
    from rich.table import Table

    from helixcode.llm.manager import LLMManager
    from helixcode.llm.types import ChatRequest, ModelInfo

__all__ = ["register"]


def _manager() -> LLMManager:
    from helixcode.llm.registry import build_manager  # lazy: the LLM layer loads for these commands only

    try:
        return build_manager(state.settings())
    except ConfigError as exc:
        err_console.print(f"[red]config error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from exc


def _caps(model: ModelInfo) -> dict[str, Any]:
    c = model.capabilities
    return {
        "tools": c.tools,
        "vision": c.vision,
        "json_schema": c.json_schema,
        "embeddings": c.embeddings,
        "streaming": c.streaming,
        "context_length": c.context_length,
    }


async def _survey(llm: LLMManager) -> list[dict[str, Any]]:
    """Models and health of every provider: only discovery calls and health probes, nothing billed."""
    import asyncio

    async with llm:
        models, health = await asyncio.gather(llm.refresh_models(), llm.monitor.probe_all())
    rows = []
    for name, entry in llm.entries.items():
        status = health[name]
        rows.append(
            {
                "name": name,
                "type": entry.provider.kind,
                "priority": entry.priority,
                "cost": entry.cost,
                "healthy": status.ok,
                "health": status.detail,
                "latency_s": round(status.latency_s, 4) if status.latency_s is not None else None,
                "discovery_error": llm.discovery_errors.get(name),
                "models": [{"name": m.name, **_caps(m)} for m in models.get(name, [])],
            }
        )
    return rows


def _flags(model: dict[str, Any]) -> str:
    flags = [k for k in ("tools", "vision", "json_schema", "embeddings") if model[k]]
    ctx = model["context_length"]
    return ", ".join(flags + ([f"ctx {ctx}"] if ctx else []))


def _table(rows: list[dict[str, Any]]) -> Table:
    from rich.table import Table

    table = Table(title="LLM providers")
    for column in ("provider", "type", "prio", "health", "model", "capabilities"):
        table.add_column(column)
    for row in rows:
        health = "[green]ok[/green]" if row["healthy"] else f"[red]down[/red] {row['health']}"
        models = row["models"] or [
            {"name": "-", **dict.fromkeys(("tools", "vision", "json_schema", "embeddings"))}
        ]
        for i, model in enumerate(models):
            first = i == 0
            table.add_row(
                row["name"] if first else "",
                row["type"] if first else "",
                str(row["priority"]) if first else "",
                health if first else "",
                model["name"],
                _flags({"context_length": None, **model}),
            )
    return table


async def _chat(llm: LLMManager, request: ChatRequest, provider: str | None) -> int:
    from helixcode.llm.errors import StreamInterrupted
    from helixcode.llm.types import TextDelta, ToolCallDone

    async with llm:
        stream = llm.stream(request, provider=provider)
        try:
            async with stream:
                async for event in stream:
                    if isinstance(event, TextDelta):
                        console.print(event.text, end="", markup=False, highlight=False, soft_wrap=True)
                    elif isinstance(event, ToolCallDone):
                        call = event.call
                        console.print(f"\n[tool call] {call.name}({call.raw_arguments})", markup=False)
        except StreamInterrupted as exc:
            console.print()
            err_console.print(f"[red]interrupted:[/red] {exc}", highlight=False)
            return 1
        except LLMError as exc:
            err_console.print(f"[red]error:[/red] {exc}", highlight=False)
            return 1
        console.print()
        reply = stream.response
        if reply is not None:
            usage = (
                f", {reply.usage.prompt_tokens}+{reply.usage.completion_tokens} tokens" if reply.usage else ""
            )
            err_console.print(f"[dim]{reply.provider}/{reply.model}{usage}[/dim]", highlight=False)
    return 0


def register(app: typer.Typer) -> None:
    """Add the LLM commands to the main ``helix`` app."""

    @app.command("providers", rich_help_panel="Models")
    def providers(
        as_json: Annotated[
            bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")
        ] = False,
    ) -> None:
        """Show configured LLM providers, their models, capabilities and health."""
        rows = run_async(_survey(_manager()))
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
        else:
            console.print(_table(rows))

    @app.command("chat", rich_help_panel="Models")
    def chat(
        prompt: Annotated[str, typer.Argument(help="What to ask.")],
        provider: Annotated[
            str | None, typer.Option("--provider", "-p", help="Use this provider only.")
        ] = None,
        model: Annotated[str | None, typer.Option("--model", "-m", help="Use this model.")] = None,
        system: Annotated[str | None, typer.Option("--system", help="A system prompt.")] = None,
        max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Longest reply.")] = 512,
    ) -> None:
        """Stream a reply from the best available model to the terminal."""
        if not prompt.strip():
            err_console.print("[red]error:[/red] the prompt is empty")
            raise typer.Exit(2)
        llm = _manager()
        if provider is not None and provider not in llm.providers:
            known = ", ".join(llm.providers) or "none"
            err_console.print(f"[red]error:[/red] no provider named {provider!r} (configured: {known})")
            run_async(llm.aclose())
            raise typer.Exit(2)
        from helixcode.llm.types import ChatRequest, Message

        messages = ([Message.system(system)] if system else []) + [Message.user(prompt)]
        request = ChatRequest(messages, model=model, max_tokens=max_tokens)
        raise typer.Exit(run_async(_chat(llm, request, provider)))
