"""The dashboard's server side over HTTP and against real databases: sessions, CSRF and roles; the
data the pages draw; one shared follower per job however many browsers watch it; and paging that
costs the same on page 1 and page 60 of thousands of jobs."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from helixcode.api import create_app
from helixcode.api.dashboard.feed import Batch, FeedHub
from helixcode.domain.enums import JobStatus
from helixcode.engine.browse import Browse
from helixcode.store.store import Store
from helixcode.store.tables import jobs, llm_calls, llm_limits
from tests.helpers import spec, t, wait_until
from tests.integration.api.conftest import PLAN, Api, ServerThread, _make_tokens, api_settings


@asynccontextmanager
async def login(api: Api, role: str) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A client holding a session of ``role``, and the session's CSRF token (from a page)."""
    async with httpx.AsyncClient(base_url=api.base_url, timeout=10) as client:
        yield client, await _log_in(client, api, role)


async def _log_in(client: httpx.AsyncClient, api: Api, role: str) -> str:
    form = await client.get("/login")
    nonce = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert nonce is not None
    done = await client.post("/login", data={"csrf": nonce[1], "token": api.tokens[role], "next": "/workers"})
    assert done.status_code == 303
    assert done.headers["location"] == "/workers"
    page = await client.get("/")
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert csrf is not None
    return csrf[1]


async def test_nothing_is_served_without_a_session(sqlite_api: Api) -> None:
    async with sqlite_api.client("operator") as op, sqlite_api.client(None) as anon:
        job = (await op.post("/api/v1/jobs", json={"plan": PLAN})).json()["id"]
        for path in ("/", f"/jobs/{job}", "/workers", "/providers", "/logout", "/?status=paused"):
            r = await anon.get(path)
            assert r.status_code == 303, path
            assert r.headers["location"].startswith("/login?next=/"), path
        for path in ("graph", "stream", "timeline", "events", "tasks/a"):
            assert (await anon.get(f"/ui/jobs/{job}/{path}")).status_code == 401, path
        for path in ("pause", "resume", "cancel", "tasks/a/retry", "tasks/a/skip"):
            assert (await anon.post(f"/ui/jobs/{job}/{path}")).status_code == 401, path
        # The API's bearer token is not a dashboard session, and a session is not an API token.
        assert (await op.get(f"/ui/jobs/{job}/graph")).status_code == 401
        assert (await anon.get("/ui/static/dashboard.js")).status_code == 200  # code, no data
        login_page = await anon.get("/login")
        assert login_page.status_code == 200
        assert "script-src 'self'" in login_page.headers["content-security-policy"]


