"""``/metrics`` through real HTTP: the fleet's counters and histograms from the rollup, valid
Prometheus text, the same from any API process, and only for a viewer's token or better."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from helixcode.llm.usage import CallContext
from helixcode.store.store import Store
from tests.integration.api.conftest import PLAN, Api


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_show_the_rolled_up_fleet(api: Api, admin: httpx.AsyncClient) -> None:
    job = (await admin.post("/api/v1/jobs", json={"plan": PLAN})).json()["id"]
    async with await Store.open(api.settings) as store:  # a worker, elsewhere
        [claim] = await store.claim("w-test")
        for latency, ok in ((0.3, True), (4.0, False)):
            await store.record_call(
                CallContext(job, claim.task.id, claim.attempt, "w-test"),
                provider="openai",
                model="gpt-x",
                ok=ok,
                prompt_tokens=100,
                completion_tokens=20,
                cached_tokens=0,
                latency_s=latency,
                first_token_s=0.2,
                error=None if ok else "overloaded",
                cost_usd=0.01,
            )
        await store.complete(claim.task.id, claim.token)
        await store.rollup_metrics()

    response = await admin.get("/metrics")
    assert response.status_code == 200
    got = samples(response.text)

    def at(name: str, **labels: str) -> float:
        return got[(name, frozenset(labels.items()))]

    model = {"provider": "openai", "model": "gpt-x"}
    assert at("helix_llm_calls_total", **model, outcome="ok") == 1
    assert at("helix_llm_calls_total", **model, outcome="error") == 1
    assert at("helix_llm_tokens_total", **model, kind="prompt") == 200
    assert at("helix_llm_latency_seconds_bucket", **model, le="0.5") == 1
    assert at("helix_llm_latency_seconds_bucket", **model, le="+Inf") == 2
    assert at("helix_llm_latency_seconds_count", **model) == 2
    assert at("helix_llm_latency_seconds_sum", **model) == 4.3
    assert at("helix_llm_ttft_seconds_count", **model) == 2
    assert at("helix_tasks_claimed_total", type="building") == 1
    assert at("helix_task_duration_seconds_count", type="building", outcome="succeeded") == 1
    assert at("helix_claim_latency_seconds_count", type="building") == 1
    assert at("helix_queue_depth", priority="normal", status="ready") == 2
    assert at("helix_queue_depth", priority="high", status="running") == 0
    assert at("helix_jobs_created_total") == 1
    assert ("helix_metrics_rollup_timestamp_seconds", frozenset({("log", "events")})) in got


async def test_metrics_need_a_token(api: Api) -> None:
    async with api.client(None) as anon:
        assert (await anon.get("/metrics")).status_code == 401
    async with api.client("viewer") as viewer:
        assert (await viewer.get("/metrics")).status_code == 200
