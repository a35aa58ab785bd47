"""Nebula's built-in functions (`implementation_type: code`, listed in `BUILTINS`), as the
callables `invoke_function` runs.

What this layer reaches itself is implemented here: installations and logs (the Docker Engine
and the store), incidents (the store), the catalog search, restarting an installation's
containers. `status`, `plan`, `apply` and `install` are nebulad's own work: it hands them in
(`daemon`); elsewhere they fail with a clear error. Answers are small JSON-able values, lists
capped at `LIST_LIMIT` entries, so they fit a small model's context.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from nebula.ai.functions import FunctionError
from nebula.catalog import builtin_catalog_dir
from nebula.catalog.index import load_index
from nebula.engine import logs, queries
from nebula.kinds.functions.types import BUILTINS
from nebula.providers.docker import DockerProvider
from nebula.store import Store
from nebula.store.incidents import IncidentStore

BuiltinFunction = Callable[[dict[str, Any]], Any]
DAEMON_BUILTINS = ("status", "plan", "apply", "install")  # what only nebulad can answer
LIST_LIMIT = 20  # entries of a list an answer holds
_LINE = 300  # characters of a log line or a description kept
_DEFAULT_LINES = 50


class Builtins(Mapping[str, BuiltinFunction]):
    """The built-in functions by name. `docker` opens the Docker Engine when first needed;
    `catalog_dirs` gives the catalog folders searched (default: the built-in catalog);
    `daemon` holds nebulad's callables for `DAEMON_BUILTINS`."""

    def __init__(
        self,
        store: Store,
        docker: Callable[[], DockerProvider],
        *,
        catalog_dirs: Callable[[], Sequence[Path]] = lambda: [builtin_catalog_dir()],
        daemon: Mapping[str, BuiltinFunction] | None = None,
    ) -> None:
        unknown = set(daemon or {}) - set(DAEMON_BUILTINS)
        if unknown:
            raise ValueError(f"not nebulad's built-ins: {', '.join(sorted(unknown))}")
        self._store = store
        self._docker = docker
        self._catalog_dirs = catalog_dirs
        self._daemon = dict(daemon or {})
        self._own: dict[str, BuiltinFunction] = {
            "installations": self.installations,
            "logs": self.logs,
            "incidents": self.incidents,
            "catalog_search": self.catalog_search,
            "restart": self.restart,
        }

    def __getitem__(self, name: str) -> BuiltinFunction:
        if name in self._own:
            return self._own[name]
        if name in DAEMON_BUILTINS:
            return self._daemon.get(name) or _needs_nebulad(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(BUILTINS)

    def __len__(self) -> int:
        return len(BUILTINS)

    def installations(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Each installation (or the one named): status, containers, health checks."""
        observed = self._docker().observe().containers
        rows = queries.installations(self._store, observed)
        name = arguments.get("installation")
        if name is not None:
            rows = [row for row in rows if row["name"] == name]
            if not rows:
                known = [i.name for i in self._store.installations()]
                raise FunctionError(_unknown("installation", name, known))
        return {"installations": [_installation(r) for r in rows[:LIST_LIMIT]], "total": len(rows)}

    def logs(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The last lines of an installation's containers (one service's), merged."""
        provider = self._docker()
        installation = arguments["installation"]
        found = logs.containers(provider, installation, arguments.get("service"))
        count = int(arguments.get("lines", _DEFAULT_LINES))
        lines = logs.read(provider, found, tail=count, since=None)[-count:]
        return {
            "installation": installation,
            "lines": [f"{e.service}: {e.line.message[:_LINE]}" for e in lines],
        }

    def incidents(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The newest incidents of a status (open by default)."""
        status = arguments.get("status", "open")
        found = IncidentStore(self._store).incidents(status, limit=LIST_LIMIT)
        return {
            "status": status,
            "incidents": [
                {
                    "id": i.id,
                    "title": i.title,
                    "service": i.service_name,
                    "severity": i.severity,
                    "status": i.status,
                    "since": i.created_at.isoformat(timespec="seconds"),
                    "runbook": i.runbook_id,
                }
                for i in found
            ],
        }

    def catalog_search(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Catalog packages matching the query, best first."""
        found = load_index(self._catalog_dirs()).search(arguments["query"])
        return {
            "packages": [
                {
                    "name": e.name,
                    "version": e.version,
                    "category": e.category,
                    "description": e.description[:_LINE],
                }
                for e in found[:LIST_LIMIT]
            ],
            "total": len(found),
        }

    def restart(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Restart the containers of an installation (one service's)."""
        provider = self._docker()
        found = logs.containers(provider, arguments["installation"], arguments.get("service"))
        for container in found:
            provider.restart_container(container.name)
        return {"restarted": [c.name for c in found]}


def _needs_nebulad(name: str) -> BuiltinFunction:
    def refuse(arguments: dict[str, Any]) -> Any:
        raise FunctionError(
            f"the built-in {name!r} is nebulad's: run the agent through nebulad "
            "(the API, or the CLI with nebulad running) to use it"
        )

    return refuse


def _installation(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": row["name"],
        "package": row["package"],
        "version": row["version"],
        "status": row["status"],
        "reason": row["reason"],
        "containers": row["containers"],
        "health": [
            {"check": h["check"], "status": h["status"], "detail": (h["detail"] or "")[:_LINE]}
            for h in row["health"]
        ],
    }


def _unknown(what: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"no {what} {name!r}{hint} (known: {', '.join(known[:LIST_LIMIT]) or 'none'})"
