"""The first schema: tenants, api_keys, users, utterances, adapter_versions, jobs.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        _when("created_at"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False, unique=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("admin", sa.Boolean, nullable=False),
        _when("created_at"),
        _when("revoked_at", nullable=True),
    )
    op.create_index("ix_api_keys_tenant_id", "api_keys", ["tenant_id"])
    op.create_table(
        "users",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        _when("created_at"),
        sa.UniqueConstraint("tenant_id", "user_id", name="uq_users_tenant_user"),
    )
    op.create_index("ix_users_tenant_id", "users", ["tenant_id"])
    op.create_table(
        "utterances",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_pk", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("duration", sa.Float, nullable=False),
        sa.Column("audio_file", sa.String(255), nullable=False),
        _when("created_at"),
    )
    op.create_index("ix_utterances_user_pk", "utterances", ["user_pk"])
    op.create_table(
        "adapter_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_pk", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("adapter_type", sa.String(64), nullable=False),
        sa.Column("cer_before", sa.Float, nullable=True),
        sa.Column("cer_after", sa.Float, nullable=True),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("rejected", sa.Boolean, nullable=False),
        sa.Column("file", sa.String(255), nullable=False),
        _when("created_at"),
        sa.UniqueConstraint("user_pk", "version", name="uq_adapter_versions_user_version"),
    )
    op.create_index("ix_adapter_versions_user_pk", "adapter_versions", ["user_pk"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_pk", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("adapter_type", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Float, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("cer_before", sa.Float, nullable=True),
        sa.Column("cer_after", sa.Float, nullable=True),
        sa.Column("activated", sa.Boolean, nullable=True),
        sa.Column("version", sa.Integer, nullable=True),
        _when("created_at"),
        _when("started_at", nullable=True),
        _when("heartbeat_at", nullable=True),
        _when("finished_at", nullable=True),
    )
    op.create_index("ix_jobs_tenant_id", "jobs", ["tenant_id"])
    op.create_index("ix_jobs_user_pk", "jobs", ["user_pk"])
    op.create_index("ix_jobs_status", "jobs", ["status"])


def downgrade() -> None:
    for table in ("jobs", "adapter_versions", "utterances", "users", "api_keys", "tenants"):
        op.drop_table(table)
