"""The daemon's syncs and settings; the commit each installation was applied from.

Revision ID: 0002
Revises: 0001
"""

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "syncs",
        sa.Column("id", sa.Integer(), autoincrement=True),
        sa.Column("commit", sa.String(64)),
        sa.Column("author", sa.String(255)),
        sa.Column("message", sa.Text()),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("errors", JSON, nullable=False),
        sa.Column("summary", JSON, nullable=False),
        sa.Column("changes", JSON, nullable=False),
        timestamp("started_at"),
        timestamp("finished_at", nullable=True),
        sa.Column("duration_ms", sa.Integer()),
        sa.PrimaryKeyConstraint("id", name="pk_syncs"),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed', 'held', 'superseded', 'skipped')",
            name="ck_syncs_sync_status",
        ),
    )
    op.create_index("ix_syncs_started_at", "syncs", ["started_at"])
    op.create_table(
        "daemon_settings",
        sa.Column("key", sa.String(64)),
        sa.Column("value", sa.Text()),
        sa.PrimaryKeyConstraint("key", name="pk_daemon_settings"),
    )
    with op.batch_alter_table("installations") as batch:
        batch.add_column(sa.Column("commit", sa.String(64)))
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("commit", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("commit")
    with op.batch_alter_table("installations") as batch:
        batch.drop_column("commit")
    op.drop_table("daemon_settings")
    op.drop_index("ix_syncs_started_at", table_name="syncs")
    op.drop_table("syncs")
