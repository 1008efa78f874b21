"""Idempotency keys on job submissions, unique per tenant.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(200)))
        batch.create_unique_constraint("uq_jobs_tenant_idempotency_key",
                                       ["tenant", "idempotency_key"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint("uq_jobs_tenant_idempotency_key", type_="unique")
        batch.drop_column("idempotency_key")
