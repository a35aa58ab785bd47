"""Projects: the config repo's as last loaded (the seed's `projects` table), and deployments of
a project's environment beside those of installations (`project_id`, the image, the build's
output, and a `building` status).

Revision ID: 0015
Revises: 0014
"""

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_BEFORE = "'pending', 'deploying', 'live', 'failed'"
_AFTER = "'pending', 'building', 'deploying', 'live', 'failed'"


def timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.String(36)),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("git_url", sa.Text()),
        sa.Column("path", sa.String(500)),
        sa.Column("branch", sa.String(255), nullable=False),
        sa.Column("file", sa.String(500), nullable=False),
        sa.Column("digest", sa.String(128), nullable=False),
        sa.Column("definition", JSON, nullable=False),
        timestamp("created_at"),
        timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_projects"),
        sa.UniqueConstraint("name", name="uq_projects_name"),
    )
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("project", sa.String(255)))
        batch.add_column(sa.Column("project_id", sa.String(36)))
        batch.add_column(sa.Column("image", sa.String(255)))
        batch.add_column(sa.Column("logs", sa.Text()))
        batch.create_foreign_key(
            "fk_deployments_project_id_projects",
            "projects",
            ["project_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index("ix_deployments_project", ["project"])
        batch.create_index("ix_deployments_project_id", ["project_id"])
        batch.drop_constraint("ck_deployments_deployment_status", type_="check")
        batch.create_check_constraint(
            op.f("ck_deployments_deployment_status"), f"status IN ({_AFTER})"
        )


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.drop_constraint("ck_deployments_deployment_status", type_="check")
        batch.create_check_constraint(
            op.f("ck_deployments_deployment_status"), f"status IN ({_BEFORE})"
        )
        batch.drop_index("ix_deployments_project_id")
        batch.drop_index("ix_deployments_project")
        batch.drop_constraint("fk_deployments_project_id_projects", type_="foreignkey")
        batch.drop_column("logs")
        batch.drop_column("image")
        batch.drop_column("project_id")
        batch.drop_column("project")
    op.drop_table("projects")