async def test_sessions_csrf_and_roles(api: Api) -> None:
    async with api.client("operator") as op:
        job = (await op.post("/api/v1/jobs", json={"plan": PLAN})).json()["id"]
    async with login(api, "viewer") as (viewer, viewer_csrf), login(api, "operator") as (operator, csrf):
        cookie = next(c for c in operator.cookies.jar if c.name == "helix_session")
        assert api.tokens["operator"] not in (cookie.value or "")
        assert cookie.secure is False  # plain http on loopback; Secure over https or with api.secure_cookies
        assert (await viewer.get(f"/jobs/{job}")).status_code == 200
        assert (await viewer.get(f"/ui/jobs/{job}/graph")).json()["tasks"]["a"][0] == "ready"

        refused = await viewer.post(f"/ui/jobs/{job}/pause", headers={"X-CSRF-Token": viewer_csrf})
        assert refused.status_code == 403
        assert "operator role" in refused.json()["detail"]
        assert (await operator.post(f"/ui/jobs/{job}/pause")).status_code == 403  # no CSRF token
        wrong = await operator.post(f"/ui/jobs/{job}/pause", headers={"X-CSRF-Token": viewer_csrf})
        assert wrong.status_code == 403  # another session's token
        other_site = await operator.post(
            f"/ui/jobs/{job}/pause", headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
        )
        assert other_site.status_code == 403
        async with api.client("viewer") as reader:
            assert (await reader.get(f"/api/v1/jobs/{job}")).json()["status"] == "running"

        paused = await operator.post(f"/ui/jobs/{job}/pause", headers={"X-CSRF-Token": csrf})
        assert paused.status_code == 200
        assert paused.json()["status"] == "paused"
        resumed = await operator.post(f"/ui/jobs/{job}/resume", headers={"X-CSRF-Token": csrf})
        assert resumed.json()["status"] == "running"
        submitted = await operator.post(
            "/ui/jobs",
            json={"plan": "tasks: [{id: x, type: nope, title: X}]"},
            headers={"X-CSRF-Token": csrf},
        )
        assert submitted.status_code == 422
        assert submitted.json()["errors"][0]["message"].startswith("task 'x' (tasks[0]): type:")

        # Revoking the token ends its sessions at once.
        async with api.client("admin") as admin:
            tokens = (await admin.get("/api/v1/tokens")).json()
            viewer_id = next(tk["id"] for tk in tokens if tk["role"] == "viewer")
            assert (await admin.delete(f"/api/v1/tokens/{viewer_id}")).status_code == 204
        assert (await viewer.get("/")).status_code == 303
        assert (await viewer.get(f"/ui/jobs/{job}/graph")).status_code == 401

        # A tampered cookie is no session.
        value = cookie.value or ""
        forged = httpx.AsyncClient(base_url=api.base_url, cookies={"helix_session": value[:-3] + "AAA"})
        async with forged:
            assert (await forged.get("/")).status_code == 303

        # The login form's double-submit token is required.
        stranger = httpx.AsyncClient(base_url=api.base_url)
        async with stranger:
            r = await stranger.post("/login", data={"csrf": "x", "token": api.tokens["operator"]})
            assert r.status_code == 403
            assert "helix_session" not in r.cookies

        out = await operator.post("/logout", data={"csrf": csrf})
        assert out.status_code == 303
        assert (await operator.get("/")).status_code == 303


async def test_a_task_detail_timeline_and_a_split_group(api: Api) -> None:
    async with api.client("operator") as op:
        job = (await op.post("/api/v1/jobs", json={"plan": PLAN})).json()["id"]
    async with await Store.open(api.settings) as store:
        [claim] = await store.claim("w-dash")
        output = {
            "stdout": "\n".join(f"line {i}" for i in range(100)),
            "commit": "abc123",
            "branch": "helix/a",
        }
        await store.complete(claim.task.id, claim.token, output)
        from helixcode.domain.splitting import Part

        await store.split_task(job, "b", [Part(("x",), 1.0), Part(("y",), 1.0)])
    async with login(api, "viewer") as (browser, _):
        detail = (await browser.get(f"/ui/jobs/{job}/tasks/a")).json()
        assert detail["commit"] == "abc123"
        assert detail["branch"] == "helix/a"
        [(label, tail)] = detail["output"]
        assert label == "stdout"
        assert tail.startswith("... (60 earlier lines)")
        assert tail.endswith("line 99")
        assert [a["outcome"] for a in detail["attempts"]] == ["succeeded"]
        assert [e["kind"] for e in detail["events"]][-2:] == ["claimed", "succeeded"]

        graph = (await browser.get(f"/ui/jobs/{job}/graph")).json()
        kinds = {b[0]: b[1] for b in graph["boxes"]}
        assert kinds == {"a": "task", "b": "frame", "b.1": "task", "b.2": "task", "c": "task"}  # small: open
        closed = (await browser.get(f"/ui/jobs/{job}/graph?open=")).json()
        assert {b[0]: b[1] for b in closed["boxes"]} == {"a": "task", "b": "group", "c": "task"}
        assert closed["tasks"]["b.1"][1] == closed["tasks"]["b"][1]

        timeline = (await browser.get(f"/ui/jobs/{job}/timeline")).json()
        [worker] = timeline["workers"]
        assert worker["worker"] == "w-dash"
        assert [[bar[0] for bar in lane] for lane in worker["lanes"]] == [["a"]]
        tail = (await browser.get(f"/ui/jobs/{job}/events?limit=3")).json()
        assert [e["kind"] for e in tail][-1] in ("ready", "split")


async def _collect(hub: FeedHub, job_id: str, after: int, seen: list[Batch], ready: asyncio.Event) -> None:
    async with hub.subscribe(job_id, after, idle=0.2) as batches:
        ready.set()
        async for batch in batches:
            if batch is not None:
                seen.append(batch)
                if batch.end:
                    return


