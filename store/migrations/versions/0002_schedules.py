"""Schedules (cron-timed audits) and job callbacks.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("cron", sa.String(200), nullable=False),
        sa.Column("audit", sa.JSON, nullable=False),
        sa.Column("callback_url", sa.String(2000)),
        sa.Column("next_run_at", TZ, nullable=False, index=True),
        sa.Column("last_run_at", TZ),
        sa.Column("last_job_id", sa.String(40)),
        sa.Column("created_at", TZ, nullable=False),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("schedule_id", sa.String(40)))
        batch.add_column(sa.Column("callback_url", sa.String(2000)))
        batch.add_column(sa.Column("callback_status", sa.String(200)))
        batch.add_column(sa.Column("callback_attempts", sa.Integer, nullable=False,
                                   server_default="0"))
        batch.create_index("ix_jobs_schedule_id", ["schedule_id"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_schedule_id")
        batch.drop_column("callback_attempts")
        batch.drop_column("callback_status")
        batch.drop_column("callback_url")
        batch.drop_column("schedule_id")
    op.drop_table("schedules")
