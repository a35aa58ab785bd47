"""Exposed hostnames → Caddy's config: one reverse-proxy route per hostname, TLS policies.

Pure: the routes kind reads Caddy's current config and the containers' addresses, this module
computes the config Caddy should have, and the provider loads it only when it differs.

How Caddy reaches a container: with one node, Caddy runs on the Docker host (as its own
service, on the host network) and dials the container's address on its installation network at
the exposed container port. Nothing needs to be published on the host, and the upstream follows
the container when it is recreated (the next sync rewrites the route). With several nodes, Caddy
runs on the edge node (`proxy.node`) and dials `<node address>:<host port>` of the node the
installation is placed on: the exposed port must be published there with a fixed host port.

Ownership: every object Nebula writes carries an `@id` starting with `nebula-` (routes
`nebula-<installation>-<host>`, TLS policies `nebula-tls-...`), and Nebula's routes live in
the HTTP server named by `proxy.server`. Everything else in Caddy's config (other servers,
routes without a `nebula-` id, other TLS policies, storage, admin) is kept as it is.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv6Address
from typing import Any

from nebula.errors import ConfigError, ConfigIssue
from nebula.kinds.packages.types import ContainerSpec, DesiredInstallation, Observed
from nebula.kinds.routes.types import (
    LOGIN_CHECK,
    LOGIN_PATHS,
    OWNED_PREFIX,
    SESSION_COOKIE,
    ExposedRoute,
)
from nebula.spec.config import Node
from nebula.spec.domain import zone_of
from nebula.spec.proxy import Proxy
from nebula.spec.repo import RepoSpec
from nebula.spec.tls import TlsPolicy


def exposed_routes(
    repo: RepoSpec, installations: Iterable[DesiredInstallation]
) -> tuple[ExposedRoute, ...]:
    """Every `expose:` of the repo, checked against its app; `ConfigError` lists every problem.

    A hostname's certificate policy is its zone's `tls:` (domains/*.yaml), else `proxy.tls`.
    """
    policy_of = tls_policies(repo)
    by_name = {d.name: d for d in installations}
    issues: list[ConfigIssue] = []
    routes: list[ExposedRoute] = []
    hosts: dict[str, str] = {}
    for source in repo.installations:
        desired = by_name.get(source.name)
        if not source.spec.expose or desired is None:
            continue
        services = {c.service: c for c in desired.containers}
        for i, expose in enumerate(source.spec.expose):
            where = ("expose", i)
            if expose.host in hosts:
                issues.append(
                    source.doc.issue(
                        (*where, "host"),
                        f"{expose.host} is already exposed by {hosts[expose.host]}",
                    )
                )
                continue
            hosts[expose.host] = f"{source.doc.file} ({source.name})"
            service = expose.service
            if service is None:
                if len(services) != 1:
                    issues.append(
                        source.doc.issue(
                            where,
                            "this app has several services; name one with `service:` "
                            f"({', '.join(sorted(services))})",
                        )
                    )
                    continue
                service = next(iter(services))
            container = services.get(service)
            if container is None:
                issues.append(
                    source.doc.issue(
                        (*where, "service"),
                        f"no service {service!r} in this app (services: "
                        f"{', '.join(sorted(services))})",
                    )
                )
                continue
            port = expose.port
            if port is None:
                ports = sorted({p.container_port for p in container.ports if p.protocol == "tcp"})
                if len(ports) != 1:
                    found = f"it declares {', '.join(map(str, ports))}" if ports else "it has none"
                    issues.append(
                        source.doc.issue(
                            where,
                            f"give `port:` (the container port of {service!r} to expose): {found}",
                        )
                    )
                    continue
                port = ports[0]
            dial = None
            if len(repo.config.nodes) > 1:
                node = repo.config.node(desired.node) or repo.config.nodes[0]
                dial = _node_dial(node, container, port)
                if dial is None:
                    issues.append(
                        source.doc.issue(
                            (*where, "port") if expose.port is not None else where,
                            f"with several nodes, Caddy on the edge node dials the node "
                            f"{node.name!r} at a host port: publish container port {port} of "
                            f"{service!r} with a fixed host port, e.g. ports: "
                            f'["{port}:{port}"]',
                        )
                    )
                    continue
            policy = policy_of(expose.host)
            issuer = policy.issuer_for(expose.host)
            routes.append(
                ExposedRoute(
                    source.name,
                    expose.host,
                    container.name,
                    port,
                    issuer,
                    policy.acme if issuer == "acme" else None,
                    dial,
                    auth=expose.auth == "nebula",
                )
            )
    if issues:
        raise ConfigError(issues)
    return tuple(sorted(routes, key=lambda r: r.id))


def _node_dial(node: Node, container: ContainerSpec, port: int) -> str | None:
    """`<node address>:<host port>` where `node` publishes `port` of `container` (TCP, a fixed
    host port, on every address or on the node's own); None when it does not."""
    address = str(node.address)
    for binding in container.ports:
        if (
            binding.container_port == port
            and binding.protocol == "tcp"
            and binding.host_port is not None
            and binding.host_ip in ("", "0.0.0.0", "::", address)
        ):
            host = f"[{address}]" if ":" in address else address
            return f"{host}:{binding.host_port}"
    return None


def tls_policies(repo: RepoSpec) -> Callable[[str], TlsPolicy]:
    """host → its policy: the `tls:` of the longest zone it is in, else `proxy.tls`."""
    default = (repo.config.proxy or Proxy()).tls
    zones = {d.spec.zone: d.spec.tls for d in repo.domains if d.spec.tls is not None}

    def policy(host: str) -> TlsPolicy:
        zone = zone_of(host, zones)
        return zones[zone] if zone is not None else default

    return policy


def upstreams(routes: Iterable[ExposedRoute], observed: Observed) -> dict[str, str]:
    """Route id → `address:port` to dial, for the routes whose container has an address."""
    addresses = {c.name: c.addresses for c in observed.containers if c.state == "running"}
    dials = {}
    for route in routes:
        if route.dial is not None:  # several nodes: the node's published port
            dials[route.id] = route.dial
            continue
        found = addresses.get(route.container) or ()
        if found:
            address = found[0]
            host = f"[{address}]" if ":" in address else address
            dials[route.id] = f"{host}:{route.port}"
    return dials


# -- Caddy's config -------------------------------------------------------------------------


def desired_config(
    current: Mapping[str, Any],
    routes: Iterable[ExposedRoute],
    dials: Mapping[str, str],
    proxy: Proxy,
    dashboard: str | None = None,
) -> dict[str, Any]:
    """`current` with Nebula's routes and TLS policies replaced by those of `routes`.

    A route whose container has no address now (it failed, or is being replaced) keeps the
    route Caddy has for it, if any: a failed read never unpublishes a hostname. So does a
    route with `auth: nebula` when there is no `dashboard` (nebulad's TCP API serving the
    dashboard, `HOST:PORT` as Caddy dials it) to ask: it is never written without its login.
    """
    config = copy.deepcopy(dict(current))
    http = config.setdefault("apps", {}).setdefault("http", {})
    servers = http.setdefault("servers", {})
    old_routes = {
        r["@id"]: r for server in servers.values() for r in server.get("routes", []) if _owned(r)
    }
    for server in servers.values():
        if "routes" in server:
            server["routes"] = [r for r in server["routes"] if not _owned(r)]
            if not server["routes"]:
                del server["routes"]
    routes = list(routes)
    ours = []
    kept = []
    for route in routes:
        if route.id in dials and (dashboard is not None or not route.auth):
            ours.append(_route(route, dials[route.id], dashboard))
            kept.append(route)
        elif route.id in old_routes:
            ours.append(old_routes[route.id])
            kept.append(route)
    server = servers.get(proxy.server, {})
    foreign = server.get("routes", [])
    if ours or foreign:
        server["listen"] = [_address(proxy)]
        server["routes"] = ours + foreign
        servers[proxy.server] = server
        http["http_port"] = proxy.http_port
        http["https_port"] = proxy.https_port
    else:
        servers.pop(proxy.server, None)
    if not servers:  # no server left: the ports Nebula set mean nothing either
        del http["servers"]
        if http.get("http_port") == proxy.http_port:
            del http["http_port"]
        if http.get("https_port") == proxy.https_port:
            del http["https_port"]
    if not http:
        del config["apps"]["http"]
    _set_policies(config, _policies(kept))
    if not config["apps"]:
        del config["apps"]
    return config


def _owned(item: Any) -> bool:
    return isinstance(item, dict) and str(item.get("@id", "")).startswith(OWNED_PREFIX)


def _address(proxy: Proxy) -> str:
    host = f"[{proxy.listen}]" if isinstance(proxy.listen, IPv6Address) else str(proxy.listen)
    return f"{host}:{proxy.https_port}"


def _route(route: ExposedRoute, dial: str, dashboard: str | None) -> dict[str, Any]:
    proxy = {"handler": "reverse_proxy", "upstreams": [{"dial": dial}]}
    handle = [proxy]
    if route.auth:
        assert dashboard is not None  # desired_config keeps such a route without one
        handle = [_behind_login(proxy, dashboard)]
    return {"@id": route.id, "match": [{"host": [route.host]}], "handle": handle, "terminal": True}


def _behind_login(proxy: dict[str, Any], dashboard: str) -> dict[str, Any]:
    """`proxy` behind nebulad's login, as Caddy's `forward_auth` directive expands (Caddy
    2.6): the login page and its posts go to nebulad on this hostname; every other request is
    first asked of nebulad's check as a GET, without its body, and goes on to `proxy` only on a
    2xx; any other answer (a redirect to the login, a refusal) is the caller's. The check gets
    no websocket upgrade (nebulad answers plain HTTP), and `proxy`'s upstream never sees the
    session cookie (an operator's access token)."""
    nebulad = {"handler": "reverse_proxy", "upstreams": [{"dial": dashboard}]}
    check = {
        "handler": "reverse_proxy",
        "upstreams": [{"dial": dashboard}],
        "rewrite": {"method": "GET", "uri": LOGIN_CHECK},
        "headers": {
            "request": {
                "set": {
                    "X-Forwarded-Method": ["{http.request.method}"],
                    "X-Forwarded-Uri": ["{http.request.uri}"],
                },
                "delete": ["Connection", "Upgrade"],
            }
        },
        "handle_response": [
            {
                "match": {"status_code": [2]},
                "routes": [{"handle": [_WITHOUT_SESSION]}],
            }
        ],
    }
    return {
        "handler": "subroute",
        "routes": [
            {"match": [{"path": list(LOGIN_PATHS)}], "handle": [nebulad], "terminal": True},
            {"handle": [check, proxy]},
        ],
    }


# the session cookie taken out of the Cookie header the protected upstream gets: first, or
# after another (Go's regexp: the leftmost alternative that matches)
_SESSION_PAIR = rf"^{SESSION_COOKIE}=[^;]*(;\s*)?|;\s*{SESSION_COOKIE}=[^;]*"
_WITHOUT_SESSION = {
    "handler": "headers",
    "request": {"replace": {"Cookie": [{"search_regexp": _SESSION_PAIR, "replace": ""}]}},
}


def _policies(routes: Iterable[ExposedRoute]) -> list[dict[str, Any]]:
    """One automation policy per distinct issuer, its subjects sorted: stable across syncs."""
    subjects: dict[str, list[str]] = {}
    issuers: dict[str, dict[str, Any]] = {}
    for route in routes:
        issuer = _issuer(route)
        key = "internal" if route.issuer == "internal" else "acme-" + _digest(issuer)
        issuers[key] = issuer
        subjects.setdefault(key, []).append(route.host)
    return [
        {"@id": f"{OWNED_PREFIX}tls-{key}", "subjects": sorted(subjects[key]), "issuers": [issuer]}
        for key, issuer in sorted(issuers.items())
    ]


def _issuer(route: ExposedRoute) -> dict[str, Any]:
    if route.issuer == "internal" or route.acme is None:
        return {"module": "internal"}
    acme: dict[str, Any] = {"module": "acme", "ca": str(route.acme.directory)}
    if route.acme.email:
        acme["email"] = route.acme.email
    if route.acme.trusted_roots:
        acme["trusted_roots_pem_files"] = list(route.acme.trusted_roots)
    return acme


def _set_policies(config: dict[str, Any], ours: list[dict[str, Any]]) -> None:
    """Nebula's policies first (Caddy uses the first policy whose subjects match a name)."""
    apps = config.setdefault("apps", {})
    automation = apps.get("tls", {}).get("automation", {})
    foreign = [p for p in automation.get("policies", []) if not _owned(p)]
    policies = ours + foreign
    if policies:
        tls = apps.setdefault("tls", {})
        tls.setdefault("automation", {})["policies"] = policies
        return
    if "policies" in automation:
        del automation["policies"]
        if not automation:
            del apps["tls"]["automation"]
        if not apps["tls"]:
            del apps["tls"]


def _digest(data: Mapping[str, Any]) -> str:
    return hashlib.sha256(repr(sorted(data.items())).encode()).hexdigest()[:10]


# -- what changes ---------------------------------------------------------------------------


class RouteAction(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True)
class RouteChange:
    action: RouteAction
    id: str
    reason: str

    @property
    def name(self) -> str:
        return self.id

    def to_dict(self) -> dict[str, str]:
        return {"action": self.action.value, "id": self.id, "reason": self.reason}


def route_changes(current: Mapping[str, Any], desired: Mapping[str, Any]) -> list[RouteChange]:
    """Nebula-owned objects (routes, TLS policies) created, changed or removed, by `@id`."""
    before, after = _owned_objects(current), _owned_objects(desired)
    changes = []
    for key in sorted(before.keys() | after.keys()):
        if key not in before:
            changes.append(RouteChange(RouteAction.CREATE, key, _describe(after[key])))
        elif key not in after:
            changes.append(RouteChange(RouteAction.DELETE, key, "no longer exposed"))
        elif before[key] != after[key]:
            changes.append(RouteChange(RouteAction.UPDATE, key, _describe(after[key])))
    return changes


def owned_ids(config: Mapping[str, Any]) -> set[str]:
    """The `@id`s of the routes and TLS policies Nebula owns in `config`."""
    return set(_owned_objects(config))


def owned_routes(config: Mapping[str, Any]) -> set[str]:
    """The `@id`s of the routes Nebula owns in `config` (not its TLS policies)."""
    return set(_routes(config))


def _routes(config: Mapping[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for server in config.get("apps", {}).get("http", {}).get("servers", {}).values():
        found |= {r["@id"]: r for r in server.get("routes", []) if _owned(r)}
    return found


def _owned_objects(config: Mapping[str, Any]) -> dict[str, Any]:
    policies = config.get("apps", {}).get("tls", {}).get("automation", {}).get("policies", [])
    return _routes(config) | {p["@id"]: p for p in policies if _owned(p)}


def _describe(item: Mapping[str, Any]) -> str:
    if "subjects" in item:
        issuer = item["issuers"][0]
        name = issuer.get("ca", "Caddy's internal CA")
        return f"certificates for {', '.join(item['subjects'])} from {name}"
    host = item["match"][0]["host"][0]
    handler = item["handle"][0]
    if handler["handler"] == "subroute":  # behind the login: the protected proxy comes last
        proxy = handler["routes"][-1]["handle"][-1]
        return f"https://{host} → {proxy['upstreams'][0]['dial']} (behind Nebula's login)"
    return f"https://{host} → {handler['upstreams'][0]['dial']}"