async def test_fifty_browsers_share_one_follower(store: Store) -> None:
    """50 subscribers on one job: the store is polled by one loop, not 50; each gets every event once."""
    job = await store.create_job(spec(t("a"), t("b", "a"), t("c", "b")))
    calls = {"list_events": 0}
    real = store.list_events

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls["list_events"] += 1
        return await real(*args, **kwargs)

    store.list_events = counted  # type: ignore[method-assign]
    hub = FeedHub(Browse(store), poll=0.05, status_every=0.2)
    seen: list[list[Batch]] = [[] for _ in range(50)]
    ready = [asyncio.Event() for _ in range(50)]
    tasks = [asyncio.create_task(_collect(hub, job.id, 0, seen[i], ready[i])) for i in range(50)]
    await asyncio.gather(*(r.wait() for r in ready))
    assert hub.following() == 1
    calls["list_events"] = 0
    await asyncio.sleep(1.0)
    polls = calls["list_events"]
    assert 5 <= polls <= 30, polls  # one loop at 20 polls a second (50 loops would be 1,000)

    for _ in range(3):
        [claim] = await store.claim("w1")
        await store.complete(claim.task.id, claim.token)
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    logged = [e.id for e in await store.list_events(job.id)]
    for batches in seen:
        assert [e.id for b in batches for e in b.events] == logged  # every event, once, in order
        assert batches[-1].end
        assert batches[-1].summary is not None
        assert batches[-1].summary.job.status is JobStatus.SUCCEEDED
        final = {s.key: s.status for b in batches for s in b.states}
        assert final == {"a": "succeeded", "b": "succeeded", "c": "succeeded"}
    assert hub.following() == 0


async def test_a_late_browser_catches_up_and_the_follower_stops_when_all_leave(store: Store) -> None:
    job = await store.create_job(spec(t("a"), t("b", "a")))
    hub = FeedHub(Browse(store), poll=0.05)
    first: list[Batch] = []
    async with AsyncExitStack() as stack:
        batches: AsyncIterator[Batch | None] = await stack.enter_async_context(
            hub.subscribe(job.id, 0, idle=0.1)
        )

        async def drain() -> None:
            async for b in batches:
                if b is not None:
                    first.append(b)

        reader = asyncio.create_task(drain())
        [claim] = await store.claim("w1")
        await store.complete(claim.task.id, claim.token)
        await wait_until(lambda: any(e.kind == "succeeded" for b in first for e in b.events))
        late: list[Batch] = []
        ready = asyncio.Event()
        joined = asyncio.create_task(_collect(hub, job.id, 2, late, ready))  # saw created and a's ready
        await ready.wait()
        [claim] = await store.claim("w1")
        await store.complete(claim.task.id, claim.token)
        await asyncio.wait_for(joined, 10)
        logged = [e.id for e in await store.list_events(job.id)]
        assert [e.id for b in late for e in b.events] == [i for i in logged if i > 2]
        reader.cancel()
    assert hub.following() == 0
    await hub.aclose()


async def test_paging_thousands_of_jobs_costs_the_same_at_any_depth(store: Store) -> None:
    rows = [
        {
            "id": f"job{i:05d}",
            "name": f"job {i}",
            "status": (JobStatus.PAUSED if i % 10 == 0 else JobStatus.SUCCEEDED).value,
            "spec": {},
            "created_at": 1_000_000.0 + i // 2,  # pairs share a time: the id breaks the tie
            "updated_at": 1_000_000.0 + i,
        }
        for i in range(3000)
    ]
    async with store._write() as conn:
        await conn.execute(jobs.insert(), rows)
    seen: list[str] = []
    cursor = None
    took: list[float] = []
    while True:
        started = time.perf_counter()
        page = await store.list_jobs_page(before=cursor, limit=50)
        took.append(time.perf_counter() - started)
        seen.extend(s.job.id for s in page.jobs)
        if page.next is None:
            break
        cursor = page.next
    assert seen == [r["id"] for r in sorted(rows, key=lambda r: (r["created_at"], r["id"]), reverse=True)]
    assert len(took) == 60
    # Deep pages cost what the first do (no OFFSET scan); medians, as the machine's load varies.
    first, last = sorted(took[:15])[7], sorted(took[-15:])[7]
    assert last < 3 * first + 0.02, f"first pages {first:.3f} s, last pages {last:.3f} s"
    assert max(took) < 1.0, f"slowest page {max(took):.3f} s"
    paused = await store.list_jobs_page([JobStatus.PAUSED], limit=500)
    assert len(paused.jobs) == 300
    assert paused.next is None
    assert all(s.job.status is JobStatus.PAUSED for s in paused.jobs)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_jobs_page_pages_by_cursor(api: Api) -> None:
    async with api.client("operator") as op:
        made = [(await op.post("/api/v1/jobs", json={"plan": PLAN})).json()["id"] for _ in range(55)]
    async with login(api, "viewer") as (browser, _):
        first = await browser.get("/")
        ids = re.findall(r'<tr data-job="([0-9a-f]+)"', first.text)
        assert ids == made[::-1][:50]
        older = re.search(r'rel="next" href="([^"]+)"', first.text)
        assert older is not None
        second = await browser.get(older[1].replace("&amp;", "&"))
        assert re.findall(r'<tr data-job="([0-9a-f]+)"', second.text) == made[::-1][50:]
        assert 'rel="next"' not in second.text


