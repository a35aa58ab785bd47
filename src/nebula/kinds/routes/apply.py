"""The proxy step: after the containers are up, make Caddy route every exposed hostname.

Runs on every apply and sync, also when no container changed (an `expose:` added to a running
app changes only the proxy). One GET of Caddy's config when nothing changed; otherwise one
`POST /load` of the whole new config.
"""

from __future__ import annotations

from dataclasses import dataclass

from nebula.kinds.base import Desired
from nebula.kinds.packages.types import Observed
from nebula.kinds.routes.desired import (
    RouteChange,
    desired_config,
    owned_ids,
    owned_routes,
    route_changes,
    upstreams,
)
from nebula.providers.caddy import CaddyAdmin
from nebula.spec.proxy import Proxy


@dataclass(frozen=True)
class ProxyResult:
    changes: tuple[RouteChange, ...]
    requests: tuple[str, ...]  # the admin API requests made, "METHOD /path"
    routes: frozenset[str] = frozenset()  # the routes Nebula owned in Caddy's config before


def proxy_settings(desired: Desired) -> Proxy | None:
    """The proxy to drive: `proxy:` of nebula.yaml, Caddy's defaults once anything is exposed,
    or None (nothing exposed, no proxy configured: Caddy is not contacted at all)."""
    configured = desired.repo.config.proxy
    if configured is None and not desired.routes:
        return None
    return configured or Proxy()


def sync_proxy(
    desired: Desired, observed: Observed, dashboard: str | None = None
) -> ProxyResult | None:
    """Load the routes of `desired` into Caddy, given the containers `observed` now and the
    `dashboard` that routes with `auth: nebula` ask (see `desired_config`)."""
    proxy = proxy_settings(desired)
    if proxy is None:
        return None
    with CaddyAdmin(str(proxy.admin)) as caddy, caddy.editing():
        current = caddy.config()
        dials = upstreams(desired.routes, observed)
        target = desired_config(current, desired.routes, dials, proxy, dashboard)
        owned = frozenset(owned_routes(current))
        if target == current:
            return ProxyResult((), tuple(caddy.requests), owned)
        changes = route_changes(current, target)
        caddy.load(target, current)
        return ProxyResult(tuple(changes), tuple(caddy.requests), owned)


def preview_proxy(
    desired: Desired, observed: Observed, dashboard: str | None = None
) -> ProxyResult | None:
    """What `sync_proxy` would change, without changing anything (for `nebula plan`).

    A new route whose container does not run yet is shown dialing the container's name: apply
    puts its address there once it runs.
    """
    proxy = proxy_settings(desired)
    if proxy is None:
        return None
    with CaddyAdmin(str(proxy.admin)) as caddy:
        current = caddy.config()
        requests = tuple(caddy.requests)
    dials = upstreams(desired.routes, observed)
    published = owned_ids(current)
    for route in desired.routes:
        if route.id not in dials and route.id not in published:
            dials[route.id] = f"{route.container}:{route.port}"
    target = desired_config(current, desired.routes, dials, proxy, dashboard)
    changes = tuple(route_changes(current, target))
    return ProxyResult(changes, requests, frozenset(owned_routes(current)))
