"""At most one queued or running job per user (a unique partial index), so that two training requests arriving at
once cannot both queue a job. Pending duplicates that such a race left behind are failed first: the user's running job
is kept (a worker may be training it during a rolling upgrade), else the oldest queued one.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_PENDING = "status IN ('queued', 'running')"


def _rank(table: str) -> str:
    """A pending job's rank among its user's: 0 running, 1 queued (the lower is kept)."""
    return f"(CASE WHEN {table}.status = 'running' THEN 0 ELSE 1 END)"


def upgrade() -> None:
    kept_before = (
        f"{_rank('kept')} < {_rank('jobs')} OR ({_rank('kept')} = {_rank('jobs')} AND (kept.created_at < "
        "jobs.created_at OR (kept.created_at = jobs.created_at AND kept.id < jobs.id)))"
    )
    op.execute(
        "UPDATE jobs SET status = 'failed', finished_at = CURRENT_TIMESTAMP, "
        "error = 'another job of this user was queued at the same time and runs instead' "
        f"WHERE {_PENDING} AND EXISTS (SELECT 1 FROM jobs AS kept WHERE kept.user_pk = jobs.user_pk "
        f"AND kept.{_PENDING} AND ({kept_before}))"
    )
    op.create_index(
        "uq_jobs_user_pending",
        "jobs",
        ["user_pk"],
        unique=True,
        sqlite_where=sa.text(_PENDING),
        postgresql_where=sa.text(_PENDING),
    )


def downgrade() -> None:
    op.drop_index("uq_jobs_user_pending", table_name="jobs")
