"""Remediation: incidents (the seed table and more), their timelines and alerts, silences,
runbooks and their executions (the seed table and more).

Revision ID: 0009
Revises: 0008
"""

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(36)),
        sa.Column("service_name", sa.String(255), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("runbook_id", sa.String(255)),
        sa.Column("resolution", sa.Text()),
        sa.Column("group_key", sa.String(500), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("labels", JSON, nullable=False),
        timestamp("acknowledged_at", nullable=True),
        sa.Column("acknowledged_by", sa.String(255)),
        sa.Column("reopened", sa.Integer(), nullable=False),
        sa.Column("escalated", sa.Boolean(), nullable=False),
        timestamp("created_at"),
        timestamp("last_alert_at"),
        timestamp("resolved_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_incidents"),
        sa.CheckConstraint(
            "status IN ('open', 'acknowledged', 'resolved')", name="ck_incidents_incident_status"
        ),
    )
    op.create_index("ix_incidents_group_key", "incidents", ["group_key"])
    op.create_index("ix_incidents_created_at", "incidents", ["created_at"])
    op.create_table(
        "incident_events",
        sa.Column("id", sa.Integer(), autoincrement=True),
        sa.Column("incident_id", sa.String(36), nullable=False),
        timestamp("at"),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(255)),
        sa.Column("detail", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_incident_events"),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name="fk_incident_events_incident_id_incidents",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_incident_events_incident_id", "incident_events", ["incident_id"])
    op.create_table(
        "incident_alerts",
        sa.Column("incident_id", sa.String(36), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("labels", JSON, nullable=False),
        sa.Column("annotations", JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("received", sa.Integer(), nullable=False),
        timestamp("first_at"),
        timestamp("last_at"),
        sa.PrimaryKeyConstraint("incident_id", "fingerprint", name="pk_incident_alerts"),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name="fk_incident_alerts_incident_id_incidents",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "status IN ('firing', 'resolved')", name="ck_incident_alerts_alert_status"
        ),
    )
    op.create_table(
        "silences",
        sa.Column("id", sa.String(36)),
        sa.Column("matchers", JSON, nullable=False),
        timestamp("starts_at"),
        timestamp("ends_at"),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("ended_by", sa.String(255)),
        sa.PrimaryKeyConstraint("id", name="pk_silences"),
    )
    op.create_index("ix_silences_ends_at", "silences", ["ends_at"])
    op.create_table(
        "runbooks",
        sa.Column("name", sa.String(255)),
        sa.Column("file", sa.String(500), nullable=False),
        sa.Column("digest", sa.String(128), nullable=False),
        sa.Column("definition", JSON, nullable=False),
        sa.Column("builtin", sa.Boolean(), nullable=False),
        timestamp("updated_at"),
        sa.PrimaryKeyConstraint("name", name="pk_runbooks"),
    )
    op.create_table(
        "runbook_executions",
        sa.Column("id", sa.String(36)),
        sa.Column("incident_id", sa.String(36)),
        sa.Column("runbook_name", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("steps_completed", sa.Integer(), nullable=False),
        sa.Column("steps_total", sa.Integer(), nullable=False),
        sa.Column("output", JSON, nullable=False),
        sa.Column("trigger", JSON, nullable=False),
        sa.Column("step_states", JSON, nullable=False),
        sa.Column("approval", sa.String(16), nullable=False),
        sa.Column("approval_by", sa.String(255)),
        timestamp("approval_at", nullable=True),
        sa.Column("error", sa.Text()),
        sa.Column("node", sa.String(255)),
        timestamp("started_at"),
        timestamp("completed_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runbook_executions"),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name="fk_runbook_executions_incident_id_incidents",
            ondelete="SET NULL",
        ),
        sa.CheckConstraint(
            "status IN ('running', 'waiting', 'succeeded', 'failed', 'interrupted', 'rejected')",
            name="ck_runbook_executions_execution_status",
        ),
        sa.CheckConstraint(
            "approval IN ('none', 'pending', 'approved', 'rejected')",
            name="ck_runbook_executions_approval",
        ),
    )
    op.create_index("ix_runbook_executions_incident_id", "runbook_executions", ["incident_id"])
    op.create_index("ix_runbook_executions_runbook_name", "runbook_executions", ["runbook_name"])
    op.create_index("ix_runbook_executions_started_at", "runbook_executions", ["started_at"])


def downgrade() -> None:
    op.drop_table("runbook_executions")
    op.drop_table("runbooks")
    op.drop_table("silences")
    op.drop_table("incident_alerts")
    op.drop_table("incident_events")
    op.drop_table("incidents")
