"""Fleet-wide metrics as durable counters: what each logged event and model call adds to them. No I/O.

Everything worth counting already lands in two append-only logs that every worker writes: ``events``
(claims, outcomes, retries, requeues, refusals) and ``llm_calls`` (one row per model call). The store
rolls new rows of each log into a table of counters (``store.metrics``), following a cursor, and the API
serves that table: figures for the whole fleet, that survive restarts and the pruning of the logs, and
that only go up. This module holds the decisions: the metric families and their buckets, what one log
row adds (``Deltas``), and how the cursor advances (``Cursor``), including the ids it must come back for.

The table holds Prometheus samples as they are exposed: ``<family>_total`` for a counter,
``<family>_bucket`` (cumulative, with an ``le`` label) and ``<family>_sum`` for a histogram (its
``_count`` is the ``+Inf`` bucket)::

    deltas = Deltas()
    deltas.observe(TASK_DURATION, 0.3, type="building", outcome="succeeded")
    deltas.items()[0]  # (("helix_task_duration_seconds_bucket", '{"le":"0.5",...}'), 1.0)
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

__all__ = [
    "CLAIM_LATENCY",
    "FAMILIES",
    "GAP_SETTLE_SECONDS",
    "LLM_LATENCY",
    "LLM_TTFT",
    "MAX_GAPS",
    "TASK_DURATION",
    "CallRow",
    "Cursor",
    "Deltas",
    "EventGroup",
    "Family",
    "Gap",
    "MetricsSnapshot",
    "Observed",
    "Sample",
    "call_deltas",
    "event_deltas",
    "family_of",
    "format_le",
    "labels_key",
]

INF = math.inf


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: its name as Prometheus shows it (without ``_total``), what it counts, its
    labels, and for a histogram its bucket bounds (``+Inf`` last)."""

    name: str
    kind: Literal["counter", "histogram"]
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    @property
    def total(self) -> str:
        return f"{self.name}_total"

    @property
    def bucket(self) -> str:
        return f"{self.name}_bucket"

    @property
    def sum(self) -> str:
        return f"{self.name}_sum"

    @property
    def samples(self) -> tuple[str, ...]:
        return (self.total,) if self.kind == "counter" else (self.bucket, self.sum)


