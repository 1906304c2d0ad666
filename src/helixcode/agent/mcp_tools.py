"""Tools of the MCP servers in ``[mcp.servers.NAME]``, offered to an agent task beside its own.

One ``McpToolset`` per task attempt: it is entered and left in the task's own asyncio task (as the
MCP SDK requires). A server that is down when the attempt starts is left out (logged, with its error),
and one that fails later fails the call as a tool error the model can read: never the attempt.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from helixcode.agent.mcp_client import McpToolset
from helixcode.agent.tools import ToolProvider, ToolResult
from helixcode.config import Settings
from helixcode.errors import McpError
from helixcode.llm.types import Tool

__all__ = ["McpTools", "mcp_tools"]


class McpTools:
    """An ``McpToolset`` seen as a ``ToolProvider``."""

    def __init__(self, toolset: McpToolset) -> None:
        self.toolset = toolset

    def specs(self) -> Sequence[Tool]:
        return self.toolset.tools()

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        try:
            return ToolResult(True, await self.toolset.call(name, arguments))
        except McpError as exc:
            return ToolResult(False, str(exc))


@contextlib.asynccontextmanager
async def mcp_tools(settings: Settings) -> AsyncIterator[list[ToolProvider]]:
    """The configured MCP servers' tools, connected for the duration of the block (none configured: [])."""
    servers = {name: cfg for name, cfg in settings.mcp.servers.items() if cfg.enabled}
    if not servers:
        yield []
        return
    async with McpToolset(servers, tolerate_down=True) as toolset:
        yield [McpTools(toolset)]
