"""At most one queued or running job per user (a unique partial index), so that two training requests arriving at
once cannot both queue a job. Pending duplicates that such a race left behind are failed first, the user's oldest
pending job kept.

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


def upgrade() -> None:
    op.execute(
        "UPDATE jobs SET status = 'failed', finished_at = CURRENT_TIMESTAMP, "
        "error = 'another job of this user was queued at the same time and runs instead' "
        f"WHERE {_PENDING} AND EXISTS (SELECT 1 FROM jobs AS older WHERE older.user_pk = jobs.user_pk "
        f"AND older.{_PENDING} "
        "AND (older.created_at < jobs.created_at OR (older.created_at = jobs.created_at AND older.id < jobs.id)))"
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
