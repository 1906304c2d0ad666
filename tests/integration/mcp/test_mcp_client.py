"""McpToolset against a small MCP server started by the test: tools, calls, limits, errors; and a real
task that calls an MCP tool through the agent's toolset, beside the built-in workspace tools."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from helixcode.agent.mcp_client import McpToolset
from helixcode.agent.mcp_tools import mcp_tools
from helixcode.config import McpServerSettings, McpSettings, Settings
from helixcode.domain.plan import parse_plan
from helixcode.errors import McpError
from helixcode.store.store import Store

SERVER = str(Path(__file__).with_name("tiny_server.py"))


def tiny(**overrides: Any) -> dict[str, McpServerSettings]:
    return {"tiny": McpServerSettings(command=sys.executable, args=[SERVER], **overrides)}


async def test_tools_calls_limits_and_errors() -> None:
    async with McpToolset(tiny(timeout=5, max_output_bytes=300)) as mcp:
        tools = {t.name: t for t in mcp.tools()}
        assert set(tools) == {"tiny__shout", "tiny__repeat", "tiny__slow", "tiny__broken"}
        assert tools["tiny__repeat"].parameters["required"] == ["text", "times"]
        assert await mcp.call("tiny__shout", {"text": "hi"}) == "HI"
        cut = await mcp.call("tiny__repeat", {"text": "ab", "times": 1000})
        assert cut.startswith("abab")
        assert cut.endswith("[... output cut: 1700 more bytes]")
        with pytest.raises(McpError, match="refuses"):
            await mcp.call("tiny__broken", {})
        with pytest.raises(McpError, match="times"):
            await mcp.call("tiny__repeat", {"text": "x"})
        with pytest.raises(McpError, match="no MCP tool"):
            await mcp.call("tiny__nope", {})
        assert await mcp.call("tiny__shout", {"text": "still here"}) == "STILL HERE"


async def test_a_call_past_the_timeout_is_an_error() -> None:
    async with McpToolset(tiny(timeout=1)) as mcp:
        with pytest.raises(McpError, match="within 1s"):
            await mcp.call("tiny__slow", {"seconds": 5})


async def test_a_server_that_cannot_start_is_an_error() -> None:
    bad = {"gone": McpServerSettings(command="/nonexistent/mcp-server", connect_timeout=3)}
    with pytest.raises(McpError, match="gone"):
        async with McpToolset(bad):
            pass


async def test_a_task_calls_an_mcp_tool_beside_the_workspace_tools(store: Store, tmp_path: Path) -> None:
    tools = pytest.importorskip("helixcode.agent.tools")
    spec = parse_plan({"tasks": [{"id": "ask", "type": "design", "title": "Ask the tiny server"}]})
    job = await store.create_job(spec, workdir=str(tmp_path))
    [claim] = await store.claim("w-mcp", ["git", "llm", "sandbox"])  # what an agent task needs of its worker
    (tmp_path / "notes.txt").write_text("quiet words\n")
    settings = Settings(mcp=McpSettings(servers=tiny(timeout=10)))
    async with mcp_tools(settings) as providers:  # what the agent executor opens for each attempt
        toolset = tools.Toolset(tools.WorkspaceTools(tmp_path), ["read_file"], extra=providers)
        names = [t.name for t in toolset.specs()]
        assert "read_file" in names
        assert "tiny__shout" in names
        note = await toolset.call("read_file", {"path": "notes.txt"})
        loud = await toolset.call("tiny__shout", {"text": note.content.strip()})
        failed = await toolset.call("tiny__broken", {})
    assert loud.ok
    assert "QUIET WORDS" in loud.content
    assert not failed.ok
    assert "refuses" in failed.content
    await store.complete(claim.task.id, claim.token, {"summary": loud.content})
    done = await store.get_task(job.id, "ask")
    assert done.status == "succeeded"
    [attempt] = await store.list_attempts(done.id)
    assert attempt.output == {"summary": loud.content}


async def test_an_agent_goes_on_without_a_server_that_is_down() -> None:
    """The agent's tools leave out a configured server that cannot be reached, and keep the others."""
    servers = {
        **tiny(),
        "gone": McpServerSettings(command="/nonexistent/mcp-server", connect_timeout=3),
    }
    settings = Settings(mcp=McpSettings(servers=servers))
    async with mcp_tools(settings) as providers:
        [provider] = providers
        names = {t.name for t in provider.specs()}
        assert "tiny__shout" in names
        assert not [n for n in names if n.startswith("gone__")]
        assert (await provider.call("tiny__shout", {"text": "on"})).content == "ON"
