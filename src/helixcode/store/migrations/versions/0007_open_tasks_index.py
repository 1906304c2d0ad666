"""a partial index of each job's open tasks replaces the (job_id, status) index

"Is anything left in this job?" is asked after completions, by cancelling and by maintenance; over the
(job_id, status) index it walked every finished task of the job first. The partial index holds only
unfinished tasks, and a task's success writes no entry into it (the old index took one per state
change). Listing a job's tasks uses the (job_id, key) unique index, as it could before.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = "status NOT IN ('succeeded', 'failed', 'upstream_failed', 'cancelled', 'skipped')"


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_job_id_status")
    op.create_index(
        "ix_tasks_open_by_job",
        "tasks",
        ["job_id"],
        unique=False,
        postgresql_where=sa.text(OPEN),
        sqlite_where=sa.text(OPEN),
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_open_by_job", table_name="tasks")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index("ix_tasks_job_id_status", ["job_id", "status"], unique=False)
