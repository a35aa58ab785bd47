"""Placement: the node whose engine runs each installation.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("installations") as batch:
        batch.add_column(sa.Column("node", sa.String(255)))
        batch.create_index("ix_installations_node", ["node"])


def downgrade() -> None:
    with op.batch_alter_table("installations") as batch:
        batch.drop_index("ix_installations_node")
        batch.drop_column("node")
