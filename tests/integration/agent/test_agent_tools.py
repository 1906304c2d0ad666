"""The agent's tools stay inside the worktree: traversal, absolute paths, symlinks, .git, runaway commands."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from helixcode.agent.tools import CommandPolicy, Toolset, WorkspaceTools, scrub_env


@pytest.fixture
def tools(tmp_path: Path) -> WorkspaceTools:
    root = tmp_path / "wt"
    root.mkdir()
    (root / "a.txt").write_text("one\ntwo\nthree\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    (tmp_path / "secret.txt").write_text("outside")
    return WorkspaceTools(root, CommandPolicy(timeout=30.0))


@pytest.mark.parametrize("path", ["../secret.txt", "sub/../../secret.txt", "/etc/passwd", ".git/config"])
async def test_agent_paths_outside_are_refused(tools: WorkspaceTools, path: str) -> None:
    for name, args in (
        ("read_file", {"path": path}),
        ("write_file", {"path": path, "content": "x"}),
        ("edit_file", {"path": path, "search": "o", "replace": "x"}),
        ("list_files", {"path": path}),
    ):
        result = await tools.call(name, args)
        assert not result.ok, (name, path)
        assert "refused" in result.content or "no such file" in result.content
    assert (tools.root.parent / "secret.txt").read_text() == "outside"


async def test_agent_symlinks_that_leave_are_refused(tools: WorkspaceTools) -> None:
    os.symlink(tools.root.parent / "secret.txt", tools.root / "link.txt")
    os.symlink(tools.root.parent, tools.root / "up")
    assert not (await tools.call("read_file", {"path": "link.txt"})).ok
    assert not (await tools.call("write_file", {"path": "link.txt", "content": "pwned"})).ok
    assert not (await tools.call("write_file", {"path": "up/new.txt", "content": "pwned"})).ok
    assert (tools.root.parent / "secret.txt").read_text() == "outside"
    assert not (tools.root.parent / "new.txt").exists()


async def test_agent_file_tools_work_inside(tools: WorkspaceTools) -> None:
    assert (await tools.call("read_file", {"path": "a.txt", "start": 2, "end": 3})).content == "two\nthree"
    assert (await tools.call("write_file", {"path": "pkg/b.py", "content": "x = 1\n"})).ok
    edit = await tools.call("edit_file", {"path": "pkg/b.py", "search": "x = 1", "replace": "x = 2"})
    assert edit.ok
    assert (tools.root / "pkg/b.py").read_text() == "x = 2\n"
    missing = await tools.call("edit_file", {"path": "pkg/b.py", "search": "nope", "replace": ""})
    assert not missing.ok
    assert "not found" in missing.content
    listing = await tools.call("list_files", {})
    assert listing.data["files"] == ["a.txt", "pkg/b.py"]  # .git is never listed


async def test_agent_search_without_ripgrep(tools: WorkspaceTools, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("helixcode.agent.tools.shutil.which", lambda _name: None)
    found = await tools.call("search", {"pattern": "^tw"})
    assert found.ok
    assert found.content == "a.txt:2:two"


async def test_agent_command_that_never_ends_is_killed(tools: WorkspaceTools) -> None:
    brief = WorkspaceTools(tools.root, CommandPolicy(timeout=1.0))
    started = time.monotonic()
    result = await brief.call("run_command", {"command": "sleep 30 & sleep 30; echo never"})
    assert time.monotonic() - started < 10
    assert not result.ok
    assert result.data["timed_out"]
    assert "never" not in result.content


async def test_agent_command_policy_and_scrubbed_env(
    tools: WorkspaceTools, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_API_KEY", "sk-123")
    monkeypatch.setenv("HELIX_LEASE_TOKEN", "tok")
    result = await tools.call("run_command", {"command": "env; echo done"})
    assert result.ok
    assert "done" in result.content
    assert "sk-123" not in result.content
    assert "HELIX_LEASE_TOKEN" not in result.content
    assert not (await tools.call("run_command", {"command": "echo hi && curl http://x"})).ok
    only = WorkspaceTools(tools.root, CommandPolicy(allow=("echo",)))
    assert (await only.call("run_command", {"command": "echo ok"})).ok
    assert not (await only.call("run_command", {"command": "ls"})).ok
    assert "PATH" in scrub_env({"PATH": "/bin", "DB_PASSWORD": "x"}, tools.root)
    assert "DB_PASSWORD" not in scrub_env({"PATH": "/bin", "DB_PASSWORD": "x"}, tools.root)


async def test_agent_output_is_truncated(tools: WorkspaceTools) -> None:
    small = WorkspaceTools(tools.root, CommandPolicy(output_limit=100))
    result = await small.call("run_command", {"command": "seq 1 10000"})
    assert len(result.content) < 200
    assert "characters cut" in result.content
    assert "10000" in result.content


async def test_agent_toolset_routes_external_tools(tools: WorkspaceTools) -> None:
    from helixcode.agent.tools import ToolResult
    from helixcode.llm.types import Tool

    class Echo:  # the shape of the MCP client's toolset
        def specs(self) -> list[Tool]:
            return [Tool("echo", "echo back")]

        async def call(self, name: str, arguments: dict[str, object]) -> ToolResult:
            return ToolResult(True, f"echo {arguments}")

    toolset = Toolset(tools, ["read_file"], [Echo()])
    assert [t.name for t in toolset.specs()] == ["read_file", "finish", "echo"]
    assert (await toolset.call("echo", {"a": 1})).content == "echo {'a': 1}"
    assert not (await toolset.call("write_file", {"path": "x", "content": ""})).ok  # not offered
