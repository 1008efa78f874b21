"""How far a scheduled audit's accuracy may fall from the previous run's before the run is
flagged as a regression; and the request id a job was submitted under (X-Request-ID), which
its worker's logs and its callback carry.

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
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("request_id", sa.String(128)))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("request_id")
    with op.batch_alter_table("schedules") as batch:
        batch.drop_column("tolerance")
