"""The Kind interface: what every kind of the config repo offers the one pipeline.

A kind (packages, routes, DNS) plans its share of a sync against the world (observe what its
providers hold, then diff: pure) and applies that share through its providers. The engine
calls the kinds in the order of `kinds.registry.KINDS`, so a kind may rely on the kinds before
it having been applied (routes dial the containers the packages started).

`Desired` is the whole desired state of one commit, loaded and validated by the engine before
any kind plans; `World` is what a kind reaches outside: the state store, the secrets its
providers need, the Docker Engine (opened on first use), progress reporting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from nebula.plan import Change, Part
from nebula.secrets.resolve import SecretResolver

if TYPE_CHECKING:
    from nebula.catalog import Catalog
    from nebula.kinds.agents.types import DesiredAgent
    from nebula.kinds.dns.types import DesiredZone
    from nebula.kinds.functions.types import DesiredFunction
    from nebula.kinds.packages.types import DesiredInstallation, Observed
    from nebula.kinds.projects.types import DesiredProject
    from nebula.kinds.routes.types import ExposedRoute
    from nebula.kinds.runbooks.types import DesiredRunbook
    from nebula.kinds.workflows.types import DesiredWorkflow
    from nebula.providers.docker import DockerProvider
    from nebula.spec.config import Node
    from nebula.spec.package import Package
    from nebula.spec.repo import RepoSpec
    from nebula.store import Store

Progress = Callable[[str, str], None]
"""(what: an installation, a zone, `proxy`; what is happening)"""


@dataclass(frozen=True)
class Desired:
    """The desired state of one commit of the config repo, every kind's share."""

    repo: RepoSpec
    catalog: Catalog
    installations: list[DesiredInstallation]
    routes: tuple[ExposedRoute, ...] = ()  # exposed hostnames, for the proxy
    zones: tuple[DesiredZone, ...] = ()  # DNS zones with their desired records
    runbooks: tuple[DesiredRunbook, ...] = ()  # the repo's and the enabled built-ins, by name
    workflows: tuple[DesiredWorkflow, ...] = ()  # by name
    functions: tuple[DesiredFunction, ...] = ()  # by name
    agents: tuple[DesiredAgent, ...] = ()  # by name
    projects: tuple[DesiredProject, ...] = ()  # by name

    def packages(self) -> list[Package]:
        """The catalog packages the installations use, at the versions they use."""
        used = sorted({(i.package, i.version) for i in self.installations if i.package})
        return [
            entry.package for name, version in used if (entry := self.catalog.get(name, version))
        ]


def _quiet(_what: str, _message: str) -> None:
    pass


@dataclass
class World:
    """What kinds plan against and apply to. The Docker Engine is `docker_provider` when the
    caller holds one (nebulad), else opened on first use at `docker_host` (else the node's
    `docker:`, else nebula.yaml's `docker.host`, else DOCKER_HOST) and closed by `close`.
    Node-bound kinds (packages) plan only `node`'s share; the cluster-wide ones plan all."""

    open_store: Callable[[], Store]  # the state store, opened when first needed
    secrets: SecretResolver | None = None  # default: the environment, then the vault
    docker_host: str | None = None
    node: str | None = None  # the node whose share this run plans; None: the first node
    progress: Progress = _quiet
    commit: str | None = None  # the config-repo commit being applied
    docker_provider: DockerProvider | None = None
    # nebulad's dashboard as Caddy dials it (HOST:PORT), which routes with `auth: nebula` ask
    # to check logins; None: no dashboard served over TCP (such routes are not written)
    dashboard: str | None = None
    changed: set[str] = field(default_factory=set)  # the kinds applied with changes so far
    # whether the store is open (nebulad's always is): a kind with nothing desired reads it
    # only then, so a plan that changes nothing needs no database
    store_open: bool = False
    _opened: list[DockerProvider] = field(default_factory=list, repr=False)
    _observed: Observed | None = field(default=None, repr=False)

    @property
    def store(self) -> Store:
        self.store_open = True
        return self.open_store()

    def secret(self, name: str) -> str:
        if self.secrets is None:
            from nebula.secrets.resolve import vault_secrets

            self.secrets = vault_secrets(self.open_store)
        return self.secrets(name)

    def node_spec(self, desired: Desired) -> Node:
        """The node this run plans for, as nebula.yaml describes it; `UnknownNodeError` when
        nebula.yaml has no such node."""
        return desired.repo.config.node_named(self.node)

    def docker(self, desired: Desired) -> DockerProvider:
        if self.docker_provider is None:
            from nebula.providers.docker import DockerProvider, engine_ssh

            config = desired.repo.config
            url = self.docker_host or self.node_spec(desired).docker or config.docker.host
            self.docker_provider = DockerProvider(url, ssh=engine_ssh(url, config.nodes))
            self._opened.append(self.docker_provider)
        return self.docker_provider

    def observed(self, desired: Desired) -> Observed:
        """What the Docker Engine runs, read once per plan (three list requests)."""
        if self._observed is None:
            self._observed = self.docker(desired).observe()
        return self._observed

    def forget_observed(self) -> None:
        """Containers changed: the next `observed` reads the engine again."""
        self._observed = None

    def close(self) -> None:
        for provider in self._opened:
            provider.close()
        self._opened.clear()


@dataclass(frozen=True)
class Applied:
    """What one kind's apply did: the changes carried out, the errors (one line each; the
    kind's other changes went on), and the kind's own detail for callers that show it.
    `temporary` tells nebulad whether to try the kind again at its next sync or to wait until
    something changes (the commit, a secret)."""

    kind: str
    changes: tuple[Change, ...] = ()
    errors: tuple[str, ...] = ()
    detail: Any = field(default=None, compare=False, repr=False)
    temporary: bool = False  # some errors may go away by themselves: worth trying again soon
    # what a change printed (an image's build), by the change's name, for the sync record
    logs: tuple[tuple[str, str], ...] = ()


class Kind(Protocol):
    name: ClassVar[str]

    def plan(self, desired: Desired, world: World) -> Part:
        """Observe what the kind's providers hold and diff it against `desired` (the diff
        itself is pure). What cannot be read is a problem of the part, never an exception."""
        ...

    def apply(self, part: Part, desired: Desired, world: World) -> Applied:
        """Carry out `part`, made by `plan` a moment ago under the same apply lock."""
        ...
