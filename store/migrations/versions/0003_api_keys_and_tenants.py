"""API keys, and the tenant that owns each model, job and schedule.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("models", "jobs", "schedules")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200)),
        sa.Column("tenant", sa.String(100), nullable=False, index=True),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )
    for table in TABLES:  # what existed before keys belongs to the default tenant
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("tenant", sa.String(100), nullable=False,
                                       server_default="default"))
            batch.create_index(f"ix_{table}_tenant", ["tenant"])


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_tenant")
            batch.drop_column("tenant")
    op.drop_table("api_keys")
