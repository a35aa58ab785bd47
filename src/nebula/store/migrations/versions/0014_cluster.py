"""Many nodes: each nebulad's row with its heartbeat and whether it leads, which node ran each
sync, and daemon settings keys long enough to carry a node's name (`applied_commit@NODE`).

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("name", sa.String(64)),
        sa.Column("address", sa.String(255), nullable=False),
        sa.Column("labels", JSON, nullable=False),
        sa.Column("engine", sa.String(16), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("leader_since", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("name", name="pk_nodes"),
    )
    with op.batch_alter_table("syncs") as batch:
        batch.add_column(sa.Column("node", sa.String(64)))
        batch.create_index("ix_syncs_node", ["node"])
    with op.batch_alter_table("daemon_settings") as batch:
        batch.alter_column("key", type_=sa.String(160), existing_type=sa.String(64))


def downgrade() -> None:
    with op.batch_alter_table("daemon_settings") as batch:
        batch.alter_column("key", type_=sa.String(64), existing_type=sa.String(160))
    with op.batch_alter_table("syncs") as batch:
        batch.drop_index("ix_syncs_node")
        batch.drop_column("node")
    op.drop_table("nodes")
