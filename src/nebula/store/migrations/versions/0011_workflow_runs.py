"""Workflow runs: recorded with runbook runs (one durable-run table, `kind` says which), and a
run may be `cancelled`.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_STATUSES = "'running', 'waiting', 'succeeded', 'failed', 'interrupted', 'rejected'"


def upgrade() -> None:
    with op.batch_alter_table("runbook_executions") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="runbook"))
        batch.drop_constraint("ck_runbook_executions_execution_status", type_="check")
        batch.create_check_constraint(
            op.f("ck_runbook_executions_execution_status"), f"status IN ({_STATUSES}, 'cancelled')"
        )
        batch.create_check_constraint(
            op.f("ck_runbook_executions_execution_kind"), "kind IN ('runbook', 'workflow')"
        )
        batch.create_index("ix_runbook_executions_kind", ["kind"])


def downgrade() -> None:
    with op.batch_alter_table("runbook_executions") as batch:
        batch.drop_index("ix_runbook_executions_kind")
        batch.drop_constraint("ck_runbook_executions_execution_kind", type_="check")
        batch.drop_constraint("ck_runbook_executions_execution_status", type_="check")
        batch.create_check_constraint(
            op.f("ck_runbook_executions_execution_status"), f"status IN ({_STATUSES})"
        )
        batch.drop_column("kind")
