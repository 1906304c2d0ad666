"""The schema, as SQLAlchemy Core tables; Alembic revisions must produce exactly this.

Times are ``DOUBLE`` seconds since the epoch taken from the database clock: SQLite's
``CURRENT_TIMESTAMP`` has one-second resolution and leases need milliseconds, and a number compares
and adds the same way on both databases. Priority and criticality are stored as ranks (higher is more
urgent) so that the claim order is a plain index scan.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from helixcode.domain.enums import TaskStatus

__all__ = [
    "api_tokens",
    "checkpoints",
    "events",
    "jobs",
    "locks",
    "metadata",
    "metric_counters",
    "metric_cursors",
    "notifications",
    "results",
    "task_dependencies",
    "tasks",
    "worker_heartbeats",
    "workers",
]

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

#: The states a task never leaves, in the order ``store.base.unfinished`` writes them.
TERMINAL = tuple(s.value for s in TaskStatus if s.terminal)

#: JSON everywhere, JSONB on PostgreSQL (containment operators for capability matching).
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Time = sa.Double
#: 64-bit ids; on SQLite an INTEGER primary key is the rowid, which is what autoincrement needs.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("pause_reason", sa.Text),
    sa.Column("workdir", sa.Text),
    sa.Column("spec", Json, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.Column("finished_at", Time),
    #: The budget of the job's model calls (USD, tokens): reached, the job pauses (``store.usage``).
    sa.Column("max_cost", Time),
    sa.Column("max_tokens", sa.BigInteger),
    #: The W3C ``traceparent`` of the span that submitted the job (``helixcode.tracing``): every attempt's
    #: span continues that trace. None when the submitter was not tracing.
    sa.Column("trace_context", sa.String(64)),
    sa.Index(None, "status"),
    sa.Index(None, "created_at"),
)


def _partial(name: str, columns: list[str], where: str) -> sa.Index:
    """An index over the rows that meet ``where``, on both databases."""
    return sa.Index(name, *columns, postgresql_where=sa.text(where), sqlite_where=sa.text(where))


tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("parent_id", Id, sa.ForeignKey("tasks.id")),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("priority", sa.SmallInteger, nullable=False),
    sa.Column("criticality", sa.SmallInteger, nullable=False),
    # Claim order key, lower first (see domain.ordering); derived so the claim is one ascending index scan.
    sa.Column("claim_rank", sa.SmallInteger, nullable=False),
    # Then critical path first: minus the length of the longest chain of tasks waiting on this one
    # (domain.graph.chain_lengths), negated so that the same ascending index serves it.
    sa.Column("chain_rank", sa.Integer, nullable=False, server_default="-1"),
    sa.Column("requires", Json, nullable=False),
    sa.Column("run", Json, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("pending_deps", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("lease_losses", sa.Integer, nullable=False, server_default="0"),
    sa.Column("timeout", sa.Double),
    # Retry backoff for this task; NULL means the [tasks] defaults.
    sa.Column("backoff_base", sa.Double),
    sa.Column("backoff_cap", sa.Double),
    sa.Column("weight", sa.Double, nullable=False, server_default="1"),
    sa.Column("progress", sa.Double, nullable=False, server_default="0"),
    sa.Column("progress_message", sa.Text),
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_token", sa.String(64)),
    sa.Column("lease_expires_at", Time),
    sa.Column("next_attempt_at", Time),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("ready_at", Time),
    sa.Column("started_at", Time),
    sa.Column("finished_at", Time),
    sa.Column("last_error", sa.Text),
    # Who paused a paused task: "request" (a person) or "capacity" (graceful degradation, undone by itself).
    sa.Column("paused_by", sa.String(16)),
    # Also the index of a job's tasks (its leading column).
    sa.UniqueConstraint("job_id", "key"),
    # Partial indexes, each over the tasks in one state: a task changes state twice per run and every
    # change writes an entry into each index whose predicate it meets, so narrow predicates keep the
    # busiest writes cheap. Queries must state the predicate with a constant (``status_is``).
    # The claim scan: ready tasks in claim order.
    _partial("ix_tasks_claim_order", ["claim_rank", "chain_rank", "ready_at", "id"], "status = 'ready'"),
    # Maintenance: expired leases, due retries; and split parents' children.
    _partial("ix_tasks_lease_expiry", ["lease_expires_at"], "status = 'running'"),
    _partial("ix_tasks_retry_due", ["next_attempt_at"], "status = 'retrying'"),
    _partial("ix_tasks_parent_id", ["parent_id"], "parent_id IS NOT NULL"),
    # A job's open tasks: "is anything left?" after a completion, cancelling, maintenance. A success
    # writes no entry here (the old (job_id, status) index took one per state change).
    _partial("ix_tasks_open_by_job", ["job_id"], f"status NOT IN ({', '.join(map(repr, TERMINAL))})"),
)

task_dependencies = sa.Table(
    "task_dependencies",
    metadata,
    sa.Column("task_id", Id, sa.ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("depends_on_id", Id, sa.ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    sa.Index(None, "depends_on_id"),
)

checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("task_id", Id, sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("worker_id", sa.String(64)),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("data", Json, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Index(None, "task_id", "id"),
)

#: One row per finished attempt: the outcome, what it produced, and who ran it. Like ``events``, a log
#: written on the busiest path, so it carries no foreign keys (see ``events``).
results = sa.Table(
    "results",
    metadata,
    sa.Column("task_id", Id, primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("worker_id", sa.String(64)),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("output", Json, nullable=False),
    sa.Column("started_at", Time),
    sa.Column("finished_at", Time, nullable=False),
)

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("capabilities", Json, nullable=False),
    sa.Column("resources", Json, nullable=False),
    sa.Column("concurrency", sa.Integer, nullable=False),
    sa.Column("started_at", Time, nullable=False),
    sa.Column("last_heartbeat_at", Time, nullable=False),
    sa.Column("stopped_at", Time),
    sa.Index(None, "status", "last_heartbeat_at"),
)

#: Recent resource samples per worker, pruned after a short retention, for `helix workers` and plots.
worker_heartbeats = sa.Table(
    "worker_heartbeats",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("worker_id", sa.String(64), sa.ForeignKey("workers.id", ondelete="CASCADE"), nullable=False),
    sa.Column("at", Time, nullable=False),
    sa.Column("resources", Json, nullable=False),
    sa.Index(None, "worker_id", "at"),
    sa.Index(None, "at"),
)

#: Named leader leases (the reaper's), on both databases: a lease expires whatever its holder's state.
locks = sa.Table(
    "locks",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("expires_at", Time, nullable=False),
)

#: The append-only log of what happened to each job and task. It has no foreign keys: its rows are
#: written only by the statements that change the job or task they name, and nothing deletes jobs or
#: tasks, so the checks could never fail, while each cost a lookup and a row lock on every insert; a
#: success writes two event rows and a result row, and the checks were a tenth of the drain's time.
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(32), nullable=False),
    sa.Column("task_id", Id),
    sa.Column("attempt", sa.Integer),
    sa.Column("worker_id", sa.String(64)),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("details", Json, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Index(None, "job_id", "id"),
)

#: Bearer tokens of the REST API: only a SHA-256 of each is kept; ``revoked_at`` ends one for good.
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("last_used_at", Time),
    sa.Column("revoked_at", Time),
)


#: Fleet-wide state of each provider and model (``helixcode.llm.limits``): until when a 429 keeps the
#: fleet away (``blocked_until``) and, on the provider's ``*`` row, until when a worker's open breaker
#: does (``down_until``). Acquisitions lock the row, so they are one at a time per model.
llm_limits = sa.Table(
    "llm_limits",
    metadata,
    sa.Column("provider", sa.String(64), primary_key=True),
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("blocked_until", Time),
    sa.Column("down_until", Time),
)

#: The requests of the last window per provider and model (a sliding-window log): what rpm and tpm
#: limits count. Rows older than the window are deleted by the next acquisition of the same model.
llm_requests = sa.Table(
    "llm_requests",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("at", Time, nullable=False),
    sa.Column("tokens", sa.Integer, nullable=False),
    sa.Index(None, "provider", "model", "at"),
)


#: Every model call, for cost and usage: what it was made for (job, task, attempt; empty outside a
#: task), where it went, what it used and cost (USD; NULL when the price is unknown), how it went.
#: Append-only like ``events``, and for the same reason without foreign keys.
llm_calls = sa.Table(
    "llm_calls",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(32)),
    sa.Column("task_id", Id),
    sa.Column("attempt", sa.Integer),
    sa.Column("worker_id", sa.String(64)),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("prompt_tokens", sa.Integer, nullable=False),
    sa.Column("completion_tokens", sa.Integer, nullable=False),
    sa.Column("cached_tokens", sa.Integer, nullable=False),
    sa.Column("latency_s", Time, nullable=False),
    sa.Column("first_token_s", Time),
    sa.Column("cost_usd", Time),
    sa.Column("error", sa.Text),
    sa.Column("created_at", Time, nullable=False),
    sa.Index(None, "job_id", "task_id"),
)


#: The notifications outbox (``store.outbox``): one row per message to one ``[notify.NAME]`` target,
#: written in the transaction of the event it tells of, so that none is lost whoever dies when. A sender
#: claims due rows by pushing ``next_attempt_at`` a lease ahead and counting the attempt (the count is
#: the fencing token of its result); ``status`` ends ``delivered``, or ``failed`` after the target's
#: ``max_attempts``. Rows name their job without a foreign key (a log, like ``events``).
notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("job_id", sa.String(32)),
    sa.Column("payload", Json, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", Time, nullable=False),
    sa.Column("delivered_at", Time),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", Time, nullable=False),
    # What is due: the pending rows only, so delivered ones cost the claim nothing.
    _partial("ix_notifications_due", ["next_attempt_at"], "status = 'pending'"),
)

#: The fleet's metrics as durable counters (``store.metrics``): one row per Prometheus sample as it is
#: exposed (``helix_tasks_claimed_total``, ``..._bucket`` with its ``le``, ``..._sum``), its labels as
#: canonical JSON text (``domain.metrics.labels_key``). Rows only ever grow; nothing prunes them.
metric_counters = sa.Table(
    "metric_counters",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("labels", sa.Text, primary_key=True),
    sa.Column("value", sa.Double, nullable=False),
)

#: How far each log (``events``, ``llm_calls``) has been rolled up into ``metric_counters``: every id up
#: to ``last_id`` but the ``gaps`` (PostgreSQL ids that may still commit; ``domain.metrics.Cursor``).
#: ``version`` changes with every advance, so that two rollups racing cannot both count a batch.
metric_cursors = sa.Table(
    "metric_cursors",
    metadata,
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("last_id", sa.BigInteger, nullable=False),
    sa.Column("gaps", Json, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)
