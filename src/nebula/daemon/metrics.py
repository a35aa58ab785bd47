"""What nebulad counts, in Prometheus terms: served at `/metrics` by `daemon.api`.

Module-level objects in prometheus_client's default registry; the daemon core updates them:

    from nebula.daemon import metrics

    metrics.SYNCS.labels(status="succeeded").inc()
    metrics.SYNC_DURATION.observe(seconds)
    metrics.CHANGES_APPLIED.labels(action="create").inc(n)
    metrics.DRIFT_CORRECTIONS.inc()
    metrics.APPLY_ERRORS.inc()
    metrics.LAST_SUCCESSFUL_SYNC.set_to_current_time()
    metrics.HEALTH_UP.labels(installation="blog", check="web").set(1)  # see daemon.health
    metrics.FAULTS.labels(part="sync").inc()  # see daemon.faults

Names follow Prometheus conventions: counters end in `_total` (prometheus_client adds it to the
name given here), units are base units (`_seconds`), timestamps are Unix seconds. Every label
value the core uses is created up front, so a series reads 0 before its first increment
instead of being absent (absent series make `rate()` and alerts silently empty).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SYNC_STATUSES = ("succeeded", "failed", "held", "superseded", "skipped")
CHANGE_ACTIONS = ("create", "update", "delete")

SYNCS = Counter(
    "nebula_syncs",
    "Syncs of the config repo (load, validate, plan, apply) that ended, by final status: "
    "succeeded, failed, held (waiting for approval), superseded (a newer commit came) or "
    "skipped.",
    ["status"],
)
SYNC_DURATION = Histogram(
    "nebula_sync_duration_seconds",
    "Time one sync took, from fetching the commit to the end of its apply.",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0),
)
CHANGES_APPLIED = Counter(
    "nebula_changes_applied",
    "Changes carried out on the node (containers, networks, volumes), by action.",
    ["action"],
)
DRIFT_CORRECTIONS = Counter(
    "nebula_drift_corrections",
    "Managed resources found changed, stopped or removed by hand and put back.",
)
APPLY_ERRORS = Counter(
    "nebula_apply_errors",
    "Apply steps that failed (an installation that did not come up counts once).",
)
LAST_SUCCESSFUL_SYNC = Gauge(
    "nebula_last_successful_sync_timestamp_seconds",
    "Unix time at which the last successful sync ended; 0 before the first one.",
)

HEALTH_UP = Gauge(
    "nebula_health_check_up",
    "Whether an installation's health check passed at its last run (1) or failed (0).",
    ["installation", "check"],
)
HEALTH_LATENCY = Gauge(
    "nebula_health_check_latency_seconds",
    "How long an installation's health check took at its last run.",
    ["installation", "check"],
)
HEALTH_PROBES = Counter(
    "nebula_health_checks",
    "Health check runs, by result (pass or fail).",
    ["result"],
)
FAULTS = Counter(
    "nebula_daemon_faults",
    "Exceptions inside nebulad's own threads (the daemon carries on), by part: sync, timer, "
    "health, docker-events, certificates, watch.",
    ["part"],
)
FAULTY = Gauge(
    "nebula_daemon_faulty",
    "Whether a part of nebulad is failing now (1) or works (0); its fault is in /status.",
    ["part"],
)
DAEMON_PARTS = ("sync", "timer", "health", "docker-events", "certificates", "watch")

for _status in SYNC_STATUSES:
    SYNCS.labels(status=_status)
for _action in CHANGE_ACTIONS:
    CHANGES_APPLIED.labels(action=_action)
for _result in ("pass", "fail"):
    HEALTH_PROBES.labels(result=_result)
for _part in DAEMON_PARTS:
    FAULTS.labels(part=_part)
    FAULTY.labels(part=_part).set(0)
