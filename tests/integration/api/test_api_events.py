"""Live events over SSE: a client that drops its connection and reconnects with Last-Event-ID gets
every event exactly once, and the stream ends when the job does."""

from __future__ import annotations

import httpx
from httpx_sse import aconnect_sse

from helixcode.store.store import Store
from tests.integration.api.conftest import PLAN, Api


async def _read(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], stop_after: int | None
) -> list[dict]:
    seen: list[dict] = []
    async with aconnect_sse(client, "GET", url, headers=headers) as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        async for sse in source.aiter_sse():
            if not sse.data:
                continue  # the opening `retry:` frame carries no event (as EventSource treats it)
            if sse.event == "end":
                seen.append({"end": sse.json()})
                break
            event = sse.json()
            assert sse.id == str(event["id"])
            assert sse.event == event["kind"]
            seen.append(event)
            if stop_after is not None and len(seen) >= stop_after:
                break  # leaving the block drops the connection mid-stream
    return seen


async def test_sse_resumes_after_a_dropped_connection(api: Api) -> None:
    async with api.client("viewer") as viewer, api.client("operator") as op:
        job = (await op.post("/api/v1/jobs", json={"plan": PLAN})).json()["id"]
        url = f"/api/v1/jobs/{job}/events"
        first = await _read(viewer, url, {}, stop_after=2)
        assert [e["kind"] for e in first] == ["created", "ready"]

        async with await Store.open(api.settings) as store:  # the job moves on while nobody listens
            for _ in range(3):
                [claim] = await store.claim("w-sse")
                await store.complete(claim.task.id, claim.token, {})

        rest = await _read(viewer, url, {"Last-Event-ID": str(first[-1]["id"])}, stop_after=None)
        assert rest[-1] == {"end": {"job_id": job, "last_event_id": rest[-2]["id"]}}
        streamed = [e["id"] for e in first + rest[:-1]]
        logged = [e["id"] for e in (await viewer.get(url)).json()]
        assert streamed == logged  # nothing missed, nothing repeated
        assert rest[-2]["kind"] == "succeeded"
        assert rest[-2]["task_key"] is None

        # `after` works the same for clients that cannot set headers.
        tail = await _read(viewer, f"{url}?after={logged[-2]}", {}, stop_after=None)
        assert [e.get("id") for e in tail[:-1]] == logged[-1:]
