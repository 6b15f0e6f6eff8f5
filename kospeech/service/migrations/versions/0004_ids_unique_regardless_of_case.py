"""User ids (per tenant) and tenant names unique regardless of case (unique indexes on ``lower(...)``): on a
case-insensitive file system (macOS, an SMB or Azure Files share) ``Alice`` and ``alice`` would share one folder, and
deleting one would delete the other's audio and adapters. A database that already holds such a pair is not changed:
the upgrade stops, names the pairs with their row ids and points to docs/service.md ("Ids that differ only in case"),
which says how to rename one of each in the database and on disk (no server can start on that database before).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from kospeech.errors import SchemaError

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    users = bind.execute(
        sa.text(
            "SELECT tenants.name, users.user_id, users.id FROM users JOIN tenants ON tenants.id = users.tenant_id "
            "WHERE EXISTS (SELECT 1 FROM users AS other WHERE other.tenant_id = users.tenant_id "
            "AND lower(other.user_id) = lower(users.user_id) AND other.id <> users.id) ORDER BY 1, 2"
        )
    ).all()
    tenants = bind.execute(
        sa.text(
            "SELECT name, id FROM tenants WHERE EXISTS (SELECT 1 FROM tenants AS other "
            "WHERE lower(other.name) = lower(tenants.name) AND other.id <> tenants.id) ORDER BY 1"
        )
    ).all()
    if users or tenants:
        clashes = [f"tenant {name!r} (tenants.id {row!r})" for name, row in tenants]
        clashes += [f"user {tenant}/{user} (users.id {row!r})" for tenant, user, row in users]
        raise SchemaError(
            "these ids differ only in case, so they would share folders on a case-insensitive file system: "
            f"{', '.join(clashes)}; the service cannot start on this database until one of each is renamed, in the "
            'database (its row and the paths of its files) and on disk, as docs/service.md describes under "Ids '
            'that differ only in case"'
        )
    op.create_index("uq_users_tenant_user_folded", "users", ["tenant_id", sa.text("lower(user_id)")], unique=True)
    op.create_index("uq_tenants_name_folded", "tenants", [sa.text("lower(name)")], unique=True)


def downgrade() -> None:
    op.drop_index("uq_tenants_name_folded", table_name="tenants")
    op.drop_index("uq_users_tenant_user_folded", table_name="users")
