"""Fleet metrics: the logs rolled up into durable counters that count every row once, never go down
(not when the logs are pruned, not when two rollups race), and a scrape that never reads the logs."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from helixcode.config import DatabaseSettings, Settings
from helixcode.domain import metrics as m
from helixcode.domain.enums import JobStatus
from helixcode.llm.usage import CallContext
from helixcode.store.metrics import Rollup
from helixcode.store.store import Store
from helixcode.store.tables import events, llm_calls, metric_cursors
from helixcode.worker.reaper import Reaper
from tests.helpers import OpenStore, age, claim_one, run_to_end, spec, t

Counters = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def counters(store: Store) -> Counters:
    return {(s.name, frozenset(s.labels.items())): s.value for s in (await store.metrics_snapshot()).samples}


def at(values: Counters, name: str, **labels: str) -> float:
    return values.get((name, frozenset(labels.items())), 0.0)


async def record_call(store: Store, context: CallContext, latency: float, **fields: Any) -> None:
    values: dict[str, Any] = {
        "provider": "p",
        "model": "m",
        "ok": True,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cached_tokens": 2,
        "first_token_s": 0.1,
        "error": None,
        "cost_usd": 0.002,
        **fields,
    }
    await store.record_call(context, latency_s=latency, **values)


async def run_a_mixed_job(store: Store) -> str:
    """``a`` (building) succeeds; ``b`` (testing) fails once and succeeds on its retry; ``c`` (testing)
    fails for good, so the job fails. Three model calls: two ok, one error."""
    job = await store.create_job(
        spec(t("a"), t("b", type="testing", max_attempts=2), t("c", type="testing", max_attempts=1))
    )
    claims = {c.task.key: c for c in await store.claim("w1", limit=3)}
    a, b, c = claims["a"], claims["b"], claims["c"]
    context = CallContext(job.id, a.task.id, a.attempt, "w1")
    await record_call(store, context, 0.3)
    await record_call(store, context, 1.2, first_token_s=None)
    await record_call(store, context, 7.0, ok=False, prompt_tokens=0, completion_tokens=0, cached_tokens=0)
    await store.complete(a.task.id, a.token)
    await store.fail(b.task.id, b.token, "flaky")
    await store.fail(c.task.id, c.token, "broken", retryable=False)
    await asyncio.sleep(0.6)  # past the retry's backoff (at most backoff_cap)
    await store.maintain()
    retry = await claim_one(store)
    assert retry.task.key == "b"
    await store.complete(retry.task.id, retry.token)
    assert (await store.job_summary(job.id)).job.status is JobStatus.FAILED
    return job.id


async def event_counts(store: Store) -> dict[str, int]:
    async with store._read() as conn:
        rows = await conn.execute(sa.select(events.c.kind, sa.func.count()).group_by(events.c.kind))
        return {str(kind): int(n) for kind, n in rows}


async def test_a_job_is_counted_exactly_and_only_once(store: Store) -> None:
    await run_a_mixed_job(store)
    logged = await event_counts(store)

    rolled = await store.rollup_metrics()

    assert rolled == Rollup(events=sum(logged.values()), llm_calls=3, more=False)
    got = await counters(store)
    assert {kind: at(got, "helix_events_total", kind=kind) for kind in logged} == logged
    assert at(got, "helix_jobs_created_total") == 1
    assert at(got, "helix_jobs_finished_total", status="failed") == 1
    assert at(got, "helix_tasks_claimed_total", type="building") == 1
    assert at(got, "helix_tasks_claimed_total", type="testing") == 3
    assert at(got, "helix_tasks_succeeded_total", type="building") == 1
    assert at(got, "helix_tasks_succeeded_total", type="testing") == 1
    assert at(got, "helix_tasks_retried_total", type="testing") == 1
    assert at(got, "helix_tasks_failed_total", type="testing") == 1
    assert at(got, "helix_tasks_failed_total", type="building") == 0
    assert at(got, "helix_lease_losses_total", type="testing") == 0

    duration = m.TASK_DURATION.bucket
    assert at(got, duration, type="building", outcome="succeeded", le="+Inf") == 1
    assert at(got, duration, type="testing", outcome="succeeded", le="+Inf") == 1
    assert at(got, duration, type="testing", outcome="failed", le="+Inf") == 2  # the retried and the failed
    assert at(got, m.CLAIM_LATENCY.bucket, type="testing", le="+Inf") == 3
    assert at(got, m.CLAIM_LATENCY.bucket, type="building", le="+Inf") == 1
    assert at(got, m.CLAIM_LATENCY.bucket, type="building", le="3600.0") == 1

    model = {"provider": "p", "model": "m"}
    assert at(got, "helix_llm_calls_total", **model, outcome="ok") == 2
    assert at(got, "helix_llm_calls_total", **model, outcome="error") == 1
    assert at(got, "helix_llm_tokens_total", **model, kind="prompt") == 20
    assert at(got, "helix_llm_tokens_total", **model, kind="completion") == 10
    assert at(got, "helix_llm_tokens_total", **model, kind="cached") == 4
    assert at(got, "helix_llm_cost_usd_total", **model) == pytest.approx(0.006)
    latency = m.LLM_LATENCY.bucket
    assert [at(got, latency, **model, le=le) for le in ("0.25", "0.5", "2.5", "5.0", "10.0", "+Inf")] == [
        0,
        1,
        2,
        2,
        3,
        3,
    ]
    assert at(got, m.LLM_LATENCY.sum, **model) == pytest.approx(8.5)
    assert at(got, m.LLM_TTFT.bucket, **model, le="+Inf") == 2

    # Nothing new: nothing counted, nothing written.
    assert await store.rollup_metrics() == Rollup()
    assert await counters(store) == got


async def test_counters_never_go_down_when_the_logs_are_pruned(store: Store) -> None:
    job = await run_a_mixed_job(store)
    await store.rollup_metrics()
    before = await counters(store)
    await age(store, job, 40)

    pruned = await store.prune(jobs_days=1, events_days=1)

    assert pruned.jobs == 1
    assert pruned.llm_calls == 3
    assert await event_counts(store) == {}
    assert await store.rollup_metrics() == Rollup()
    assert await counters(store) == before
    # The logs start again from empty (on SQLite, with the ids of the rows pruned): all counted.
    again = await store.create_job(spec(t("x")))
    await run_to_end(store, again.id)
    await store.rollup_metrics()
    after = await counters(store)
    assert at(after, "helix_jobs_created_total") == 2
    assert at(after, "helix_tasks_succeeded_total", type="building") == 2
    assert at(after, "helix_tasks_claimed_total", type="building") == 2


async def test_pruning_counts_before_it_deletes(store: Store) -> None:
    job = await run_a_mixed_job(store)
    await age(store, job, 40)

    await store.prune(jobs_days=1, events_days=1)  # no rollup has run yet

    got = await counters(store)
    assert at(got, "helix_tasks_claimed_total", type="testing") == 3
    assert at(got, "helix_llm_calls_total", provider="p", model="m", outcome="ok") == 2


async def test_a_refused_landing_counts_as_a_sandbox_refusal(store: Store) -> None:
    job = await store.create_job(spec(t("a", type="design")))
    claim = await claim_one(store)
    await store.record_refusal(claim.task.id, "stale", "landing_refused", 1, "w1", reason="lease lost")
    await store.rollup_metrics()
    got = await counters(store)
    assert at(got, "helix_sandbox_refusals_total", kind="landing") == 1
    assert at(got, "helix_tasks_claimed_total", type="design") == 1
    assert job.id


async def test_the_rollups_query_places_values_in_buckets_as_observe_does(store: Store) -> None:
    """The rollup groups a batch in SQL, buckets included: every value lands where ``Deltas.observe``
    puts it, bounds themselves, zero, negatives (counted as zero) and past the last bound alike; and
    events of many kinds, sandbox refusals by kind, and the sums come out as counted one by one."""
    job = await store.create_job(spec(t("a"), t("b", type="testing")))
    ids = {c.task.key: c.task.id for c in await store.claim("w1", limit=2)}
    durations = [0.0, -2.5, 0.01, 0.05, 0.0105, 1.0, 7199.999, 7200.0, 7200.001, 1e9, 0.3, 0.3, 0.3]
    waits = [0.005, 0.004999, 0.0, -1.0, 3600.0, 3600.5, 0.05, 0.05]
    rows: list[dict[str, Any]] = [
        {"task_id": ids["a"], "kind": "succeeded", "details": {"duration": d}} for d in durations
    ]
    rows += [{"task_id": ids["b"], "kind": "claimed", "details": {"wait": w}} for w in waits]
    rows += [{"task_id": ids["b"], "kind": "claimed", "details": {}}]  # no wait recorded
    rows += [
        {"task_id": ids["b"], "kind": "sandbox_refused", "details": {"counts": {"command": 2, "path": 1}}}
        for _ in range(3)
    ]
    await store.rollup_metrics()  # the claims' own events
    before = await counters(store)
    async with store._write() as conn:
        await conn.execute(
            events.insert(),
            [{"job_id": job.id, "created_at": 0.0, "attempt": 1, "worker_id": "w1", **r} for r in rows],
        )
    await store.rollup_metrics()
    got = await counters(store)

    expected = m.Deltas()
    for d in durations:
        expected.observe(m.TASK_DURATION, max(0.0, d), type="building", outcome="succeeded")
    for w in waits:
        expected.observe(m.CLAIM_LATENCY, max(0.0, w), type="testing")
    want = {(name, frozenset(json.loads(labels).items())): v for (name, labels), v in expected.items()}
    for (name, labels), value in want.items():
        gained = got.get((name, labels), 0.0) - before.get((name, labels), 0.0)
        assert gained == pytest.approx(value), (name, dict(labels))
    assert at(got, "helix_sandbox_refusals_total", kind="command") == 6
    assert at(got, "helix_sandbox_refusals_total", kind="path") == 3
    claimed = at(got, "helix_tasks_claimed_total", type="testing") - at(
        before, "helix_tasks_claimed_total", type="testing"
    )
    assert claimed == len(waits) + 1
    assert at(got, "helix_events_total", kind="succeeded") == len(durations)


async def test_racing_rollups_count_each_row_once(store: Store, open_store: OpenStore) -> None:
    other = await open_store()
    job = await store.create_job(spec(*[t(f"k{i}") for i in range(40)]))
    await run_to_end(store, job.id, limit=7)
    logged = await event_counts(store)

    async def roll(s: Store) -> int:
        counted = 0
        while True:
            done = await s.rollup_metrics(max_batches=1, batch=9)
            counted += done.events
            if not done.more and done.events == 0:
                return counted

    counted = await asyncio.gather(roll(store), roll(other), roll(store), roll(other))

    assert sum(counted) == sum(logged.values())
    got = await counters(other)
    assert {kind: at(got, "helix_events_total", kind=kind) for kind in logged} == logged
    assert at(got, "helix_tasks_succeeded_total", type="building") == 40


async def test_the_reapers_leader_rolls_up_every_tick(store: Store) -> None:
    job = await store.create_job(spec(t("a"), t("b", "a")))
    await run_to_end(store, job.id)
    reaper = Reaper(store, "w1", interval=0.05)
    await reaper.tick()
    assert at(await counters(store), "helix_tasks_succeeded_total", type="building") == 2


@contextmanager
def statements(store: Store) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    sa.event.listen(store.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(store.engine.sync_engine, "before_cursor_execute", record)


async def test_a_scrape_never_reads_the_logs(store: Store) -> None:
    await run_a_mixed_job(store)
    await store.rollup_metrics()
    with statements(store) as small:
        await store.metrics_snapshot()
    job = await store.create_job(spec(*[t(f"k{i}") for i in range(60)]))
    await run_to_end(store, job.id, limit=20)
    await store.rollup_metrics()
    with statements(store) as large:
        snapshot = await store.metrics_snapshot()

    assert small == large
    assert len([s for s in large if s.startswith("SELECT")]) == 3
    logs = re.compile(r"\b(events|llm_calls)\b")
    assert not [s for s in large if logs.search(s)]
    assert snapshot.queue_depth == {}  # nothing unfinished
    assert set(snapshot.rolled_up_at) == {"events", "llm_calls"}


async def test_queue_depth_counts_unfinished_tasks_by_priority_and_status(store: Store) -> None:
    await store.create_job(spec(t("a", priority="high"), t("b", "a"), t("c"), t("d", priority="low")))
    await claim_one(store)  # a: high first
    snapshot = await store.metrics_snapshot()
    assert snapshot.queue_depth == {
        ("high", "running"): 1,
        ("normal", "blocked"): 1,
        ("normal", "ready"): 1,
        ("low", "ready"): 1,
    }


@pytest.fixture
def pg_settings(pg_database: str) -> Settings:
    return Settings(database=DatabaseSettings(url=pg_database))


async def gaps(store: Store) -> list[Any]:
    async with store._read() as conn:
        return list(
            (
                await conn.execute(
                    sa.select(metric_cursors.c.gaps).where(metric_cursors.c.source == "events")
                )
            ).scalar_one()
        )


@pytest.mark.postgres
async def test_postgres_an_event_committed_after_a_later_one_is_counted_once(pg_settings: Settings) -> None:
    async with await Store.open(pg_settings) as store, await Store.open(pg_settings) as other:
        job = await store.create_job(spec(t("a")))
        late = events.insert().values(job_id=job.id, kind="late", details={}, created_at=0.0)
        async with other.engine.connect() as slow:
            await slow.exec_driver_sql("BEGIN")
            await slow.execute(late)  # takes an id, and holds it uncommitted
            async with store._write() as conn:
                await conn.execute(late)  # a later id, committed
            await store.rollup_metrics()
            assert at(await counters(store), "helix_events_total", kind="late") == 1
            assert len(await gaps(store)) == 1
            await slow.exec_driver_sql("COMMIT")
        await store.rollup_metrics()
        assert at(await counters(store), "helix_events_total", kind="late") == 2
        assert await gaps(store) == []
        await store.rollup_metrics()
        assert at(await counters(store), "helix_events_total", kind="late") == 2


@pytest.mark.postgres
async def test_postgres_a_rolled_back_id_is_never_counted_and_its_gap_is_given_up(
    pg_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(m, "GAP_SETTLE_SECONDS", 0.0)
    async with await Store.open(pg_settings) as store, await Store.open(pg_settings) as other:
        job = await store.create_job(spec(t("a")))
        lost = events.insert().values(job_id=job.id, kind="lost", details={}, created_at=0.0)
        async with other.engine.connect() as slow:
            await slow.exec_driver_sql("BEGIN")
            await slow.execute(lost)
            async with store._write() as conn:
                await conn.execute(lost.values(kind="kept"))
            await store.rollup_metrics()
            assert len(await gaps(store)) == 1
            await slow.exec_driver_sql("ROLLBACK")
        for _ in range(100):  # until no transaction of the gap's time runs (in the whole cluster)
            await store.rollup_metrics()
            if not await gaps(store):
                break
            await asyncio.sleep(0.1)
        assert await gaps(store) == []
        got = await counters(store)
        assert at(got, "helix_events_total", kind="lost") == 0
        assert at(got, "helix_events_total", kind="kept") == 1
        async with store._read() as conn:
            calls = (await conn.execute(sa.select(sa.func.count()).select_from(llm_calls))).scalar_one()
        assert calls == 0
