"""The worker: claim tasks, run them with executors, keep their leases alive, drain on request.

Three loops share one process: the claim loop (fills free slots, runs maintenance when idle), the
process's heartbeat (``worker.heartbeats``: renews the held leases of every worker of the process in one
round trip and cancels attempts whose lease is gone or whose job was cancelled) and one runner per task.
The database stays the source of truth: a worker holds nothing that another could not resume from the
latest checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from helixcode import __version__, tracing
from helixcode.agent.executors import AlreadyReported, TaskContext, executor_for, load_executors
from helixcode.config import Settings, mask_url
from helixcode.domain.enums import Criticality, TaskStatus
from helixcode.domain.models import Beat, Claim, LeaseState
from helixcode.domain.records import WorkerInfo
from helixcode.errors import DatabaseUnavailable, LeaseLost, StoreError, TaskFailed
from helixcode.llm.errors import BudgetReached
from helixcode.llm.usage import AttemptTally, CallContext, attempt_scope
from helixcode.logsetup import log_fields
from helixcode.store.store import Store
from helixcode.worker.acks import AckBatcher, Completion
from helixcode.worker.capabilities import detect_capabilities, llm_capabilities, sandbox_probe
from helixcode.worker.heartbeats import BeatHub
from helixcode.worker.reaper import Reaper
from helixcode.worker.wakeup import WakeHub

__all__ = ["Worker", "WorkerOptions"]

log = logging.getLogger(__name__)


@dataclass
class WorkerOptions:
    concurrency: int = 2
    capabilities: Sequence[str] = ()
    exit_when_idle: bool = False
    name: str | None = None
    min_criticality: Criticality | None = None
    detect: bool = True  # add detected capabilities (toolchains, GPUs) to the configured ones
    reaper: bool = True  # stand for reaper leadership
    sample_gpu: bool = True
    # Successes that finish in the same turn of the event loop are written (and their slots refilled)
    # in one statement; None: as ``[workers] batch_acks`` says. Only with concurrency above 1.
    batch_acks: bool | None = None


@dataclass
class _Running:
    claim: Claim
    runner: asyncio.Task[None]
    stop_reason: str | None = None
    # The executor is done and its outcome is being written. The write is fenced by the lease token, so
    # a heartbeat that finds the lease gone must not cancel it: it may be gone because the success
    # was just written, and a cancelled runner would leave that success uncounted.
    recording: bool = False
    # The runner has begun: one cancelled before its first step never runs its own clean-up (the
    # hand-back of a draining worker), so the drain does it for it.
    started: bool = False


@dataclass
class WorkerStats:
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    abandoned: int = 0
    handed_back: int = 0
    started: float = field(default_factory=time.monotonic)

    def describe(self, worker: str) -> str:
        """``worker w-1 stopped: 12 succeeded, 1 failed, 0 handed back, 0 abandoned in 34.2s``."""
        return (
            f"worker {worker} stopped: {self.succeeded} succeeded, {self.failed} failed, "
            f"{self.handed_back} handed back, {self.abandoned} abandoned "
            f"in {time.monotonic() - self.started:.1f}s"
        )


class Worker:
    """One worker process's runtime. ``await worker.run()``; ``worker.stop()`` drains it."""

    def __init__(self, store: Store, settings: Settings, options: WorkerOptions) -> None:
        self.store = store
        self.settings = settings
        self.options = options
        host = socket.gethostname()
        self.id = f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.name = options.name or f"{host}:{os.getpid()}"
        detected = [*detect_capabilities(), *llm_capabilities(settings)] if options.detect else []
        #: Whether model-chosen commands can be confined here; agent tasks require ``sandbox``.
        self.sandbox = sandbox_probe(settings)
        self.capabilities = tuple(sorted({*options.capabilities, *detected, *self.sandbox.capabilities()}))
        load_executors()  # before the loops start, not inside the first attempt (see load_executors)
        self.stats = WorkerStats()
        self.reaper: Reaper | None = None  # the process's, once running (``Reaper.shared``)
        self._running: dict[int, _Running] = {}
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._hub: WakeHub | None = None  # the process's LISTEN, shared by its workers
        self._beats: BeatHub | None = None  # the process's heartbeat, shared by its workers
        batch = settings.workers.batch_acks if options.batch_acks is None else options.batch_acks
        self._acks = (
            AckBatcher(self._ack_batch, options.concurrency) if batch and options.concurrency > 1 else None
        )

    # -- lifecycle ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; finish running tasks within the drain timeout, then hand back the rest."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> WorkerStats:
        """Work until stopped (or idle, with ``exit_when_idle``); every record logged meanwhile, by its
        loops and its tasks, names this worker."""
        with log_fields(worker=self.id):
            await self._run()
        if tracing.active():
            await asyncio.to_thread(tracing.flush)  # the spans of its last attempts, before it exits
        log.info(
            "%s",
            self.stats.describe(self.id),
            extra={"action": "worker.stop", "worker": self.id, **self._counts()},
        )
        return self.stats

    def _counts(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self.stats).items() if k != "started"} | {
            "duration": round(time.monotonic() - self.stats.started, 3)
        }

    async def _run(self) -> None:
        beats = self._beats = BeatHub.shared(self.store, with_gpu=self.options.sample_gpu)
        await self.store.register_worker(
            WorkerInfo(
                id=self.id,
                name=self.name,
                host=socket.gethostname(),
                pid=os.getpid(),
                version=__version__,
                capabilities=self.capabilities,
                resources=beats.static,
                concurrency=self.options.concurrency,
            )
        )
        log.info(
            "worker started",
            extra={
                "action": "worker.start",
                "worker": self.id,
                "worker_name": self.name,
                "concurrency": self.options.concurrency,
                "capabilities": list(self.capabilities),
                "sandbox": "off" if self.sandbox.mode == "off" else self.sandbox.backend or "none",
                "database": mask_url(self.settings.database.url),
            },
        )
        beats.join(self)
        if self.options.reaper:
            self.reaper = Reaper.shared(self.store)
            self.reaper.join(self.stop)
        db = self.settings.database
        if self.store.dialect == "postgresql" and db.listen:
            self._hub = WakeHub.shared(db.listen_url or db.url)
            self._hub.join(self._wake)
        try:
            await self._claim_loop()
            await self._drain()
        finally:
            await beats.leave(self)
            if self._hub is not None:
                await self._hub.leave(self._wake)
            if self.reaper is not None:
                await self.reaper.leave(self.stop)
            await self._deregister()

    async def _deregister(self, within: float = 5.0) -> None:
        """Mark this worker stopped, so that ``helix workers`` shows a clean stop, not a worker lost
        ``lost_after`` later. Retried for a few seconds while the database is unavailable (a SQLite
        file locked by a busy neighbour, a server restarting): a stop must not wait on a database that
        is gone, and the reaper calls such a worker lost in the end. A failure is logged, never silent."""
        delay, deadline = 0.1, time.monotonic() + within
        while True:
            try:
                await self.store.deregister_worker(self.id)
                return
            except DatabaseUnavailable as exc:
                if time.monotonic() + delay < deadline:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                failure: StoreError = exc
            except StoreError as exc:
                failure = exc
            log.warning(
                "could not mark the worker stopped (the reaper will call it lost): %s",
                failure,
                extra={"action": "worker.deregister_failed"},
            )
            return

    # -- claiming -------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        poll = self.settings.workers.poll_interval
        # While LISTEN is connected, NOTIFY wakes us and the poll is only a safety net; otherwise (SQLite,
        # LISTEN off or down) we poll with backoff up to the poll interval.
        idle_wait = self._first_wait(poll)
        while not self._stopping.is_set():
            free = self.options.concurrency - len(self._running)
            claims: list[Claim] = []
            if free > 0:
                began = time.time_ns() if tracing.active() else 0
                claims = await self._guarded(
                    self.store.claim(
                        self.id, self.capabilities, free, min_criticality=self.options.min_criticality
                    ),
                    [],
                )
                claimed = _span_times(began) if claims else None
                for claim in claims:
                    self._start(claim, claimed)
            if claims:
                idle_wait = self._first_wait(poll)
                continue
            if (
                self.options.exit_when_idle
                and not self._running
                and not await self._guarded(self.store.has_work(self.capabilities), True)
            ):
                # One last pass so that a job left open by a completion race is ended before we go.
                await self._guarded(self.store.maintain(wait=True), None)
                return
            self._wake.clear()
            # With a free slot, a NOTIFY may wake us (the hub wakes as many as tasks became ready);
            # with none, only a task of ours that ends does.
            hub = self._hub if free > 0 else None
            if hub is not None:
                hub.waiting(self._wake)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), idle_wait)
            finally:
                if hub is not None:
                    hub.busy(self._wake)
            idle_wait = min(idle_wait * 2, self._longest_wait(poll))

    def _first_wait(self, poll: float) -> float:
        return poll if self._listening() else min(0.05, poll)

    def _listening(self) -> bool:
        return self._hub is not None and self._hub.connected.is_set()

    def _longest_wait(self, poll: float) -> float:
        """While LISTEN is connected every wake-up comes by NOTIFY (due retries too: the reaper's
        leader makes them ready with a ``ready`` event), so the safety-net poll backs off further."""
        return max(poll, self.settings.workers.listen_poll_interval) if self._listening() else poll

    async def _guarded(self, coro: Any, fallback: Any) -> Any:
        """Database trouble must not kill the worker: log it, and let the next loop retry."""
        try:
            return await coro
        except StoreError as exc:
            log.warning("database error: %s", exc, extra={"action": "worker.db_error", "worker": self.id})
            await asyncio.sleep(min(5.0, self.settings.workers.poll_interval))
            return fallback

    def _start(self, claim: Claim, claimed: tuple[int, int] | None = None) -> None:
        """Run ``claim`` in a task of its own; ``claimed``: when its claim began and ended (traced)."""
        self.stats.claimed += 1
        if self._beats is not None:
            self._beats.work_started()
        runner = asyncio.create_task(self._execute(claim, claimed), name=f"task-{claim.task.id}")
        self._running[claim.task.id] = _Running(claim, runner)
        runner.add_done_callback(functools.partial(self._finished, claim.task.id))

    def _finished(self, task_id: int, _runner: asyncio.Task[None] | None = None) -> None:
        self._running.pop(task_id, None)
        self._wake.set()

    # -- running one task -----------------------------------------------------------------------

    async def _execute(self, claim: Claim, claimed: tuple[int, int] | None = None) -> None:
        """Run one attempt; everything logged meanwhile (model calls too) names its job and task, and
        everything traced is a child of its span (itself a child of the job's submit span)."""
        with (
            log_fields(job=claim.task.job_id, task=claim.task.id),
            tracing.attempt_span(claim, self.id, claimed),
        ):
            if entry := self._running.get(claim.task.id):
                entry.started = True
            await self._attempt(claim, time.monotonic())

    def _outcome(
        self, claim: Claim, outcome: str, started: float, level: int = logging.INFO, **more: Any
    ) -> None:
        """The one line that says how an attempt ended, and how long it took (and its span's outcome)."""
        tracing.outcome(outcome, more.get("error") or more.get("reason"))
        if not log.isEnabledFor(level):
            return
        task = claim.task
        log.log(
            level,
            "task %s %s",
            task.key,
            outcome.replace("_", " "),
            extra={
                "action": f"task.{outcome}",
                "job": task.job_id,
                "task": task.id,
                "task_key": task.key,
                "attempt": claim.attempt,
                "worker": self.id,
                "duration": round(time.monotonic() - started, 3),
                **more,
            },
        )

    async def _attempt(self, claim: Claim, started: float) -> None:
        task = claim.task
        ctx = TaskContext(
            claim=claim,
            database_url=self.settings.database.url,
            save_checkpoint=lambda name, data: self._persist(
                lambda: self.store.save_checkpoint(task.id, claim.token, name, data)
            ),
            report_progress=lambda f, m: self._best_effort(
                lambda: self.store.report_progress(task.id, claim.token, f, m)
            ),
        )
        deadline = asyncio.timeout(task.timeout)
        # Its model calls' record, and their sum for a ``model_usage`` event when the attempt ends.
        calls_for = CallContext(task.job_id, task.id, claim.attempt, self.id, AttemptTally())
        try:
            with attempt_scope(calls_for):
                try:
                    async with deadline:
                        output = await executor_for(task.run).execute(ctx)
                finally:
                    if calls_for.tally and calls_for.tally.calls:
                        await self._best_effort(lambda: self.store.record_attempt_usage(calls_for))
        except asyncio.CancelledError:
            await self._after_cancel(claim, started)
            raise
        except TimeoutError as exc:
            # The task's own timeout, or a timeout inside the executor (a git command, a model call):
            # either way the attempt failed, and the message says which.
            why = (
                f"timed out after {task.timeout:g}s"
                if deadline.expired()
                else f"timed out: {exc or 'TimeoutError'}"
            )
            await self._report_failure(claim, TaskFailed(why), started)
        except TaskFailed as exc:
            await self._report_failure(claim, exc, started)
        except AlreadyReported:  # the executor wrote its outcome itself (a planner that expanded)
            self.stats.succeeded += 1
            self._outcome(claim, "succeeded", started)
        except BudgetReached as spent:  # the job paused on its budget: hand the task back, checkpointed
            self.stats.handed_back += 1
            reason = str(spent)
            await self._best_effort(lambda: self.store.hand_back(task.id, claim.token, reason))
            self._outcome(claim, "handed_back", started, reason=reason)
        except LeaseLost:
            self.stats.abandoned += 1
            self._outcome(claim, "lease_lost", started, logging.WARNING)
        except Exception as exc:  # an executor bug must fail the attempt, not the worker
            log.exception(
                "executor crashed",
                extra={"action": "task.crash", "job": task.job_id, "task": task.id, "worker": self.id},
            )
            await self._report_failure(claim, TaskFailed(f"{type(exc).__name__}: {exc}"), started)
        else:
            self._recording(task.id)
            try:
                if self._acks is not None:
                    await self._acks.complete(task.id, claim.token, output)
                elif self._stopping.is_set():
                    await self._persist(lambda: self.store.complete(task.id, claim.token, output))
                else:
                    # The slot this task frees is refilled in the same round trip (see
                    # Store.complete_and_claim); the claim loop fills the others.
                    began = time.time_ns() if tracing.active() else 0
                    nxt = await self._persist(
                        lambda: self.store.complete_and_claim(
                            task.id,
                            claim.token,
                            output,
                            self.id,
                            self.capabilities,
                            1,
                            min_criticality=self.options.min_criticality,
                        )
                    )
                    for follow in nxt:
                        self._start(follow, _span_times(began))  # at most one
                self.stats.succeeded += 1
                self._outcome(claim, "succeeded", started)
            except LeaseLost:
                self.stats.abandoned += 1
                self._outcome(claim, "lease_lost", started, logging.WARNING)

    def _recording(self, task_id: int) -> None:
        if entry := self._running.get(task_id):
            entry.recording = True

    async def _ack_batch(self, items: Sequence[Completion]) -> list[int]:
        """Record a batch of successes; unless draining, refill the slots it frees in the same
        statement (``Store.complete_many_and_claim``). Returns the refused ids."""
        if self._stopping.is_set():
            refused: list[int] = await self._persist(lambda: self.store.complete_many(items))
            return refused
        began = time.time_ns() if tracing.active() else 0
        refused, claims = await self._persist(
            lambda: self.store.complete_many_and_claim(
                items, self.id, self.capabilities, len(items), min_criticality=self.options.min_criticality
            )
        )
        claimed = _span_times(began) if claims else None
        for follow in claims:
            self._start(follow, claimed)
        return refused

    async def _report_failure(self, claim: Claim, exc: TaskFailed, started: float) -> None:
        self._recording(claim.task.id)
        try:
            status = await self._persist(
                lambda: self.store.fail(
                    claim.task.id, claim.token, str(exc), retryable=exc.retryable, output=exc.output
                )
            )
            self.stats.failed += 1
            outcome = "retried" if status is TaskStatus.RETRYING else "failed"
            self._outcome(claim, outcome, started, error=str(exc)[:500])
        except LeaseLost:
            self.stats.abandoned += 1
            self._outcome(claim, "lease_lost", started, logging.WARNING)

    async def _persist(self, write: Callable[[], Awaitable[Any]]) -> Any:
        """A write that must not be lost: retry while the database is unreachable. Fencing decides what
        happens on reconnection: if the lease expired meanwhile the write raises ``LeaseLost``."""
        delay = 0.1
        while True:
            try:
                return await write()
            except DatabaseUnavailable as exc:
                log.warning("database unavailable, retrying: %s", exc, extra={"action": "worker.retry_write"})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _best_effort(self, write: Callable[[], Awaitable[Any]]) -> None:
        """Progress is advisory: drop it when the database is away rather than stall the task."""
        try:
            await write()
        except DatabaseUnavailable:
            log.info("progress dropped: database unavailable", extra={"action": "worker.progress_dropped"})

    async def _after_cancel(self, claim: Claim, started: float) -> None:
        entry = self._running.get(claim.task.id)
        reason = entry.stop_reason if entry else None
        if reason == "drain":
            with contextlib.suppress(LeaseLost, StoreError):
                await self.store.hand_back(claim.task.id, claim.token, "worker stopping")
                self.stats.handed_back += 1
                self._outcome(claim, "handed_back", started, reason="worker stopping")
        else:
            self.stats.abandoned += 1
            if reason == LeaseState.LOST:
                self._outcome(claim, "lease_lost", started, logging.WARNING)
            else:  # its job was cancelled, or the worker itself was
                self._outcome(claim, "cancelled" if reason == LeaseState.CANCELLED else "abandoned", started)

    # -- heartbeats -----------------------------------------------------------------------------

    def beat(self) -> Beat:
        """What the process's heartbeat (``BeatHub``) sends for this worker: its status and leases."""
        leases = {tid: r.claim.token for tid, r in self._running.items()}
        return Beat(self.id, leases, "draining" if self._stopping.is_set() else "active")

    def lease_states(self, states: Mapping[int, LeaseState]) -> None:
        """Cancel the attempts whose lease is gone (expired and taken, or their job cancelled), unless
        they are already writing their outcome (see ``_Running.recording``)."""
        for task_id, state in states.items():
            entry = self._running.get(task_id)
            if state is not LeaseState.HELD and entry is not None and not entry.recording:
                entry.stop_reason = state.value
                entry.runner.cancel()

    # -- draining -------------------------------------------------------------------------------

    async def _drain(self) -> None:
        """Wait for the running attempts (up to the drain timeout when stopping), then cancel what still
        executes: each hands its task back. Loops because an attempt that was writing its success may
        have claimed a follow-up in the same statement (``complete_and_claim``)."""
        loop = asyncio.get_running_loop()
        stopping = self._stopping.is_set()
        deadline = loop.time() + self.settings.workers.drain_timeout if stopping else None
        while self._running:
            entries = list(self._running.values())
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            _done, pending = await asyncio.wait([e.runner for e in entries], timeout=timeout)
            if pending:
                await self._cancel([e for e in entries if e.runner in pending])

    async def _cancel(self, entries: Sequence[_Running]) -> None:
        """Cancel attempts past the drain timeout, except those writing their outcome: a cancelled write
        would leave the task running under a dead lease, to run again once the lease expires. Those get
        up to a lease's length (past it the fenced write is refused anyway)."""
        recording = [e.runner for e in entries if e.recording]
        for entry in entries:
            if not entry.recording:
                entry.stop_reason = "drain"
                entry.runner.cancel()
        if recording:
            _done, late = await asyncio.wait(recording, timeout=self.settings.tasks.lease_ttl)
            for runner in late:
                runner.cancel()
        await asyncio.wait([e.runner for e in entries])
        for entry in entries:
            if not entry.started:  # cancelled before its first step, it never ran its own hand-back
                with contextlib.suppress(LeaseLost, StoreError):
                    await self.store.hand_back(entry.claim.task.id, entry.claim.token, "worker stopping")
                    self.stats.handed_back += 1


def _span_times(began: int) -> tuple[int, int] | None:
    """(start, end) of a claim that began at ``began`` (``time.time_ns``) and just ended; None when it
    was not timed (tracing off)."""
    return (began, time.time_ns()) if began else None