def _histogram(name: str, help: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> Family:
    return Family(name, "histogram", help, labels, (*buckets, INF))


TASK = ("type",)
MODEL = ("provider", "model")

EVENTS = Family("helix_events", "counter", "events written to the log, by kind", ("kind",))
JOBS_CREATED = Family("helix_jobs_created", "counter", "jobs submitted")
JOBS_FINISHED = Family("helix_jobs_finished", "counter", "jobs that ended, by status", ("status",))
TASKS_CLAIMED = Family("helix_tasks_claimed", "counter", "attempts started: tasks claimed by workers", TASK)
TASKS_SUCCEEDED = Family("helix_tasks_succeeded", "counter", "tasks that succeeded", TASK)
TASKS_FAILED = Family("helix_tasks_failed", "counter", "tasks that failed for good", TASK)
TASKS_RETRIED = Family(
    "helix_tasks_retried", "counter", "failed attempts scheduled for another try (not a person's retry)", TASK
)
TASKS_REQUEUED = Family(
    "helix_tasks_requeued", "counter", "attempts handed back unfinished or requeued after a lost lease", TASK
)
LEASE_LOSSES = Family(
    "helix_lease_losses", "counter", "leases that expired with their worker silent (requeued or failed)", TASK
)
SANDBOX_REFUSALS = Family(
    "helix_sandbox_refusals",
    "counter",
    "what the sandbox refused an attempt (command: a program the policy denies; path: a path outside "
    "the worktree; landing: a git landing after the lease was lost)",
    ("kind",),
)
TASK_DURATION = _histogram(
    "helix_task_duration_seconds",
    "how long an attempt ran, from its claim to its outcome",
    ("type", "outcome"),
    (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600, 7200),
)
CLAIM_LATENCY = _histogram(
    "helix_claim_latency_seconds",
    "how long a task waited, ready, before a worker claimed it",
    TASK,
    (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600),
)
LLM_CALLS = Family("helix_llm_calls", "counter", "model calls, by outcome", (*MODEL, "outcome"))
LLM_TOKENS = Family(
    "helix_llm_tokens", "counter", "model tokens (kind: prompt, completion, cached)", (*MODEL, "kind")
)
LLM_COST = Family("helix_llm_cost_usd", "counter", "USD spent on model calls with a known price", MODEL)
LLM_LATENCY = _histogram(
    "helix_llm_latency_seconds",
    "model call latency, start to end",
    MODEL,
    (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
)
LLM_TTFT = _histogram(
    "helix_llm_ttft_seconds",
    "time to the first token of a streamed model call",
    MODEL,
    (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)

FAMILIES: tuple[Family, ...] = (
    EVENTS,
    JOBS_CREATED,
    JOBS_FINISHED,
    TASKS_CLAIMED,
    TASKS_SUCCEEDED,
    TASKS_FAILED,
    TASKS_RETRIED,
    TASKS_REQUEUED,
    LEASE_LOSSES,
    SANDBOX_REFUSALS,
    TASK_DURATION,
    CLAIM_LATENCY,
    LLM_CALLS,
    LLM_TOKENS,
    LLM_COST,
    LLM_LATENCY,
    LLM_TTFT,
)
_BY_SAMPLE = {sample: f for f in FAMILIES for sample in f.samples}


def family_of(sample: str) -> Family | None:
    """The family a stored sample name belongs to (None for one this version does not know)."""
    return _BY_SAMPLE.get(sample)


def labels_key(labels: Mapping[str, str]) -> str:
    """Labels as the canonical JSON text that identifies a series in the counters table."""
    return json.dumps(dict(sorted(labels.items())), separators=(",", ":"))


def format_le(bound: float) -> str:
    """A bucket bound as Prometheus clients write it: ``0.5``, ``1.0``, ``+Inf``."""
    return "+Inf" if bound == INF else repr(float(bound))


#: A series of the counters table: sample name and canonical labels.
SeriesKey = tuple[str, str]


class Deltas:
    """What a batch of log rows adds to each series. Histograms are kept as per-bucket counts while a
    batch is read (one increment per observation) and made cumulative in ``items``."""

    def __init__(self) -> None:
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._histograms: dict[tuple[Family, tuple[tuple[str, str], ...]], list[float]] = {}

    def inc(self, family: Family, by: float = 1.0, /, **labels: str) -> None:
        key = (family.total, tuple(sorted(labels.items())))
        self._counters[key] = self._counters.get(key, 0.0) + by

    def observe(self, family: Family, value: float, /, **labels: str) -> None:
        self.observed(family, Observed.of(family, value), **labels)

    def observed(self, family: Family, values: Observed, /, **labels: str) -> None:
        """Add values already placed in a bucket (``Observed``)."""
        key = (family, tuple(sorted(labels.items())))
        counts = self._histograms.get(key)
        if counts is None:
            counts = self._histograms[key] = [0.0] * (len(family.buckets) + 1)  # the buckets, then the sum
        counts[values.bucket] += values.count
        counts[-1] += values.total

    def items(self) -> list[tuple[SeriesKey, float]]:
        """Every series with what it gains, in a fixed order (so that concurrent writers would lock rows
        in the same order); a histogram's buckets cumulative, those still at zero left out."""
        out = [((name, labels_key(dict(labels))), v) for (name, labels), v in self._counters.items()]
        for (family, labels), counts in self._histograms.items():
            running = 0.0
            for bound, n in zip(family.buckets, counts, strict=False):
                running += n
                if running:
                    bucket = labels_key({**dict(labels), "le": format_le(bound)})
                    out.append(((family.bucket, bucket), running))
            out.append(((family.sum, labels_key(dict(labels))), counts[-1]))
        return sorted(out)

    def __bool__(self) -> bool:
        return bool(self._counters or self._histograms)


# -- what a row adds ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Observed:
    """Values of one histogram that fall in one bucket: its index in the family's bounds (as
    ``Deltas.observe`` places a value: the first bound the value does not exceed), how many, and
    their sum. The event rollup's query groups values so (``store.metrics``); ``of`` places one."""

    bucket: int
    count: int
    total: float

    @classmethod
    def of(cls, family: Family, value: float) -> Observed:
        return cls(bisect.bisect_left(family.buckets, value), 1, value)


@dataclass(frozen=True, slots=True)
class EventGroup:
    """Events alike in everything the counters read, and how many (``n``): the rollup reads a batch
    of the log grouped so, not row by row. ``of_task``: the events name a task; ``task_type`` comes
    from its row (None when it is gone); the rest from the events' details. Histogram values are
    clamped at zero before they are grouped."""

    kind: str
    n: int = 1
    of_task: bool = False
    task_type: str | None = None
    duration: Observed | None = None  # succeeded / failed / retried: the attempts' run time
    wait: Observed | None = None  # claimed: time from ready to claimed
    reason: str | None = None  # requeued / failed: why
    by: str | None = None  # retried: "request" when a person retried the task
    counts: Mapping[str, int] | None = None  # sandbox_refused: refusals by kind (command, path)


JOB_ENDINGS = frozenset({"succeeded", "failed", "cancelled"})
LEASE_EXPIRED = frozenset({"lease expired", "lease lost too often"})


def event_deltas(groups: Iterable[EventGroup], deltas: Deltas) -> None:
    for group in groups:
        n = float(group.n)
        deltas.inc(EVENTS, n, kind=group.kind)
        if not group.of_task:
            if group.kind == "created":
                deltas.inc(JOBS_CREATED, n)
            elif group.kind in JOB_ENDINGS:
                deltas.inc(JOBS_FINISHED, n, status=group.kind)
            continue
        _task_events(group, n, group.task_type or "unknown", deltas)


def _task_events(group: EventGroup, n: float, type_: str, deltas: Deltas) -> None:
    kind = group.kind
    if kind == "claimed":
        deltas.inc(TASKS_CLAIMED, n, type=type_)
        if group.wait is not None:
            deltas.observed(CLAIM_LATENCY, group.wait, type=type_)
        return
    if kind in ("succeeded", "failed", "retried") and group.duration is not None:
        outcome = "succeeded" if kind == "succeeded" else "failed"
        deltas.observed(TASK_DURATION, group.duration, type=type_, outcome=outcome)
    if kind == "succeeded":
        deltas.inc(TASKS_SUCCEEDED, n, type=type_)
    elif kind == "failed":
        deltas.inc(TASKS_FAILED, n, type=type_)
    elif kind == "retried" and group.by != "request":
        deltas.inc(TASKS_RETRIED, n, type=type_)
    elif kind == "requeued":
        deltas.inc(TASKS_REQUEUED, n, type=type_)
    elif kind == "landing_refused":
        deltas.inc(SANDBOX_REFUSALS, n, kind="landing")
    elif kind == "sandbox_refused":
        for refused, count in (group.counts or {}).items():
            deltas.inc(SANDBOX_REFUSALS, n * float(count), kind=str(refused))
    if kind in ("requeued", "failed") and group.reason in LEASE_EXPIRED:
        deltas.inc(LEASE_LOSSES, n, type=type_)


@dataclass(frozen=True, slots=True)
class CallRow:
    """What the rollup reads of one model call."""

    provider: str
    model: str
    ok: bool
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    latency_s: float = 0.0
    first_token_s: float | None = None
    cost_usd: float | None = None


def call_deltas(rows: Iterable[CallRow], deltas: Deltas) -> None:
    for row in rows:
        model = {"provider": row.provider, "model": row.model}
        deltas.inc(LLM_CALLS, **model, outcome="ok" if row.ok else "error")
        for kind, n in (
            ("prompt", row.prompt_tokens),
            ("completion", row.completion_tokens),
            ("cached", row.cached_tokens),
        ):
            deltas.inc(LLM_TOKENS, float(n), **model, kind=kind)
        if row.cost_usd is not None:
            deltas.inc(LLM_COST, row.cost_usd, **model)
        deltas.observe(LLM_LATENCY, max(0.0, row.latency_s), **model)
        if row.first_token_s is not None:
            deltas.observe(LLM_TTFT, max(0.0, row.first_token_s), **model)


# -- the cursor ---------------------------------------------------------------------------------

#: A gap is given up only once it is at least this old (see ``Cursor``).
GAP_SETTLE_SECONDS = 5.0
#: Gaps kept at most; past this the oldest are given up (and the store logs it).
MAX_GAPS = 1000


@dataclass(frozen=True, slots=True)
class Gap:
    """Ids ``lo..hi`` that were missing when a later id was rolled up: on PostgreSQL they may belong to
    a transaction still in progress (ids come from a sequence; transactions commit out of id order).
    ``at``: when it was seen (database clock); ``xmax``: the transaction horizon then (``Cursor``)."""

    lo: int
    hi: int
    at: float
    xmax: int | None = None

    def to_json(self) -> list[Any]:
        return [self.lo, self.hi, self.at, self.xmax]

    @classmethod
    def from_json(cls, raw: Sequence[Any]) -> Gap:
        return cls(int(raw[0]), int(raw[1]), float(raw[2]), None if raw[3] is None else int(raw[3]))


@dataclass(frozen=True, slots=True)
class Cursor:
    """How far a log has been rolled up: every id up to ``last_id`` is counted, except the ``gaps``.

    SQLite has one writer at a time, so its ids are in commit order: a cursor there never has gaps. On
    PostgreSQL an id below one already counted can still commit, so the ids skipped are kept as gaps and
    looked for again on each pass; the rows that turn up are counted then. A gap is given up when no
    transaction that could own it can still commit: every transaction in progress when it was seen has
    ended (the oldest transaction running now, ``xmin``, is past the horizon ``xmax`` taken after the
    gap was seen) and it is ``GAP_SETTLE_SECONDS`` old, which covers a transaction that took its id an
    instant before it took its transaction id. Rolled-back inserts leave gaps that are given up so.
    """

    last_id: int = 0
    gaps: tuple[Gap, ...] = ()

    def advance(
        self,
        fresh: Sequence[int],
        found: Sequence[int],
        *,
        now: float,
        xmin: int | None = None,
        xmax: int | None = None,
        found_all: bool = True,
        track_gaps: bool = True,
    ) -> tuple[Cursor, int]:
        """The cursor after counting ``fresh`` (ids after ``last_id``, ascending) and ``found`` (ids in
        the gaps); ``found_all``: the gaps' visible rows were all read (a capped read gives nothing up).
        Returns it and the number of gaps dropped for want of room (``MAX_GAPS``)."""
        gaps = _subtract(self.gaps, sorted(found))
        if found_all and xmin is not None:
            gaps = [g for g in gaps if not _settled(g, now, xmin)]
        last = self.last_id
        if fresh:
            if track_gaps:
                gaps += [Gap(lo, hi, now, xmax) for lo, hi in _missing(last, fresh)]
            last = max(last, fresh[-1])
        dropped = max(0, len(gaps) - MAX_GAPS)
        return Cursor(last, tuple(gaps[dropped:])), dropped

    def gaps_json(self) -> list[list[Any]]:
        return [g.to_json() for g in self.gaps]

    @classmethod
    def load(cls, last_id: int, gaps: Iterable[Sequence[Any]]) -> Cursor:
        return cls(int(last_id), tuple(Gap.from_json(g) for g in gaps))


def _settled(gap: Gap, now: float, xmin: int) -> bool:
    return gap.xmax is not None and xmin >= gap.xmax and now - gap.at >= GAP_SETTLE_SECONDS


def _missing(after: int, ids: Sequence[int]) -> list[tuple[int, int]]:
    """The runs of ids in ``(after, ids[-1])`` absent from ``ids`` (ascending)."""
    runs: list[tuple[int, int]] = []
    expected = after + 1
    for i in ids:
        if i > expected:
            runs.append((expected, i - 1))
        expected = max(expected, i + 1)
    return runs


def _subtract(gaps: Iterable[Gap], found: Sequence[int]) -> list[Gap]:
    """The gaps without the ids found in them (a gap with an id found inside splits in two)."""
    out: list[Gap] = []
    for gap in gaps:
        lo = gap.lo
        for i in found[bisect.bisect_left(found, gap.lo) : bisect.bisect_right(found, gap.hi)]:
            if i > lo:
                out.append(replace(gap, lo=lo, hi=i - 1))
            lo = i + 1
        if lo <= gap.hi:
            out.append(replace(gap, lo=lo))
    return out


# -- what a scrape reads ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One stored series: sample name, labels, value."""

    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """What ``/metrics`` shows from the database: the counters, the queue's depth now by priority and
    status (unfinished tasks only), and when each log's rollup last advanced."""

    samples: list[Sample]
    queue_depth: dict[tuple[str, str], int]
    rolled_up_at: dict[str, float]
