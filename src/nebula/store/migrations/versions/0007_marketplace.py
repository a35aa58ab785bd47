"""Marketplace: health check results, hook runs, the pre_uninstall hooks of each installation.

Revision ID: 0007
Revises: 0006
"""

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def timestamp(name: str) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "health_results",
        sa.Column("installation", sa.String(255)),
        sa.Column("check_name", sa.String(255)),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("target", sa.String(500), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        timestamp("checked_at"),
        timestamp("since"),
        sa.PrimaryKeyConstraint("installation", "check_name", name="pk_health_results"),
        sa.CheckConstraint(
            "status IN ('healthy', 'unhealthy')", name="ck_health_results_health_status"
        ),
    )
    op.create_table(
        "hook_runs",
        sa.Column("id", sa.String(36)),
        sa.Column("installation", sa.String(255), nullable=False),
        sa.Column("hook", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("exit_code", sa.Integer()),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("version", sa.String(50)),
        timestamp("started_at"),
        timestamp("finished_at"),
        sa.PrimaryKeyConstraint("id", name="pk_hook_runs"),
        sa.CheckConstraint(
            "hook IN ('post_install', 'pre_upgrade', 'post_upgrade', 'pre_uninstall')",
            name="ck_hook_runs_hook_kind",
        ),
        sa.CheckConstraint(
            "status IN ('succeeded', 'failed', 'timed_out')", name="ck_hook_runs_hook_status"
        ),
    )
    op.create_index("ix_hook_runs_installation", "hook_runs", ["installation"])
    op.create_index("ix_hook_runs_started_at", "hook_runs", ["started_at"])
    op.create_table(
        "uninstall_hooks",
        sa.Column("installation", sa.String(255)),
        sa.Column("lines", JSON, nullable=False),
        sa.Column("env", JSON, nullable=False),
        timestamp("updated_at"),
        sa.PrimaryKeyConstraint("installation", name="pk_uninstall_hooks"),
    )


def downgrade() -> None:
    op.drop_table("uninstall_hooks")
    op.drop_index("ix_hook_runs_started_at", table_name="hook_runs")
    op.drop_index("ix_hook_runs_installation", table_name="hook_runs")
    op.drop_table("hook_runs")
    op.drop_table("health_results")
