"""The functions kind's plain data: a function as agents call it, Nebula's built-in functions
(`implementation_type: code`), which the AI runtime implements, and a function of a commit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from nebula.store.records import FunctionRecord

ImplementationType = Literal["code", "http", "docker"]


@dataclass(frozen=True)
class HttpCall:
    """How an `http` function calls its URL: GET sends the arguments as the query, any other
    method as a JSON body. Header values may hold `${secret:NAME}`, resolved at call time."""

    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DockerCall:
    """How a `docker` function runs its image: once, the arguments as JSON on stdin, without a
    network unless `network` names one, within `memory` and `cpus`."""

    command: tuple[str, ...] = ()
    network: str | None = None
    memory: str = "256m"
    cpus: float = 0.5


@dataclass(frozen=True)
class FunctionDef:
    """A function agents may call. `parameters` is the JSON Schema (an object schema) its
    arguments are validated against before it runs; `implementation` is a built-in's name
    (code), a URL (http) or an image (docker)."""

    name: str
    description: str
    parameters: dict[str, Any]
    implementation: str
    implementation_type: ImplementationType
    file: str = ""
    timeout: float = 30.0
    require_approval: bool = False  # a person approves every call, whatever the agent
    http: HttpCall | None = None
    docker: DockerCall | None = None

    @property
    def writes(self) -> bool:
        """Whether a call may change something: a writing built-in. HTTP and container
        functions are the repo author's own and ask only when `require_approval` says so."""
        builtin = BUILTINS.get(self.implementation) if self.implementation_type == "code" else None
        return builtin is not None and builtin.writes


@dataclass(frozen=True)
class Builtin:
    """A built-in function: what it does, the JSON Schema of its arguments, whether it writes."""

    description: str
    parameters: dict[str, Any]
    writes: bool = False


def _object(required: tuple[str, ...] = (), **properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_NAME = {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"}

BUILTINS: dict[str, Builtin] = {
    "status": Builtin(
        "The daemon's state: the commit it follows, the last sync, counts", _object()
    ),
    "installations": Builtin(
        "Installations with their status, health and containers (one, or all)",
        _object(installation=_NAME),
    ),
    "logs": Builtin(
        "The last lines of an installation's logs (one service, or all)",
        _object(
            ("installation",),
            installation=_NAME,
            service=_NAME,
            lines={"type": "integer", "minimum": 1, "maximum": 200},
        ),
    ),
    "incidents": Builtin(
        "Incidents, newest first (open ones unless a status is given)",
        _object(status={"enum": ["open", "acknowledged", "resolved"]}),
    ),
    "plan": Builtin("What the next sync would change", _object()),
    "catalog_search": Builtin(
        "Catalog packages matching a query", _object(("query",), query={"type": "string"})
    ),
    "restart": Builtin(
        "Restart an installation's containers (one service, or all)",
        _object(("installation",), installation=_NAME, service=_NAME),
        writes=True,
    ),
    "apply": Builtin("Run a sync of the config repo now", _object(), writes=True),
    "install": Builtin(
        "Install a catalog package (commits an installation to the config repo)",
        _object(
            ("package",),
            package=_NAME,
            name=_NAME,
            variables={"type": "object", "additionalProperties": {"type": "string"}},
        ),
        writes=True,
    ),
}


@dataclass(frozen=True)
class DesiredFunction:
    """A function of the commit: as the AI runtime calls it, and as the store records it."""

    spec: FunctionDef
    record: FunctionRecord

    @property
    def name(self) -> str:
        return self.spec.name
