"""Jobs and tasks through real HTTP: submit, list, show, control, task detail, and problem documents."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from helixcode.domain.models import Beat
from helixcode.domain.records import WorkerInfo
from helixcode.store.store import Store
from tests.integration.api.conftest import PLAN, Api


async def _run_one(store: Store, key: str, *, ok: bool = True) -> None:
    [claim] = await store.claim("w-test", limit=1)
    assert claim.task.key == key
    await store.save_checkpoint(claim.task.id, claim.token, "half", {"done": 1})
    if ok:
        await store.complete(claim.task.id, claim.token, {"summary": f"{key} done"})
    else:
        await store.fail(claim.task.id, claim.token, "boom", retryable=False)


async def test_submit_run_and_control_a_job(api: Api, admin: httpx.AsyncClient) -> None:
    created = await admin.post("/api/v1/jobs", json={"plan": PLAN})
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["name"] == "api-demo"
    assert job["tasks"] == 3
    assert job["status"] == "running"
    assert created.headers["location"].endswith(job["id"])

    listed = (await admin.get("/api/v1/jobs")).json()
    assert [j["id"] for j in listed] == [job["id"]]
    shown = (await admin.get(f"/api/v1/jobs/{job['id'][:6]}")).json()
    assert shown["id"] == job["id"]
    assert shown["counts"] == {"ready": 1, "blocked": 2}

    ready = (await admin.get(f"/api/v1/jobs/{job['id']}/tasks", params={"status": "ready"})).json()
    assert [t["key"] for t in ready] == ["a"]
    testing = (await admin.get(f"/api/v1/jobs/{job['id']}/tasks", params={"type": "testing"})).json()
    assert [t["key"] for t in testing] == ["b", "c"]

    async with await Store.open(api.settings) as store:
        await _run_one(store, "a")
        await _run_one(store, "b")
        await _run_one(store, "c", ok=False)

    detail = (await admin.get(f"/api/v1/jobs/{job['id']}/tasks/c")).json()
    assert detail["task"]["status"] == "failed"
    assert [(a["attempt"], a["outcome"], a["error"]) for a in detail["attempts"]] == [(1, "failed", "boom")]
    assert detail["checkpoints"][0]["data"] == {"done": 1}
    assert {"claimed", "checkpoint", "failed"} <= {e["kind"] for e in detail["events"]}
    assert all(e["task_key"] == "c" for e in detail["events"])
    assert (await admin.get(f"/api/v1/jobs/{job['id']}")).json()["status"] == "failed"

    retried = await admin.post(f"/api/v1/jobs/{job['id']}/tasks/c/retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "running"
    assert retried.json()["counts"]["ready"] == 1
    skipped = (await admin.post(f"/api/v1/jobs/{job['id']}/tasks/c/skip")).json()
    assert skipped["status"] == "succeeded"
    assert skipped["counts"] == {"succeeded": 2, "skipped": 1}


async def test_pause_resume_cancel(api: Api) -> None:
    async with api.client("operator") as op:
        job = (await op.post("/api/v1/jobs", json={"plan": PLAN})).json()["id"]
        paused = await op.post(f"/api/v1/jobs/{job}/pause", json={"reason": "lunch"})
        assert paused.json()["status"] == "paused"
        assert paused.json()["pause_reason"] == "lunch"
        assert (await op.post(f"/api/v1/jobs/{job}/resume")).json()["status"] == "running"
        cancelled = (await op.post(f"/api/v1/jobs/{job}/cancel")).json()
        assert cancelled == {"job_id": job, "cancelled": 3}
        again = await op.post(f"/api/v1/jobs/{job}/pause")
        assert again.status_code == 409
        assert again.headers["content-type"] == "application/problem+json"
        assert again.json()["title"] == "Conflict"
        assert "cancelled" in again.json()["detail"]


async def test_submit_a_goal(api: Api, admin: httpx.AsyncClient) -> None:
    created = await admin.post("/api/v1/jobs", json={"goal": "add a --version flag\nand test it"})
    assert created.status_code == 201
    tasks = (await admin.get(f"/api/v1/jobs/{created.json()['id']}/tasks")).json()
    assert [(t["key"], t["type"], t["title"]) for t in tasks] == [
        ("plan", "planning", "add a --version flag")
    ]


async def test_a_goal_on_a_remote_repository_keeps_its_url(
    api: Api, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    """A repository URL is where agent tasks clone from: it must not be turned into a local path."""
    url = "https://git.example.com/team/app.git"
    created = await admin.post("/api/v1/jobs", json={"goal": "add a --version flag", "workdir": url})
    assert created.status_code == 201
    assert created.json()["workdir"] == url
    local = await admin.post("/api/v1/jobs", json={"goal": "add a --version flag", "workdir": "sub/dir"})
    base = await asyncio.to_thread(tmp_path.resolve)
    assert local.json()["workdir"] == str(base / "sub" / "dir")


async def test_bad_input_is_a_4xx_problem_naming_the_field(api: Api, admin: httpx.AsyncClient) -> None:
    bad_type = {"plan": {"tasks": [{"id": "a", "type": "cooking", "title": "x"}]}}
    r = await admin.post("/api/v1/jobs", json=bad_type)
    assert r.status_code == 422
    assert r.json()["status"] == 422
    assert "body.plan.tasks.0.type" in [e["field"] for e in r.json()["errors"]]

    two = [{"id": k, "type": "design", "title": k, "depends_on": [d]} for k, d in (("a", "b"), ("b", "a"))]
    r = await admin.post("/api/v1/jobs", json={"plan": {"tasks": two}})
    assert r.status_code == 422
    assert "cycle" in r.json()["detail"]

    r = await admin.post("/api/v1/jobs", json={"plan": PLAN, "goal": "both"})
    assert r.status_code == 422
    assert "exactly one" in r.json()["detail"]

    r = await admin.post("/api/v1/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"].startswith("body")

    r = await admin.get("/api/v1/jobs", params={"limit": "many"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "query.limit"

    r = await admin.get("/api/v1/jobs/nope")
    assert r.status_code == 404
    assert r.json()["detail"] == "no job 'nope'"
    r = await admin.get("/api/v1/nowhere")
    assert r.status_code == 404
    assert r.json()["instance"] == "/api/v1/nowhere"

    huge = {"goal": "x" * (api.settings.api.max_body_bytes + 1)}
    r = await admin.post("/api/v1/jobs", json=huge)
    assert r.status_code == 413
    assert r.json()["title"] == "Content Too Large"


async def test_workers_providers_health_and_metrics(api: Api, admin: httpx.AsyncClient) -> None:
    assert (await admin.get("/healthz")).json() == {"status": "ok"}
    assert (await admin.get("/readyz")).json() == {"status": "ok"}
    assert (await admin.get("/api/v1/workers")).json() == []
    [provider] = (await admin.get("/api/v1/providers")).json()
    assert provider["name"] == "offline"
    assert provider["healthy"] is False
    assert [m["name"] for m in provider["models"]] == ["m1"]

    job = (await admin.post("/api/v1/jobs", json={"plan": PLAN})).json()["id"]
    async with await Store.open(api.settings) as store:
        await _run_one(store, "a")
        await store.rollup_metrics()  # the reaper's leader does this every tick
    metrics = await admin.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'helix_queue_depth{priority="normal",status="ready"} 2.0' in text
    assert 'helix_tasks_claimed_total{type="building"} 1.0' in text
    assert 'helix_tasks_succeeded_total{type="building"} 1.0' in text
    assert "helix_jobs_created_total 1.0" in text
    assert job


async def test_a_workers_resource_history(api: Api, admin: httpx.AsyncClient) -> None:
    """What `helix watch --server` draws its sparklines from: the samples the worker's heartbeats
    stored, oldest first, for a worker named by id, name or id prefix; an unknown one is a 404."""
    async with await Store.open(api.settings) as store:
        await store.register_worker(WorkerInfo("w-sampled-1", "sampled", "host", 1, "test", (), {}, 2))
        for cpu in (10.0, 50.0):
            await store.heartbeat([Beat("w-sampled-1")], resources={"cpu_percent": cpu})
    for ref in ("w-sampled-1", "sampled", "w-samp"):
        body = (await admin.get(f"/api/v1/workers/{ref}/history")).json()
        assert body["worker"]["id"] == "w-sampled-1"
        assert [s["resources"]["cpu_percent"] for s in body["samples"]] == [10.0, 50.0]
    last = body["samples"][-1]["at"]
    later = (await admin.get("/api/v1/workers/sampled/history", params={"since": last + 1})).json()
    assert later["samples"] == []
    missing = await admin.get("/api/v1/workers/nobody/history")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no worker 'nobody'"