async def test_twenty_browsers_on_one_job_cost_one_poll_loop_over_http(tmp_path: Path) -> None:
    """Through the real server: 20 open streams on one job, one follower, one poll loop."""
    settings = api_settings(f"sqlite+aiosqlite:///{tmp_path / 'helix.db'}")
    tokens = await _make_tokens(settings)
    app = create_app(settings, workdir=tmp_path, sse_poll=0.05)
    with ServerThread(app) as server:
        api = Api(f"http://127.0.0.1:{server.port}", settings, tokens)
        async with api.client("operator") as op:
            job = (await op.post("/api/v1/jobs", json={"plan": PLAN})).json()["id"]
        async with login(api, "viewer") as (browser, _), AsyncExitStack() as streams:
            calls = {"n": 0}
            store = app.state.engine.store
            real = store.list_events

            async def counted(*args: Any, **kwargs: Any) -> Any:
                calls["n"] += 1
                return await real(*args, **kwargs)

            store.list_events = counted
            opened = []
            for _ in range(20):
                response = await streams.enter_async_context(browser.stream("GET", f"/ui/jobs/{job}/stream"))
                assert response.status_code == 200
                opened.append(response.aiter_lines())
            for lines in opened:
                assert await anext(lines) == "retry: 2000"
            await wait_until(lambda: app.state.feeds.watchers(job) == 20)
            assert app.state.feeds.following() == 1
            calls["n"] = 0
            await asyncio.sleep(1.0)
            assert calls["n"] <= 30, calls["n"]  # 20 loops at 0.05 s would be 400
        await wait_until(lambda: app.state.feeds.following() == 0)


async def test_provider_use_reads_the_fleets_calls_and_holds(store: Store) -> None:
    now = await store.now()
    calls = [
        {
            "provider": "p1",
            "model": "m",
            "ok": i % 4 != 0,
            "prompt_tokens": 1,
            "completion_tokens": 1,
            "cached_tokens": 0,
            "latency_s": 0.5,
            "error": None if i % 4 else f"boom {i}",
            "created_at": now - 100 + i,
        }
        for i in range(20)
    ]
    async with store._write() as conn:
        await conn.execute(llm_calls.insert(), calls)
        await conn.execute(
            llm_limits.insert(),
            [
                {"provider": "p1", "model": "*", "down_until": now + 30, "blocked_until": None},
                {"provider": "p1", "model": "m", "down_until": None, "blocked_until": now + 30},
                {"provider": "p2", "model": "*", "down_until": now - 30, "blocked_until": None},
            ],
        )
    uses, errors = await store.provider_use(["p1", "p2"])
    p1, p2 = uses
    assert (p1.calls, p1.failures, p1.mean_latency_s) == (20, 5, 0.5)
    assert p1.down_until is not None
    assert p1.down_until > now
    assert p1.blocked_models == ("m",)
    assert (p2.calls, p2.down_until, p2.blocked_models) == (0, None, ())  # its hold has passed
    assert [e.error for e in errors] == ["boom 16", "boom 12", "boom 8", "boom 4", "boom 0"]
