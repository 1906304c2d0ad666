"""Notifications end to end, on SQLite and PostgreSQL: job outcomes, pauses, budget stops and lost
workers queue outbox rows in their own transaction; senders deliver them to a local webhook receiver
(signatures verified as a receiver would) and a local SMTP server, retry a receiver that is down or
failing, give up after the target's attempts, and never lose a row when a sender dies holding it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from helixcode.config import NotifySettings, Settings, WorkersSettings
from helixcode.domain.enums import JobStatus
from helixcode.domain.records import WorkerInfo
from helixcode.llm.usage import CallContext
from helixcode.store.store import Store
from helixcode.store.tables import notifications
from helixcode.worker.notify import Notifier
from helixcode.worker.reaper import Reaper
from helixcode.worker.runtime import Worker, WorkerOptions
from tests.helpers import claim_one, run_to_end, spec, t
from tests.notify_receivers import MailReceiver, WebhookReceiver

SECRET = b"s3cret-for-tests"
#: Retries in tens of milliseconds, so that a receiver that is down for a while is tried again soon.
FAST = {"backoff_base": 0.05, "backoff_cap": 0.2, "timeout": 2.0}

OpenNotifyStore = Callable[..., Awaitable[Store]]


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(secret=SECRET).start()
    yield receiver
    receiver.stop()


@pytest.fixture
async def open_notify_store(settings: Settings) -> AsyncIterator[OpenNotifyStore]:
    """A Store on the test's database whose settings have these ``[notify.NAME]`` targets."""
    opened: list[Store] = []

    async def make(workers: WorkersSettings | None = None, **targets: dict[str, Any]) -> Store:
        store = await Store.open(
            Settings(
                database=settings.database,
                tasks=settings.tasks,
                workers=workers or settings.workers,
                notify={name: NotifySettings.model_validate(t) for name, t in targets.items()},
            )
        )
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.aclose()


async def outbox(store: Store) -> list[dict[str, Any]]:
    async with store._read() as conn:
        rows = await conn.execute(sa.select(notifications).order_by(notifications.c.id))
        return [dict(r) for r in rows.mappings()]


async def deliver_until(notifier: Notifier, done: Callable[[], bool], seconds: float = 10.0) -> int:
    """Run delivery passes until ``done()``; returns the passes it took."""
    passes = 0
    async with asyncio.timeout(seconds):
        while not done():
            await notifier.deliver_due()
            passes += 1
            await asyncio.sleep(0.05)
    return passes


async def test_job_outcomes_reach_each_target_that_wants_them_signed(
    open_notify_store: OpenNotifyStore, hook: WebhookReceiver
) -> None:
    store = await open_notify_store(
        all={"url": hook.url("/all"), "secret": SECRET.decode()},
        failures={"url": hook.url("/failures"), "events": ["job.failed"], "secret": SECRET.decode()},
    )
    good = await store.create_job(spec(t("a"), t("b", "a"), name="good job"))
    await run_to_end(store, good.id)
    bad = await store.create_job(spec(t("ok"), t("bad"), t("after", "bad"), name="bad job"))
    await run_to_end(store, bad.id, fail=frozenset({"bad"}))

    async with Notifier(store) as notifier:
        sent = await notifier.deliver_due()
    assert sent.to_dict() == {"delivered": 3, "retrying": 0, "failed": 0}
    assert sorted((r.path, r.json["event"], r.json["job"]["name"]) for r in hook.requests) == [
        ("/all", "job.failed", "bad job"),
        ("/all", "job.succeeded", "good job"),
        ("/failures", "job.failed", "bad job"),
    ]
    assert all(r.signed for r in hook.requests)
    failed = next(r for r in hook.requests if r.path == "/failures")
    assert failed.headers["X-Helix-Event"] == "job.failed"
    assert failed.headers["X-Helix-Delivery"] == str(failed.json["id"])
    assert failed.json["job"]["id"] == bad.id
    assert failed.json["job"]["status"] == "failed"
    assert failed.json["job"]["tasks"] == {"succeeded": 1, "failed": 1, "upstream_failed": 1}
    assert failed.json["job"]["failed_tasks"] == [{"key": "bad", "title": "bad", "error": "bad broke"}]
    assert failed.json["at"].endswith("Z")
    rows = await outbox(store)
    assert [(r["status"], r["attempts"]) for r in rows] == [("delivered", 1)] * 3
    # Nothing is sent twice.
    async with Notifier(store) as notifier:
        assert (await notifier.deliver_due()).total == 0


