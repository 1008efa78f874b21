"""Models and jobs.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200)),
        sa.Column("sha256", sa.String(64), nullable=False, index=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("format", sa.String(40), nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("card", sa.JSON),
        sa.Column("source_training_id", sa.String(40)),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False, index=True),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("model_id", sa.String(40), sa.ForeignKey("models.id", ondelete="SET NULL")),
        sa.Column("progress_completed", sa.Integer, nullable=False),
        sa.Column("progress_total", sa.Integer, nullable=False),
        sa.Column("phase", sa.String(100)),
        sa.Column("error", sa.Text),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("worker", sa.String(200)),
        sa.Column("report_sha256", sa.String(64)),
        sa.Column("adversarial_sha256", sa.String(64)),
        sa.Column("result_model_id", sa.String(40)),
        sa.Column("history", sa.JSON),
        sa.Column("summary", sa.JSON),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("enqueued_at", TZ),
        sa.Column("started_at", TZ),
        sa.Column("heartbeat_at", TZ),
        sa.Column("finished_at", TZ),
        sa.Column("seconds", sa.Float),
    )


def downgrade() -> None:
    op.drop_table("jobs")
    op.drop_table("models")
