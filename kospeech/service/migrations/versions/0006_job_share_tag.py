"""jobs.share_tag: a job's place in the tenants' fair share of the workers (start-time fair queueing), set when it is
first sent to the queue; the queue takes lower tags first (:meth:`kospeech.service.jobs.JobQueue.enqueue`). Jobs of
earlier releases have none.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("share_tag", sa.BigInteger, nullable=True))
    op.create_index("ix_jobs_share_tag", "jobs", ["share_tag"])


def downgrade() -> None:
    op.drop_index("ix_jobs_share_tag", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("share_tag")
