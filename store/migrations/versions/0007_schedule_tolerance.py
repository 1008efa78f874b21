"""How far a scheduled audit's accuracy may fall from the previous run's before the run is
flagged as a regression.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("schedules") as batch:
        batch.add_column(sa.Column("tolerance", sa.Float, nullable=False,
                                   server_default="0.01"))


def downgrade() -> None:
    with op.batch_alter_table("schedules") as batch:
        batch.drop_column("tolerance")