async def test_no_targets_no_rows(store: Store) -> None:
    job = await store.create_job(spec(t("a")))
    await run_to_end(store, job.id)
    assert await outbox(store) == []


async def test_a_disabled_target_is_sent_nothing(
    open_notify_store: OpenNotifyStore, hook: WebhookReceiver
) -> None:
    store = await open_notify_store(off={"url": hook.url(), "enabled": False})
    job = await store.create_job(spec(t("a")))
    await run_to_end(store, job.id)
    assert await outbox(store) == []


async def test_pauses_cancellation_budget_and_lost_workers(
    open_notify_store: OpenNotifyStore, hook: WebhookReceiver
) -> None:
    store = await open_notify_store(
        WorkersSettings(lost_after=0.2),
        ops={
            "url": hook.url(),
            "format": "json",
            "events": ["job.paused", "job.cancelled", "budget.reached", "worker.lost"],
        },
    )
    paused = await store.create_job(spec(t("a"), name="paused"))
    await store.pause_job(paused.id, "for the weekend")
    await store.cancel_job(paused.id)
    budget = await store.create_job(spec(t("a"), name="budgeted").model_copy(update={"max_cost": 0.01}))
    await store.register_worker(WorkerInfo("w-9", "builder", "host-9", 9, "0", (), {}, 1))
    claim = await claim_one(store, "w-9")
    assert claim.task.job_id == budget.id
    await store.record_call(
        CallContext(budget.id, claim.task.id, claim.attempt, "w-9"),
        provider="p",
        model="m",
        ok=True,
        prompt_tokens=10,
        completion_tokens=10,
        cached_tokens=0,
        latency_s=0.1,
        first_token_s=None,
        error=None,
        cost_usd=0.02,
    )
    await asyncio.sleep(0.3)
    assert (await store.maintain()).workers_lost == 1

    async with Notifier(store) as notifier:
        await notifier.deliver_due()
    got = {r.json["event"]: r.json for r in hook.requests}
    assert sorted(got) == ["budget.reached", "job.cancelled", "job.paused", "worker.lost"]
    assert len(hook.requests) == 4
    assert got["job.paused"]["details"] == {"reason": "for the weekend"}
    assert got["job.paused"]["job"]["pause_reason"] == "for the weekend"
    assert got["job.cancelled"]["job"]["status"] == "cancelled"
    assert got["budget.reached"]["job"]["name"] == "budgeted"
    assert got["budget.reached"]["details"]["reason"].startswith("budget reached: $0.0200")
    lost = got["worker.lost"]
    assert "job" not in lost
    assert lost["worker"]["id"] == "w-9"
    assert lost["worker"]["host"] == "host-9"
    assert lost["worker"]["tasks"] == [{"id": claim.task.id, "job_id": budget.id}]
    # Unsigned: the target has no secret.
    assert "X-Helix-Signature" not in hook.requests[0].headers


