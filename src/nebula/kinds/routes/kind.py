"""The routes kind: every exposed hostname routed through Caddy, with its TLS policy.

Planned on every sync (one GET of Caddy's config) and applied after the packages: with one node a
route dials its container's address, which the packages' apply may just have changed; with
several, the published port of the installation's node. Nothing exposed and no
`proxy:` in nebula.yaml: Caddy is not contacted at all.
"""

from __future__ import annotations

from typing import ClassVar

from nebula.errors import NebulaError
from nebula.kinds.base import Applied, Desired, World
from nebula.kinds.packages.types import Observed
from nebula.kinds.routes.apply import preview_proxy, sync_proxy
from nebula.kinds.routes.desired import RouteAction
from nebula.plan import Part


class Routes:
    name: ClassVar[str] = "routes"

    def plan(self, desired: Desired, world: World) -> Part:
        try:
            result = preview_proxy(desired, _observed(desired, world), world.dashboard)
        except NebulaError as exc:
            return Part(self.name, problems=(f"proxy: {exc}",))
        if result is None:
            return Part(self.name)
        removed = {
            c.id for c in result.changes if c.action is RouteAction.DELETE and c.id in result.routes
        }
        return Part(
            self.name,
            result.changes,
            frozenset(removed),
            len(result.routes),
            "routes",
            notes=_refused(desired, world),
        )

    def apply(self, part: Part, desired: Desired, world: World) -> Applied:
        """Bring Caddy in line with the containers as they run now (the plan showed routes to
        containers not yet started by their names). When Caddy could not be read at plan time,
        nothing is loaded: what it would change was never shown nor guarded."""
        if part.problems:
            return Applied(self.name, errors=part.problems, temporary=True)
        if not part.has_changes and "packages" not in world.changed:
            return Applied(self.name)
        try:
            result = sync_proxy(desired, _observed(desired, world), world.dashboard)
        except NebulaError as exc:
            return Applied(self.name, errors=(f"proxy: {exc}",), temporary=exc.temporary)
        return Applied(self.name, result.changes if result else (), _refused(desired, world))


def _refused(desired: Desired, world: World) -> tuple[str, ...]:
    """The routes with `auth: nebula` this run cannot write, there being no dashboard to ask
    (each is left as Caddy has it, if it has it)."""
    if world.dashboard is not None:
        return ()
    return tuple(
        f"proxy: {route.host} ({route.installation}) has `auth: nebula`, but no nebulad "
        "dashboard is served over TCP to check logins: run nebulad with --tcp-listen HOST:PORT "
        "and --ui (only nebulad writes such a route)"
        for route in desired.routes
        if route.auth
    )


def _observed(desired: Desired, world: World) -> Observed:
    """The containers' addresses, read only when a route dials one: with several nodes every
    route dials a node's published port, and the world's engine is just one node's."""
    if all(route.dial is not None for route in desired.routes):
        return Observed()
    return world.observed(desired)
