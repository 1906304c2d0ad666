"""Tools of external MCP servers for agent tasks, from ``[mcp.servers.NAME]`` in the config.

    async with McpToolset(settings.mcp.servers) as mcp:
        specs = mcp.tools()                       # helixcode.llm.types.Tool, named SERVER__TOOL
        text = await mcp.call("files__search", {"query": "TODO"})

Each server is a stdio command or a streamable HTTP URL; every call has the server's ``timeout`` and
its output is cut at ``max_output_bytes``, as the built-in workspace tools are. A tool's own error, a
timeout or a dead server raises ``McpError`` with the server's message, which the agent's toolset
hands to the model as a failed tool result. Enter and leave the context in the same task (the SDK's
transports are anyio task groups).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.types import TextContent

from helixcode.config import McpServerSettings
from helixcode.errors import McpError
from helixcode.llm.types import Tool

log = logging.getLogger(__name__)

__all__ = ["McpToolset", "tool_name", "truncate"]

SEPARATOR = "__"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def tool_name(server: str, tool: str) -> str:
    """``server__tool``, restricted to what every provider accepts in a function name (64 chars)."""
    return _UNSAFE.sub("_", f"{server}{SEPARATOR}{tool}")[:64]


def truncate(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    cut = data[:limit].decode(errors="ignore")
    return f"{cut}\n[... output cut: {len(data) - limit} more bytes]"


@dataclass(frozen=True, slots=True)
class _Route:
    server: str
    tool: str
    session: ClientSession
    config: McpServerSettings


class McpToolset:
    """Connections to the configured MCP servers, their tools, and calls with limits."""

    def __init__(self, servers: Mapping[str, McpServerSettings], *, tolerate_down: bool = False) -> None:
        """``tolerate_down``: a server that cannot be reached is left out (named in ``unavailable``)
        instead of failing the whole set, as agent tasks need: they go on without its tools."""
        self.servers = {name: cfg for name, cfg in servers.items() if cfg.enabled}
        self.tolerate_down = tolerate_down
        self.unavailable: dict[str, str] = {}
        self._stack = AsyncExitStack()
        self._routes: dict[str, _Route] = {}
        self._tools: list[Tool] = []

    async def __aenter__(self) -> Self:
        try:
            for name, cfg in self.servers.items():
                try:
                    await self._connect(name, cfg)
                except McpError as exc:
                    if not self.tolerate_down:
                        raise
                    self.unavailable[name] = str(exc)
                    log.warning(
                        "MCP server unavailable: going on without its tools",
                        extra={"action": "mcp.unavailable", "server": name, "error": str(exc)},
                    )
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def _connect(self, name: str, cfg: McpServerSettings) -> None:
        """Connect one server on a stack of its own, so a failure closes what it opened and nothing else."""
        own = AsyncExitStack()
        try:
            if cfg.command is not None:
                params = StdioServerParameters(command=cfg.command, args=cfg.args, env=cfg.env or None)
                read, write = await own.enter_async_context(stdio_client(params))
            else:
                assert cfg.url is not None
                http = await own.enter_async_context(create_mcp_http_client(headers=cfg.headers))
                read, write = await own.enter_async_context(streamable_http_client(cfg.url, http_client=http))
            session = await own.enter_async_context(ClientSession(read, write))
            with anyio.fail_after(cfg.connect_timeout):
                await session.initialize()
                listed = (await session.list_tools()).tools
        except Exception as exc:
            with contextlib.suppress(Exception):
                await own.aclose()
            raise McpError(f"MCP server '{name}': cannot connect: {type(exc).__name__}: {exc}") from exc
        await self._stack.enter_async_context(own)
        for tool in listed:
            full = tool_name(name, tool.name)
            self._routes[full] = _Route(name, tool.name, session, cfg)
            self._tools.append(
                Tool(name=full, description=tool.description or "", parameters=tool.input_schema)
            )

    def tools(self) -> list[Tool]:
        """Every server's tools, named ``server__tool``, with their input schemas as the servers gave them."""
        return list(self._tools)

    specs = tools  # the agent toolset's name for it

    async def call(self, name: str, arguments: Mapping[str, Any]) -> str:
        """Call a tool; its text output (structured output as JSON when there is no text), cut to size."""
        route = self._routes.get(name)
        if route is None:
            raise McpError(f"no MCP tool '{name}'; known: {', '.join(self._routes) or 'none'}")
        try:
            with anyio.fail_after(route.config.timeout):
                result = await route.session.call_tool(route.tool, dict(arguments))
        except TimeoutError as exc:
            raise McpError(f"{name}: no answer within {route.config.timeout:g}s") from exc
        except Exception as exc:
            raise McpError(f"{name}: {type(exc).__name__}: {exc}") from exc
        texts = [block.text for block in result.content if isinstance(block, TextContent)]
        text = "\n".join(texts)
        if not text and result.structured_content is not None:
            text = json.dumps(result.structured_content)
        text = truncate(text, route.config.max_output_bytes)
        if result.is_error:
            raise McpError(f"{name} failed: {text}")
        return text
