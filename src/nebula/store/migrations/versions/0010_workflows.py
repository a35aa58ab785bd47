"""Workflows: the config repo's workflows as last loaded.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("name", sa.String(255)),
        sa.Column("file", sa.String(500), nullable=False),
        sa.Column("digest", sa.String(128), nullable=False),
        sa.Column("definition", JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_workflows"),
    )


def downgrade() -> None:
    op.drop_table("workflows")
