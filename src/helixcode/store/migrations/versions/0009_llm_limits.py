"""llm: fleet-wide limits (requests and tokens per minute, 429 cool-downs, providers known down), and
every model call's usage and cost, and jobs' budgets

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_cost", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("max_tokens", sa.BigInteger(), nullable=True))
    op.create_table(
        "llm_limits",
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("blocked_until", sa.Double(), nullable=True),
        sa.Column("down_until", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("provider", "model", name=op.f("pk_llm_limits")),
    )
    op.create_table(
        "llm_requests",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_llm_requests")),
    )
    op.create_index(
        op.f("ix_llm_requests_provider_model_at"), "llm_requests", ["provider", "model", "at"], unique=False
    )

    op.create_table(
        "llm_calls",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("task_id", Id, nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("worker_id", sa.String(length=64), nullable=True),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cached_tokens", sa.Integer(), nullable=False),
        sa.Column("latency_s", sa.Double(), nullable=False),
        sa.Column("first_token_s", sa.Double(), nullable=True),
        sa.Column("cost_usd", sa.Double(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_llm_calls")),
    )
    op.create_index(op.f("ix_llm_calls_job_id_task_id"), "llm_calls", ["job_id", "task_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("max_tokens")
        batch_op.drop_column("max_cost")
    op.drop_index(op.f("ix_llm_calls_job_id_task_id"), table_name="llm_calls")
    op.drop_table("llm_calls")
    op.drop_index(op.f("ix_llm_requests_provider_model_at"), table_name="llm_requests")
    op.drop_table("llm_requests")
    op.drop_table("llm_limits")
