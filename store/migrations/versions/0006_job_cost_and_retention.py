"""A job's cost in example forward+backward passes, counted at submission (with its run time
it gives the deployment's measured throughput, for dry runs' estimates and Retry-After), and
when its adversarial set expired under ROBUSTNESS_RETENTION_DAYS.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("passes", sa.BigInteger))
        batch.add_column(sa.Column("adversarial_expired_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("adversarial_expired_at")
        batch.drop_column("passes")