async def test_a_receiver_down_for_a_while_gets_it_when_it_is_back(
    open_notify_store: OpenNotifyStore, hook: WebhookReceiver
) -> None:
    store = await open_notify_store(ops={"url": hook.url(), "secret": SECRET.decode(), **FAST})
    hook.stop()  # down: nothing listens on its port
    job = await store.create_job(spec(t("a")))
    await run_to_end(store, job.id)
    async with Notifier(store) as notifier:
        assert (await notifier.deliver_due()).retrying == 1
        [row] = await outbox(store)
        assert row["status"] == "pending"
        assert row["attempts"] == 1
        assert "127.0.0.1" in row["last_error"]
        # Back, but failing twice more before it takes it.
        hook.start()
        hook.answer(500, 503)
        await deliver_until(notifier, lambda: bool(hook.accepted()))
    assert [r.status for r in hook.requests] == [500, 503, 200]
    assert len({r.json["id"] for r in hook.requests}) == 1  # the same notification each time
    assert all(r.signed for r in hook.requests)
    [row] = await outbox(store)
    assert (row["status"], row["attempts"], row["last_error"]) == ("delivered", 4, None)


async def test_retry_after_is_honoured_and_a_target_is_given_up_after_its_attempts(
    open_notify_store: OpenNotifyStore, hook: WebhookReceiver
) -> None:
    store = await open_notify_store(
        slow={"url": hook.url("/slow"), "backoff_base": 0.05, "backoff_cap": 120.0},
        broken={"url": hook.url("/broken"), "max_attempts": 2, **FAST},
    )
    hook.answer(429, path="/slow", headers={"Retry-After": "60"})
    hook.answer(*[500] * 10, path="/broken")
    job = await store.create_job(spec(t("a")))
    await run_to_end(store, job.id)
    async with Notifier(store) as notifier:
        await notifier.deliver_due()
        rows = {r["target"]: r for r in await outbox(store)}
        now = await store.now()
        assert rows["slow"]["next_attempt_at"] - now > 50  # Retry-After: 60, within the cap
        assert "answered 429" in rows["slow"]["last_error"]
        await deliver_until(notifier, lambda: sum(r.path == "/broken" for r in hook.requests) >= 2)
        await asyncio.sleep(0.3)
        await notifier.deliver_due()
    rows = {r["target"]: r for r in await outbox(store)}
    assert rows["broken"]["status"] == "failed"
    assert rows["broken"]["attempts"] == 2
    assert "answered 500" in rows["broken"]["last_error"]
    assert sum(r.path == "/broken" for r in hook.requests) == 2  # given up: never tried again
    listed = await store.list_notifications(status="failed")
    assert [n.target for n in listed] == ["broken"]


async def test_a_sender_that_dies_holding_rows_loses_nothing(
    open_notify_store: OpenNotifyStore, hook: WebhookReceiver
) -> None:
    targets = {"ops": {"url": hook.url(), "secret": SECRET.decode()}}
    doomed = await open_notify_store(**targets)
    job = await doomed.create_job(spec(t("a"), t("b")))
    await run_to_end(doomed, job.id)
    # The first sender claims the row, then dies before sending (its process is gone).
    [held] = await doomed.claim_notifications(["ops"], 10, lease=0.5)
    await doomed.aclose()

    survivor = await open_notify_store(**targets)
    async with Notifier(survivor) as notifier:
        assert (await notifier.deliver_due()).total == 0  # leased: not yet
        await asyncio.sleep(0.6)
        assert (await notifier.deliver_due()).delivered == 1
    assert [r.json["id"] for r in hook.accepted()] == [held.id]
    [row] = await outbox(survivor)
    assert (row["status"], row["attempts"]) == ("delivered", 2)
    # Had the first sender only been slow, its late word would change nothing (its attempt is stale).
    assert not await survivor.mark_delivered(held)
    assert not await survivor.mark_undelivered(held, "late", None)


async def test_two_senders_at_once_deliver_each_row_once(
    open_notify_store: OpenNotifyStore, hook: WebhookReceiver
) -> None:
    targets = {"ops": {"url": hook.url()}}
    first = await open_notify_store(**targets)
    second = await open_notify_store(**targets)
    for i in range(12):
        job = await first.create_job(spec(t("a"), name=f"job-{i}"))
        await run_to_end(first, job.id)
    async with Notifier(first, batch=5) as a, Notifier(second, batch=5) as b:
        for _ in range(4):
            await asyncio.gather(a.deliver_due(), b.deliver_due())
    ids = [r.json["id"] for r in hook.accepted()]
    assert len(ids) == 12
    assert len(set(ids)) == 12


