"""`helix mcp` driven by the official SDK's ClientSession, over stdio and over streamable HTTP: list
and call every tool, read the resources, and get tool errors (not crashes) for bad requests."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from mcp import ClientSession

from tests.integration.mcp.conftest import Connect

TOOLS = {
    "submit_job",
    "job_status",
    "list_jobs",
    "list_tasks",
    "task_events",
    "task_result",
    "pause_job",
    "resume_job",
    "cancel_job",
}
PLAN = {
    "name": "mcp-demo",
    "tasks": [
        {"id": "a", "type": "building", "title": "A", "run": {"builtin": "noop"}},
        {"id": "b", "type": "testing", "title": "B", "depends_on": ["a"]},
    ],
}


async def _call(session: ClientSession, name: str, **args: Any) -> dict[str, Any]:
    result = await session.call_tool(name, args)
    assert not result.is_error, (name, result.content)
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def _exercise(session: ClientSession) -> None:
    tools = {t.name: t for t in (await session.list_tools()).tools}
    assert set(tools) == TOOLS
    assert tools["submit_job"].input_schema["properties"]["goal"]["anyOf"][0]["minLength"] == 1
    assert tools["job_status"].input_schema["required"] == ["job"]

    job = await _call(session, "submit_job", plan=PLAN)
    assert job["name"] == "mcp-demo"
    assert job["tasks"] == 2
    goal = await _call(session, "submit_job", goal="write a haiku about queues")
    assert goal["tasks"] == 1
    assert [j["id"] for j in (await _call(session, "list_jobs", limit=5))["jobs"]] == [goal["id"], job["id"]]
    assert (await _call(session, "job_status", job=job["id"][:5]))["counts"] == {"ready": 1, "blocked": 1}
    ready = (await _call(session, "list_tasks", job=job["id"], status=["ready"]))["tasks"]
    assert [t["key"] for t in ready] == ["a"]
    events = (await _call(session, "task_events", job=job["id"], task="a"))["events"]
    assert [e["kind"] for e in events] == ["ready"]
    result = await _call(session, "task_result", job=job["id"], task="a")
    assert result["task"]["status"] == "ready"
    assert result["result"] is None
    assert result["attempts"] == []
    assert (await _call(session, "pause_job", job=job["id"], reason="tea"))["status"] == "paused"
    assert (await _call(session, "resume_job", job=job["id"]))["status"] == "running"
    assert (await _call(session, "cancel_job", job=job["id"])) == {"job_id": job["id"], "cancelled": 2}

    summary = await session.read_resource(f"helix://jobs/{job['id']}")
    assert json.loads(summary.contents[0].text)["status"] == "cancelled"  # type: ignore[union-attr]
    log = await session.read_resource(f"helix://jobs/{job['id']}/tasks/a/log")
    assert "ready" in log.contents[0].text
    assert "cancelled" in log.contents[0].text
    templates = (await session.list_resource_templates()).resource_templates
    assert {t.uri_template for t in templates} == {
        "helix://jobs/{job}",
        "helix://jobs/{job}/tasks/{task}/log",
    }

    # Errors are tool errors the model can read, and the server carries on.
    for name, args, words in [
        ("job_status", {"job": "nope"}, "no job 'nope'"),
        ("pause_job", {"job": job["id"]}, "cancelled"),
        ("submit_job", {}, "exactly one"),
        ("submit_job", {"plan": {"tasks": [{"id": "x", "type": "cooking", "title": "t"}]}}, "type"),
        ("list_jobs", {"limit": 0}, "limit"),
    ]:
        bad = await session.call_tool(name, args)
        assert bad.is_error, (name, args)
        assert words in bad.content[0].text, bad.content  # type: ignore[union-attr]
    assert (await _call(session, "list_jobs"))["jobs"]


@pytest.mark.slow
async def test_stdio(stdio_session: Connect) -> None:
    async with stdio_session(None) as session:
        await _exercise(session)


@pytest.mark.slow
async def test_streamable_http_with_tokens(
    http_session: Connect, http_server: str, tokens: dict[str, str]
) -> None:
    async with http_session(tokens["operator"]) as session:
        await _exercise(session)
    async with http_session(tokens["viewer"]) as session:
        jobs = (await _call(session, "list_jobs"))["jobs"]
        denied = await session.call_tool("cancel_job", {"job": jobs[0]["id"]})
        assert denied.is_error
        assert "operator" in denied.content[0].text
    async with httpx.AsyncClient() as raw:
        refused = await raw.post(http_server, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert refused.status_code == 401
