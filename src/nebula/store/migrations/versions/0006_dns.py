"""Domains and DNS records (the seed tables), certificate status.

Revision ID: 0006
Revises: 0005
"""

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "domains",
        sa.Column("id", sa.String(36)),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("provider", sa.String(50)),
        sa.Column("zone_id", sa.String(255)),
        sa.Column("ssl_status", sa.String(50)),
        timestamp("ssl_expires_at", nullable=True),
        sa.Column("last_error", sa.Text()),
        timestamp("synced_at", nullable=True),
        timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_domains"),
        sa.UniqueConstraint("name", name="uq_domains_name"),
    )
    op.create_table(
        "dns_records",
        sa.Column("id", sa.String(36)),
        sa.Column("domain_id", sa.String(36), nullable=False),
        sa.Column("record_type", sa.String(10), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("content", sa.String(500), nullable=False),
        sa.Column("ttl", sa.Integer(), nullable=False),
        sa.Column("proxied", sa.Boolean(), nullable=False),
        sa.Column("provider_id", sa.String(255)),
        sa.Column("owned", sa.Boolean(), nullable=False),
        timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_dns_records"),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            name="fk_dns_records_domain_id_domains",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_dns_records_domain_id", "dns_records", ["domain_id"])


def downgrade() -> None:
    op.drop_index("ix_dns_records_domain_id", table_name="dns_records")
    op.drop_table("dns_records")
    op.drop_table("domains")