async def test_email_through_a_local_smtp_server(open_notify_store: OpenNotifyStore) -> None:
    mail = MailReceiver().start()
    try:
        store = await open_notify_store(
            mail={
                "url": mail.url,
                "to": ["oncall@example.com", "lead@example.com"],
                "from": "helix@example.com",
            }
        )
        job = await store.create_job(spec(t("compile"), name="nightly build"))
        await run_to_end(store, job.id, fail=frozenset({"compile"}))
        async with Notifier(store) as notifier:
            assert (await notifier.deliver_due()).delivered == 1
    finally:
        mail.stop()
    [message] = mail.messages
    assert message["Subject"] == "[helix] job 'nightly build' failed"
    assert message["From"] == "helix@example.com"
    assert message["To"] == "oncall@example.com, lead@example.com"
    assert mail.envelopes == [("helix@example.com", ["oncall@example.com", "lead@example.com"])]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert text.startswith(f"HelixCode job 'nightly build' ({job.id}) failed: 1 failed; task 'compile'")
    assert "compile broke" in text


async def test_a_mail_server_that_is_down_is_retried(open_notify_store: OpenNotifyStore) -> None:
    mail = MailReceiver()  # not started yet
    store = await open_notify_store(
        mail={"url": mail.url, "to": ["a@example.com"], "from": "h@example.com", **FAST}
    )
    job = await store.create_job(spec(t("a"), name="later"))
    await run_to_end(store, job.id)
    async with Notifier(store) as notifier:
        assert (await notifier.deliver_due()).retrying == 1
        mail.start()
        try:
            await deliver_until(notifier, lambda: bool(mail.messages))
        finally:
            mail.stop()
    assert mail.messages[0]["Subject"] == "[helix] job 'later' succeeded"


async def test_the_reapers_leader_delivers_and_a_stopping_worker_flushes(
    open_notify_store: OpenNotifyStore, hook: WebhookReceiver, settings: Settings
) -> None:
    store = await open_notify_store(ops={"url": hook.url(), "format": "slack"})
    job = await store.create_job(spec(t("a"), name="via reaper"))
    await run_to_end(store, job.id)
    reaper = Reaper(store, "leader", interval=0.05)
    assert await reaper.tick() is not None
    await reaper.notifications_sent()
    [first] = hook.accepted()
    assert first.json == {"text": f"HelixCode job 'via reaper' ({job.id}) succeeded: 1 succeeded"}

    # A worker that runs a job's last task sends its outcome before it exits, leader or not.
    other = await store.create_job(spec(t("b"), name="via worker"))
    worker = Worker(
        store,
        store.settings,
        WorkerOptions(concurrency=1, exit_when_idle=True, detect=False, sample_gpu=False),
    )
    async with asyncio.timeout(30):
        await worker.run()
    assert (await store.job_summary(other.id)).job.status is JobStatus.SUCCEEDED
    assert [r.json["text"].split(" (")[0] for r in hook.accepted()] == [
        "HelixCode job 'via reaper'",
        "HelixCode job 'via worker'",
    ]


async def test_old_rows_are_pruned_with_the_events(
    open_notify_store: OpenNotifyStore, hook: WebhookReceiver
) -> None:
    store = await open_notify_store(ops={"url": hook.url()})
    old = await store.create_job(spec(t("a"), name="old"))
    await run_to_end(store, old.id)
    new = await store.create_job(spec(t("a"), name="new"))
    await run_to_end(store, new.id)
    async with store._write() as conn:
        await conn.execute(
            notifications.update()
            .where(notifications.c.job_id == old.id)
            .values(created_at=notifications.c.created_at - 31 * 86_400)
        )
    pruned = await store.prune()
    assert pruned.notifications == 1
    assert [n.job_id for n in await store.list_notifications()] == [new.id]
