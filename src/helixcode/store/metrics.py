"""Durable metrics: the event log and the model-call log rolled up into counters, for the whole fleet.

Workers write nothing extra for metrics: everything counted is already in ``events`` and ``llm_calls``.
The reaper's leader calls ``rollup_metrics`` every tick; it reads the rows after each log's cursor in
batches of at most ``ROLLUP_BATCH``, turns them into counter increments (``domain.metrics``), and adds
them to ``metric_counters`` in the same transaction that advances the cursor. The transaction first
moves the cursor from the version it read: a rollup that raced another and lost changes nothing and
reads again, so a row is counted once, whichever process rolls it up. Counters only go up: pruning the
logs (``store.retention``) never deletes a row the rollup has not counted, and rolls up first.

A scrape (``metrics_snapshot``) reads the counters, one row per series however many events there
were, and the queue's depth from the unfinished tasks; it never reads the logs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from helixcode.domain.enums import Priority
from helixcode.domain.metrics import (
    CLAIM_LATENCY,
    TASK_DURATION,
    CallRow,
    Cursor,
    Deltas,
    EventGroup,
    Family,
    MetricsSnapshot,
    Observed,
    Sample,
    call_deltas,
    event_deltas,
)
from helixcode.store.base import StoreBase, const, unfinished
from helixcode.store.database import db_now, id_list
from helixcode.store.tables import Id, events, llm_calls, metric_counters, metric_cursors, tasks

__all__ = ["ROLLUP_BATCH", "MetricsOps", "Rollup"]

log = logging.getLogger(__name__)

#: Log rows per rollup transaction.
ROLLUP_BATCH = 10_000


@dataclass
class Rollup:
    """Log rows one rollup counted; ``more`` when it stopped at its cap with rows left."""

    events: int = 0
    llm_calls: int = 0
    more: bool = False

    def to_dict(self) -> dict[str, int | bool]:
        return asdict(self)


@dataclass(frozen=True)
class _Source:
    """A log the rollup follows. ``query(where)``: at most ``p_size`` of its rows that meet ``where``,
    in id order, as rows that ``count`` adds up and ``ids`` names the log rows of."""

    table: sa.Table
    query: Callable[[sa.ColumnElement[bool]], sa.Select[Any]]
    count: Callable[[Sequence[Mapping[Any, Any]], Deltas], None]
    ids: Callable[[Sequence[Mapping[Any, Any]]], list[int]]

    @property
    def name(self) -> str:
        return self.table.name


def _size() -> sa.BindParameter[int]:
    return sa.bindparam("p_size", type_=sa.Integer())


def _clamped(value: sa.ColumnElement[float]) -> sa.ColumnElement[float]:
    """Negative durations (clocks of different hosts) count as zero, as ``Deltas.observe`` is given."""
    return sa.case((value < const(0.0), const(0.0)), else_=value)


def _bucket(value: sa.ColumnElement[float], family: Family) -> sa.ColumnElement[int]:
    """The bucket ``Observed.of`` places a value in (``bisect_left``: the first bound it does not
    exceed), in SQL; NULL for no value."""
    bounds = family.buckets[:-1]  # the last is +Inf
    whens = [(value <= sa.cast(const(float(b)), sa.Double()), const(i)) for i, b in enumerate(bounds)]
    return sa.case((value.is_(None), sa.null()), *whens, else_=const(len(bounds)))


def _events_query(where: sa.ColumnElement[bool]) -> sa.Select[Any]:
    """A batch of events, grouped by everything the counters read: a busy fleet writes three events
    per task, and reading each one into Python cost the reaper's leader more than a quarter of its
    CPU at a few thousand tasks a second (20 us per task). The ids come back as text, per group."""
    e, d = events.c, events.c.details
    duration = _clamped(d["duration"].as_float())
    wait = _clamped(d["wait"].as_float())
    picked = (
        sa.select(
            e.id,
            e.kind,
            e.task_id.is_not(None).label("of_task"),
            tasks.c.type,
            d["reason"].as_string().label("reason"),
            d["by"].as_string().label("by"),
            d["counts"].label("counts"),
            duration.label("duration"),
            _bucket(duration, TASK_DURATION).label("duration_bucket"),
            wait.label("wait"),
            _bucket(wait, CLAIM_LATENCY).label("wait_bucket"),
        )
        .select_from(events.outerjoin(tasks, tasks.c.id == e.task_id))
        .where(where)
        .order_by(e.id)
        .limit(_size())
        .cte("picked")
    )
    p = picked.c
    keys = [p.kind, p.of_task, p.type, p.reason, p.by, p.counts, p.duration_bucket, p.wait_bucket]
    return sa.select(
        *keys,
        sa.func.count().label("n"),
        sa.func.sum(p.duration).label("duration_sum"),
        sa.func.sum(p.wait).label("wait_sum"),
        id_list(p.id).label("ids"),
    ).group_by(*keys)


def _event_ids(rows: Sequence[Mapping[Any, Any]]) -> list[int]:
    return sorted(int(i) for r in rows for i in r["ids"].split(","))


def _observed(bucket: int | None, n: int, total: float | None) -> Observed | None:
    return None if bucket is None else Observed(int(bucket), n, float(total or 0.0))


def _count_events(rows: Sequence[Mapping[Any, Any]], deltas: Deltas) -> None:
    event_deltas(
        (
            EventGroup(
                r["kind"],
                int(r["n"]),
                bool(r["of_task"]),
                r["type"],
                _observed(r["duration_bucket"], int(r["n"]), r["duration_sum"]),
                _observed(r["wait_bucket"], int(r["n"]), r["wait_sum"]),
                r["reason"],
                r["by"],
                r["counts"] if r["kind"] == "sandbox_refused" else None,
            )
            for r in rows
        ),
        deltas,
    )


def _calls_query(where: sa.ColumnElement[bool]) -> sa.Select[Any]:
    c = llm_calls.c
    return (
        sa.select(
            c.id,
            c.provider,
            c.model,
            c.ok,
            c.prompt_tokens,
            c.completion_tokens,
            c.cached_tokens,
            c.latency_s,
            c.first_token_s,
            c.cost_usd,
        )
        .where(where)
        .order_by(c.id)
        .limit(_size())
    )


def _count_calls(rows: Sequence[Mapping[Any, Any]], deltas: Deltas) -> None:
    call_deltas(
        (
            CallRow(
                r["provider"],
                r["model"],
                bool(r["ok"]),
                int(r["prompt_tokens"]),
                int(r["completion_tokens"]),
                int(r["cached_tokens"]),
                float(r["latency_s"]),
                r["first_token_s"],
                r["cost_usd"],
            )
            for r in rows
        ),
        deltas,
    )


SOURCES = (
    _Source(events, _events_query, _count_events, _event_ids),
    _Source(llm_calls, _calls_query, _count_calls, lambda rows: [r["id"] for r in rows]),
)


class _Raced(Exception):
    """Another rollup advanced the cursor first: this batch is dropped and read again."""


def _xid(function: str) -> sa.ColumnElement[int]:
    """PostgreSQL: a bound of the current snapshot (``pg_snapshot_xmin`` / ``_xmax``) as a number."""
    value = getattr(sa.func, function)(sa.func.pg_current_snapshot())
    return sa.cast(sa.cast(value, sa.Text), sa.BigInteger)


@dataclass(frozen=True)
class _State:
    cursor: Cursor
    version: int
    xmin: int | None


class MetricsOps(StoreBase):
    _cursors_created = False

    # -- the rollup ------------------------------------------------------------------------------

    async def rollup_metrics(self, *, max_batches: int | None = None, batch: int = ROLLUP_BATCH) -> Rollup:
        """Count what each log gained since the last rollup, at most ``max_batches`` transactions of at
        most ``batch`` rows per log (None: until caught up)."""
        await self._create_cursors()
        done = Rollup()
        for source in SOURCES:
            runs = 0
            while True:
                if max_batches is not None and runs >= max_batches:
                    done.more = True
                    break
                runs += 1
                counted, more = await self._rollup_batch(source, batch)
                setattr(done, source.name, getattr(done, source.name) + counted)
                if not more:
                    break
        return done

    async def _rollup_batch(self, source: _Source, size: int) -> tuple[int, bool]:
        """One batch: (rows counted, whether more may be waiting)."""
        async with self._read() as conn:
            state = await self._cursor_state(conn, source.name)
            cursor = state.cursor
            found = await self._gap_rows(conn, source, cursor, size) if cursor.gaps else []
            found_ids = source.ids(found)
            room = size - len(found_ids)
            fresh = await self._fresh_rows(conn, source, cursor.last_id, room) if room else []
            fresh_ids = source.ids(fresh)
            now, xmax = await self._clock_and_horizon(conn)
        advanced, dropped = cursor.advance(
            fresh_ids,
            found_ids,
            now=now,
            xmin=state.xmin,
            xmax=xmax,
            found_all=len(found_ids) < size,
            track_gaps=self.dialect == "postgresql",
        )
        if dropped:
            log.warning(
                "metrics rollup of %s gave up %d gaps of ids (too many pending)",
                source.name,
                dropped,
                extra={"action": "metrics.gaps_dropped"},
            )
        more = room == 0 or len(fresh_ids) == room
        if advanced == cursor:
            return 0, more
        deltas = Deltas()
        source.count([*found, *fresh], deltas)
        try:
            await self._apply(source.name, state.version, advanced, now, deltas)
        except _Raced:
            return 0, True
        return len(found_ids) + len(fresh_ids), more

    async def _cursor_state(self, conn: AsyncConnection, source: str) -> _State:
        """The cursor, its version and, on PostgreSQL, the oldest transaction still running. Read first,
        before the gaps: a transaction that ended before this statement is visible to the ones after."""
        c = metric_cursors.c
        columns: list[sa.ColumnElement[Any]] = [c.last_id, c.gaps, c.version]
        if self.dialect == "postgresql":
            columns.append(_xid("pg_snapshot_xmin").label("xmin"))
        row = (await conn.execute(sa.select(*columns).where(c.source == source))).mappings().one()
        return _State(Cursor.load(row["last_id"], row["gaps"] or []), int(row["version"]), row.get("xmin"))

    async def _create_cursors(self) -> None:
        """The cursors' rows, at the start of each log, unless they exist (once per store)."""
        if self._cursors_created:
            return
        insert = self._insert(metric_cursors)
        async with self._write() as conn:
            now = await self._now(conn)
            await conn.execute(
                insert.on_conflict_do_nothing(index_elements=["source"]),
                [
                    {"source": s.name, "last_id": 0, "gaps": [], "version": 0, "updated_at": now}
                    for s in SOURCES
                ],
            )
        self._cursors_created = True

    async def _gap_rows(
        self, conn: AsyncConnection, source: _Source, cursor: Cursor, size: int
    ) -> Sequence[Mapping[Any, Any]]:
        ids = source.table.c.id
        stmt = source.query(sa.or_(*[ids.between(g.lo, g.hi) for g in cursor.gaps]))
        rows: Sequence[Mapping[Any, Any]] = (await conn.execute(stmt, {"p_size": size})).mappings().all()
        return rows

    async def _fresh_rows(
        self, conn: AsyncConnection, source: _Source, after: int, size: int
    ) -> Sequence[Mapping[Any, Any]]:
        """The rows after the cursor: the same statement on every pass, so prepared (``_fetch``)."""

        def build() -> sa.Executable:
            return source.query(source.table.c.id > sa.bindparam("p_after", type_=Id))

        return await self._fetch(conn, ("rollup", source.name), build, {"p_after": after, "p_size": size})

    async def _clock_and_horizon(self, conn: AsyncConnection) -> tuple[float, int | None]:
        """The database clock and, on PostgreSQL, the transaction horizon: read after the rows, so any
        transaction that could own an id missing from them started below it."""
        if self.dialect != "postgresql":
            return await self._now(conn), None
        row = (await conn.execute(sa.select(db_now(), _xid("pg_snapshot_xmax")))).one()
        return float(row[0]), int(row[1])

    async def _apply(self, source: str, version: int, cursor: Cursor, now: float, deltas: Deltas) -> None:
        """Advance the cursor from ``version`` and add the batch's counts, in one transaction."""
        c = metric_cursors.c
        advance = (
            metric_cursors.update()
            .where(c.source == source, c.version == version)
            .values(last_id=cursor.last_id, gaps=cursor.gaps_json(), version=c.version + 1, updated_at=now)
        )
        async with self._write() as conn:
            if (await conn.execute(advance)).rowcount != 1:
                raise _Raced(source)
            if deltas:
                rows = [{"name": n, "labels": labels, "value": v} for (n, labels), v in deltas.items()]
                await conn.execute(self._add_counts(), rows)

    def _add_counts(self) -> sa.Insert:
        return self._prepared("metrics.add", self._add_counts_statement)

    def _add_counts_statement(self) -> sa.Insert:
        insert = self._insert(metric_counters)
        statement: sa.Insert = insert.on_conflict_do_update(
            index_elements=["name", "labels"], set_={"value": metric_counters.c.value + insert.excluded.value}
        )
        return statement

    def _insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT, which has ``ON CONFLICT`` (both spell it the same way)."""
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    # -- what retention needs ----------------------------------------------------------------------

    async def _rolled_up_to(self, conn: AsyncConnection, log_table: sa.Table) -> int:
        """Every id of ``log_table`` up to this one is counted (0 before the first rollup)."""
        c = metric_cursors.c
        last = (await conn.execute(sa.select(c.last_id).where(c.source == log_table.name))).scalar()
        return int(last or 0)

    async def _after_log_delete(self, conn: AsyncConnection, log_table: sa.Table) -> None:
        """SQLite gives a new row the largest id in the table plus one: once the newest rows of a log are
        pruned, their ids come back, below the cursor. Bring the cursor down to the newest id left, in
        the pruning transaction (one writer: no row can slip in between); a rollup that read the old
        cursor then loses its race. PostgreSQL's sequences never reuse an id."""
        if self.dialect != "sqlite":
            return
        c = metric_cursors.c
        newest = sa.select(sa.func.coalesce(sa.func.max(log_table.c.id), 0)).scalar_subquery()
        await conn.execute(
            metric_cursors.update()
            .where(c.source == log_table.name, c.last_id > newest)
            .values(last_id=newest, version=c.version + 1)
        )

    # -- what a scrape reads -----------------------------------------------------------------------

    async def metrics_snapshot(self) -> MetricsSnapshot:
        """The counters (one row per series), the queue's depth and when each rollup last advanced.
        Its cost depends on the number of series and of unfinished tasks, never on the logs."""
        depth_stmt = (
            sa.select(tasks.c.priority, tasks.c.status, sa.func.count())
            .where(unfinished(tasks.c.status))
            .group_by(tasks.c.priority, tasks.c.status)
        )
        async with self._read() as conn:
            counters = (await conn.execute(sa.select(metric_counters))).all()
            depth = (await conn.execute(depth_stmt)).all()
            cursors = (
                await conn.execute(sa.select(metric_cursors.c.source, metric_cursors.c.updated_at))
            ).all()
        return MetricsSnapshot(
            samples=[Sample(name, _labels(labels), float(value)) for name, labels, value in counters],
            queue_depth={(Priority.from_rank(rank).value, str(status)): int(n) for rank, status, n in depth},
            rolled_up_at={str(source): float(at) for source, at in cursors},
        )


def _labels(text: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in json.loads(text).items()}
