"""A small MCP server (stdio) for the client tests, written with the official SDK."""

from __future__ import annotations

import asyncio

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("tiny")


@server.tool()
def shout(text: str) -> str:
    """Upper-case the text."""
    return text.upper()


@server.tool()
def repeat(text: str, times: int) -> str:
    """The text, many times."""
    return text * times


@server.tool()
async def slow(seconds: float) -> str:
    """Answer after a while."""
    await asyncio.sleep(seconds)
    return "late"


@server.tool()
def broken() -> str:
    """Always fails."""
    raise ToolError("the tiny server refuses")


if __name__ == "__main__":
    server.run("stdio")
