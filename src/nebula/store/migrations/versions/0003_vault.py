"""The vault: encrypted secrets and the master key metadata.

Revision ID: 0003
Revises: 0002
"""

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "vault_keys",
        sa.Column("key_id", sa.String(32)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("fingerprint_key", sa.LargeBinary(), nullable=False),
        sa.Column("fingerprint_nonce", sa.LargeBinary(), nullable=False),
        timestamp("created_at"),
        timestamp("retired_at", nullable=True),
        sa.PrimaryKeyConstraint("key_id", name="pk_vault_keys"),
    )
    op.create_table(
        "secrets",
        sa.Column("name", sa.String(128)),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("key_nonce", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("fingerprint", sa.String(32), nullable=False),
        timestamp("created_at"),
        timestamp("rotated_at", nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_secrets"),
    )
    op.create_index("ix_secrets_key_id", "secrets", ["key_id"])


def downgrade() -> None:
    op.drop_index("ix_secrets_key_id", table_name="secrets")
    op.drop_table("secrets")
    op.drop_table("vault_keys")
