"""Agents and functions: the config repo's as last loaded (the seed's tables and more), the
agents' runs (the seed's `agent_executions` and more) and each run's steps.

Revision ID: 0012
Revises: 0011
"""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_STATUSES = (
    "'running', 'waiting_approval', 'completed', 'failed', 'blocked', 'timed_out', "
    "'rejected', 'interrupted'"
)


def timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def definition_columns() -> list[sa.Column[Any]]:
    """What every table of definitions loaded from the config repo has."""
    return [
        sa.Column("file", sa.String(500), nullable=False),
        sa.Column("digest", sa.String(128), nullable=False),
        sa.Column("definition", JSON, nullable=False),
        timestamp("created_at"),
        timestamp("updated_at"),
    ]


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.String(36)),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("system_prompt", sa.Text(), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("temperature", sa.Float(), nullable=False),
        sa.Column("tools", JSON, nullable=False),
        sa.Column("config", JSON, nullable=False),
        *definition_columns(),
        sa.PrimaryKeyConstraint("id", name="pk_agents"),
        sa.UniqueConstraint("name", name="uq_agents_name"),
    )
    op.create_table(
        "functions",
        sa.Column("id", sa.String(36)),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("parameters", JSON, nullable=False),
        sa.Column("implementation", sa.Text()),
        sa.Column("implementation_type", sa.String(50)),
        *definition_columns(),
        sa.PrimaryKeyConstraint("id", name="pk_functions"),
        sa.UniqueConstraint("name", name="uq_functions_name"),
    )
    op.create_table(
        "agent_executions",
        sa.Column("id", sa.String(36)),
        sa.Column("agent_id", sa.String(36)),
        sa.Column("agent_name", sa.String(255), nullable=False),
        sa.Column("input", sa.Text(), nullable=False),
        sa.Column("output", sa.Text()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tokens_used", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("incident_id", sa.String(36)),
        sa.Column("state", JSON, nullable=False),
        sa.Column("pending", JSON),
        sa.Column("approval_by", sa.String(255)),
        timestamp("created_at"),
        timestamp("completed_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_agent_executions"),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name="fk_agent_executions_agent_id_agents",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name="fk_agent_executions_incident_id_incidents",
            ondelete="SET NULL",
        ),
        sa.CheckConstraint(
            f"status IN ({_STATUSES})", name="ck_agent_executions_agent_execution_status"
        ),
    )
    op.create_index("ix_agent_executions_agent_id", "agent_executions", ["agent_id"])
    op.create_index("ix_agent_executions_agent_name", "agent_executions", ["agent_name"])
    op.create_index("ix_agent_executions_incident_id", "agent_executions", ["incident_id"])
    op.create_index("ix_agent_executions_created_at", "agent_executions", ["created_at"])
    op.create_table(
        "agent_steps",
        sa.Column("id", sa.Integer(), autoincrement=True),
        sa.Column("execution_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("detail", JSON, nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_agent_steps"),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["agent_executions.id"],
            name="fk_agent_steps_execution_id_agent_executions",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("execution_id", "seq", name="uq_agent_steps_execution_id_seq"),
        sa.CheckConstraint(
            "kind IN ('turn', 'tool_call', 'approval')", name="ck_agent_steps_agent_step_kind"
        ),
    )
    op.create_index("ix_agent_steps_execution_id", "agent_steps", ["execution_id"])


def downgrade() -> None:
    op.drop_table("agent_steps")
    op.drop_table("agent_executions")
    op.drop_table("functions")
    op.drop_table("agents")
