"""claim index ends with the id, so the claim's ORDER BY is an index scan on PostgreSQL

Without the id, PostgreSQL sorted every ready task on each claim (66 ms with 100,000 queued); with it,
the claim reads the first matching index entries (0.2 ms).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_status_claim_rank_ready_at")
        batch_op.create_index(
            "ix_tasks_status_claim_rank_ready_at_id", ["status", "claim_rank", "ready_at", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_status_claim_rank_ready_at_id")
        batch_op.create_index(
            "ix_tasks_status_claim_rank_ready_at", ["status", "claim_rank", "ready_at"], unique=False
        )
