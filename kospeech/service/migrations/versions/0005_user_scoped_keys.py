"""api_keys.user_id: a key that may act as one user of its tenant only (for people who enroll themselves).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("user_id", sa.String(64), nullable=True))


def downgrade() -> None:
    # Without the column a user key would act for its whole tenant: revoke them first.
    op.execute("UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP WHERE user_id IS NOT NULL AND revoked_at IS NULL")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("user_id")
