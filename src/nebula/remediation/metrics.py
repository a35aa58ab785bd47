"""What remediation counts, in prometheus_client's default registry (served at `/metrics`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EXECUTION_RESULTS = ("succeeded", "failed", "waiting", "interrupted", "rejected")

INCIDENTS_OPEN = Gauge(
    "nebula_incidents_open",
    "Incidents not resolved yet (open or acknowledged).",
)
RUNBOOK_EXECUTIONS = Counter(
    "nebula_runbook_executions",
    "Runbook runs that ended (or stopped to wait for an approval), by runbook and result.",
    ["runbook", "result"],
)
TIME_TO_RECOVERY = Histogram(
    "nebula_incident_recovery_seconds",
    "Time from an incident opening to its alerts clearing by themselves (recovered).",
    buckets=(1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 14400.0),
)
NOTIFICATIONS = Counter(
    "nebula_notifications",
    "Notifications sent to a channel, by channel and result: sent or failed.",
    ["channel", "result"],
)
WORKFLOW_RUNS = Counter(
    "nebula_workflow_runs",
    "Workflow runs that ended, by workflow and result (succeeded, failed, cancelled, "
    "interrupted, or skipped: a start while a run was going under `concurrency: skip`).",
    ["workflow", "result"],
)
WORKFLOW_DURATION = Histogram(
    "nebula_workflow_run_seconds",
    "Time a workflow run took, by workflow.",
    ["workflow"],
    buckets=(1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0),
)
