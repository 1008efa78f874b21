"""Audit shards record the batch size they were planned with: an audit whose spec leaves it
unset gets the one its coordinator chose (robustness.batching), and every shard, retried or
run elsewhere, must batch (and so seed) its examples the same way.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_shards", sa.Column("batch_size", sa.Integer))


def downgrade() -> None:
    op.drop_column("audit_shards", "batch_size")
