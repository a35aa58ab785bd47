"""Initial schema: marketplace_packages, installations, deployments.

Revision ID: 0001
Revises: none
"""

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "marketplace_packages",
        sa.Column("id", sa.String(36)),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("display_name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("category", sa.String(100)),
        sa.Column("icon_url", sa.String(500)),
        sa.Column("repository", sa.String(500)),
        sa.Column("version", sa.String(50)),
        sa.Column("manifest", JSON, nullable=False),
        sa.Column("downloads", sa.Integer(), server_default=sa.text("0"), nullable=False),
        timestamp("created_at"),
        timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_marketplace_packages"),
        sa.UniqueConstraint("name", name="uq_marketplace_packages_name"),
    )
    op.create_table(
        "installations",
        sa.Column("id", sa.String(36)),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("package_id", sa.String(36)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text()),
        sa.Column("config", JSON),
        sa.Column("container_ids", JSON, nullable=False),
        sa.Column("spec_hash", sa.String(128)),
        sa.Column("version", sa.String(50)),
        timestamp("post_install_done_at", nullable=True),
        timestamp("installed_at"),
        timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_installations"),
        sa.UniqueConstraint("name", name="uq_installations_name"),
        sa.ForeignKeyConstraint(
            ["package_id"],
            ["marketplace_packages.id"],
            name="fk_installations_package_id_marketplace_packages",
        ),
        sa.CheckConstraint(
            "status IN ('installing', 'running', 'stopped', 'error')",
            name="ck_installations_installation_status",
        ),
    )
    op.create_table(
        "deployments",
        sa.Column("id", sa.String(36)),
        sa.Column("installation_id", sa.String(36)),
        sa.Column("installation_name", sa.String(255), nullable=False),
        sa.Column("environment", sa.String(50), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version", sa.String(50)),
        sa.Column("summary", sa.Text()),
        sa.Column("error", sa.Text()),
        sa.Column("hook_output", sa.Text()),
        timestamp("created_at"),
        timestamp("deployed_at", nullable=True),
        timestamp("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_deployments"),
        sa.ForeignKeyConstraint(
            ["installation_id"],
            ["installations.id"],
            name="fk_deployments_installation_id_installations",
            ondelete="SET NULL",
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'deploying', 'live', 'failed')",
            name="ck_deployments_deployment_status",
        ),
    )
    op.create_index("ix_deployments_installation_id", "deployments", ["installation_id"])
    op.create_index("ix_deployments_installation_name", "deployments", ["installation_name"])
    op.create_index("ix_deployments_created_at", "deployments", ["created_at"])


def downgrade() -> None:
    op.drop_table("deployments")
    op.drop_table("installations")
    op.drop_table("marketplace_packages")
