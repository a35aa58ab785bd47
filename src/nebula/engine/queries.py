"""What the CLI and the daemon read from the opened store, as plain values; and the audit entry
a CLI command appends once it has changed something.

The CLI imports this inside its commands (it loads SQLAlchemy); nebulad's API answers with the
same functions, so a question asked of both is answered the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any

from nebula.kinds.packages.types import ObservedContainer
from nebula.store import audit, installation_runs
from nebula.store.audit import AuditRecord, Verification
from nebula.store.dns import DnsStore
from nebula.store.identity import IdentityError
from nebula.store.store import Store

__all__ = [
    "AI_MODELS",
    "AuditRecord",
    "IdentityError",
    "Verification",
    "ai_models",
    "append_audit",
    "audit_entries",
    "audit_verification",
    "domain_records",
    "domains",
    "hook_runs",
    "installations",
    "parse_audit_head",
]


def domains(store: Store) -> list[dict[str, Any]]:
    """Every zone as last synced: provider, record count, certificate status, last error."""
    return [asdict(d) for d in DnsStore(store).domains()]


def domain_records(store: Store, domain: str) -> dict[str, Any] | None:
    """A zone (by id or name) and its records as last read from its provider; None if unknown."""
    dns = DnsStore(store)
    found = dns.domain(domain)
    if found is None:
        return None
    return {"domain": asdict(found), "records": [asdict(r) for r in dns.records(found.id)]}


def installations(store: Store, containers: Iterable[ObservedContainer]) -> list[dict[str, Any]]:
    """Each installation as last applied, with its containers (from `containers`, observed now)
    and the latest result of each of its health checks."""
    running: dict[str, list[dict[str, Any]]] = {}
    for c in containers:
        running.setdefault(c.installation, []).append(
            {"name": c.name, "state": c.state, "health": c.health}
        )
    checks: dict[str, list[dict[str, Any]]] = {}
    for check in installation_runs.health(store):
        checks.setdefault(check.installation, []).append(check.to_dict())
    return [
        {
            "name": i.name,
            "package": i.package,
            "version": i.version,
            "status": i.status,
            "reason": i.status_reason,
            "commit": i.commit,
            "node": i.node,
            "updated_at": i.updated_at,
            "containers": running.get(i.name, []),
            "health": checks.get(i.name, []),
        }
        for i in store.installations()
    ]


AI_MODELS = "ai.models"  # the setting where nebulad keeps its Ollama models' state


def ai_models(store: Store) -> list[dict[str, Any]]:
    """The Ollama models nebulad's agents need, as it last saved them (`nebula.ai.pulls`):
    each {model, state: present | pulling | missing | failed, percent, error}."""
    raw = store.setting(AI_MODELS)
    found = json.loads(raw) if raw else []
    return found if isinstance(found, list) else []


def hook_runs(store: Store) -> list[dict[str, Any]]:
    """The latest run of each hook of each installation."""
    return [asdict(h) for h in installation_runs.last_hook_runs(store)]


def audit_entries(
    store: Store,
    *,
    since: datetime | None,
    actor: str | None,
    target: str | None,
    limit: int,
) -> list[AuditRecord]:
    """The newest `limit` audit entries matching, oldest first (see `store.audit.entries`)."""
    return audit.entries(store, since=since, actor=actor, target=target, limit=limit)


def parse_audit_head(text: str) -> tuple[int, str]:
    """A head of the audit log as `audit_verification` reports it (`SEQ:HASH`); ValueError
    otherwise."""
    return audit.parse_anchor(text)


def audit_verification(store: Store, expect: tuple[int, str] | None) -> Verification:
    """Every audit entry edited, deleted or moved; `expect`, a head noted earlier, must still be
    in the log."""
    return audit.verify(store, expect=expect)


def append_audit(
    store: Store,
    *,
    actor: str,
    action: str,
    target: str | None,
    detail: Mapping[str, Any] | None,
    secrets: Mapping[str, str] | None,
) -> None:
    """Add an entry to the audit log; its detail is masked (`secrets`: value -> fingerprint)."""
    audit.append(store, actor=actor, action=action, target=target, detail=detail, secrets=secrets)
