"""Every kind of the config repo, in the order the pipeline applies them.

One line per kind: its name and where its `Kind` class lives, imported only when used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nebula.kinds.base import Kind

KINDS: dict[str, str] = {
    "packages": "nebula.kinds.packages.kind:Packages",
    "swarm": "nebula.kinds.swarm.kind:Swarm",  # a swarm node's installations, as services
    "routes": "nebula.kinds.routes.kind:Routes",  # after packages: routes dial their containers
    "dns": "nebula.kinds.dns.kind:Dns",
    "runbooks": "nebula.kinds.runbooks.kind:Runbooks",
    "workflows": "nebula.kinds.workflows.kind:Workflows",
    "functions": "nebula.kinds.functions.kind:Functions",
    "agents": "nebula.kinds.agents.kind:Agents",
    # last: a build may take minutes, and no other kind waits for it; after routes, whose
    # route for a project's hostname its deployment switches
    "projects": "nebula.kinds.projects.kind:Projects",
}


def kind(name: str) -> Kind:
    """The kind called `name` (one of `KINDS`)."""
    module, _, attribute = KINDS[name].partition(":")
    cls: type[Kind] = getattr(importlib.import_module(module), attribute)
    return cls()


def load_all() -> None:
    """Import every kind now (a long-running process pays for them once, up front)."""
    for name in KINDS:
        kind(name)
