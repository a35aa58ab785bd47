"""Umbrel app stores: `<id>/umbrel-app.yml` (the manifest), `docker-compose.yml`, `exports.sh`.

Umbrel puts every app behind its `app_proxy` service, told by `APP_HOST` (a container name such
as `nextcloud_web_1`, or an exported IP) and `APP_PORT` where the web UI is; here that service
publishes `APP_PORT` on the manifest's `port` instead, as the `PORT` variable (a service on the
host's network listens on `APP_PORT` itself, and is checked there). Containers reach
each other as `<id>_<service>_1` or at fixed IPs exported by `exports.sh`; Nebula gives each
service its name on the installation's network, so both become the service name. Umbrel fills in
`APP_DATA_DIR` (named volumes here), `APP_PASSWORD` / `APP_SEED` (derived from the device seed;
here secret variables), `APP_DOMAIN`, `DEVICE_HOSTNAME` and friends. `dependencies` on apps of the
same store become `requires:` when the app uses a value they export (others are noted); the
values of apps outside the store become variables to fill in. `exports.sh` is read for its literal
`export NAME=value` lines; one inside a conditional (`if`, `case`, a loop) is not taken as a
default, since Umbrel sets it only under that condition: it is noted instead.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nebula.catalog.importers.common import (
    Builtin,
    Context,
    Draft,
    Options,
    UnconvertibleError,
    category,
    convert_compose,
    declare_variables,
    drop_dependencies_on,
    map_strings,
    on_host_network,
    package_name,
    read_compose,
    read_mapping,
    rewrite,
    used_variables,
    version_name,
    web_health_check,
)

_DATA_DIR = (re.compile(r"\$\{APP_DATA_DIR\}|\$APP_DATA_DIR\b"),)
_EXPORT = re.compile(r"^\s*export\s+([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
# Shell words that open and close a block, at the start of a command.
_OPENS = re.compile(r"(?:^|[;&|(]|\bthen|\bdo|\belse)\s*(?:if|case|for|while|until)\b")
_CLOSES = re.compile(r"(?:^|[;&|])\s*(?:fi|esac|done)\b")
_IP = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_REF_NAME = re.compile(r"^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$")
_BUILTINS = {
    "APP_PASSWORD": Builtin(
        "APP_PASSWORD", None, "the app's password (Umbrel derives it from the seed)", True
    ),
    "APP_SEED": Builtin("APP_SEED", None, "a long random secret the app derives keys from", True),
    "APP_DOMAIN": Builtin("DOMAIN", "localhost", "the domain the app is reached at"),
    "DEVICE_DOMAIN_NAME": Builtin("DOMAIN", "localhost", "the domain the app is reached at"),
    "DEVICE_HOSTNAME": Builtin("DEVICE_HOSTNAME", "localhost", "the node's host name"),
    "NETWORK_IP": Builtin(
        "NETWORK_IP", "10.213.0.0", "first address of the Docker networks (trusted proxies)"
    ),
    "TZ": Builtin("TZ", "Etc/UTC", "time zone"),
    "UMBREL_ROOT": Builtin(
        "UMBREL_ROOT", None, "host folder shared by apps (Umbrel's data/storage/ is under it)"
    ),
}
_STORE_SERVICES = ("getumbrel/tor",)


def discover(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if (p / "umbrel-app.yml").is_file())


@dataclass
class _App:
    """What an Umbrel app's files say before its compose is converted."""

    manifest: dict[str, Any]
    compose: dict[str, Any]  # app_proxy and Umbrel's own services removed
    app_id: str
    exports: dict[str, str]
    derived: set[str]
    proxy: dict[str, Any]
    removed: set[str]  # the services removed
    web: tuple[str, str] | None  # (service, container port) of the web UI
    ip_names: dict[str, str]  # exported fixed IP's variable -> its service
    notes: list[str] = field(default_factory=list)

    def provides(self) -> dict[str, Any] | None:
        return _provides(
            self.app_id, self.exports, self.derived, self.ip_names, self.web and self.web[0]
        )


def _read(app_dir: Path) -> _App:
    manifest = read_mapping(app_dir / "umbrel-app.yml")
    if not (app_dir / "docker-compose.yml").is_file():
        raise UnconvertibleError("has no docker-compose.yml")
    data = read_compose(app_dir / "docker-compose.yml")
    services = data["services"]
    app_id = str(manifest.get("id") or app_dir.name)
    notes: list[str] = []
    exports, derived = _exports(app_dir / "exports.sh", notes)
    proxy = services.pop("app_proxy", None) or {}
    removed = {"app_proxy", *_drop_store_services(services, notes)}
    web = _web_target(proxy.get("environment") or {}, services, exports, app_id)
    ip_names = _service_ips(services, exports)
    return _App(manifest, data, app_id, exports, derived, proxy, removed, web, ip_names, notes)


def convert(app_dir: Path, options: Options) -> Draft:
    app = _read(app_dir)
    manifest, app_id, web, ip_names = app.manifest, app.app_id, app.web, app.ip_names
    services = app.compose["services"]
    name = package_name(app_id)
    ctx = Context(name, app_dir, _DATA_DIR, notes=app.notes)
    compose = convert_compose(app.compose, ctx)
    drop_dependencies_on(compose, app.removed)
    port = manifest.get("port")
    on_host = web is not None and on_host_network(compose["services"][web[0]])
    if web is not None and not on_host:
        service, container_port = web
        ports = compose["services"][service].setdefault("ports", [])
        ports.insert(0, f"${{PORT:-{port}}}:{container_port}")
    renames = {store: b.name for store, b in _BUILTINS.items()}
    constants = {**ip_names, "APP_HIDDEN_SERVICE": ""}
    hosts = {f"{sep.join((app_id, s, '1'))}": s for s in services for sep in ("_", "-")}

    def change(text: str) -> str:
        for host, service in hosts.items():
            text = text.replace(host, service)
        return rewrite(text, renames, constants)

    compose = map_strings(compose, change)
    draft = Draft(
        name=name,
        version=version_name(manifest.get("version")),
        description=str(manifest.get("tagline") or "").strip(),
        category=category(manifest.get("category"), ctx.notes),
        icon=f"https://getumbrel.github.io/umbrel-apps-gallery/{app_id}/icon.svg",
        repository=str(manifest["repo"]) if manifest.get("repo") else None,
        compose=compose,
        notes=ctx.notes,
    )
    path = str(manifest.get("path") or "/")
    if web is not None and on_host:  # the app listens on the node's port itself
        draft.health_checks = [web_health_check(path, web[1])]
    elif web is not None and port:
        draft.health_checks = [web_health_check(path)]
    elif app.proxy:
        draft.notes.append("app_proxy names no service of the app: its web UI is not published")
    draft.provides = app.provides()
    provided = _dependencies(draft, app_dir.parent, manifest, options)
    if manifest.get("defaultUsername") or manifest.get("defaultPassword"):
        user, password = manifest.get("defaultUsername"), manifest.get("defaultPassword")
        draft.notes.append(f"default login: {user or '(none)'} / {password or 'APP_PASSWORD'}")
    if (app_dir / "hooks").is_dir():
        draft.notes.append("Umbrel hooks/ scripts are not converted")
    builtins = _builtins(
        port if web is not None and not on_host else None, app.exports, app.derived, set(ip_names)
    )
    hint = "; perhaps exported by one of its dependencies" if manifest.get("dependencies") else ""
    declare_variables(draft, [], builtins, hint, provided)
    return draft


def _builtins(
    port: Any, exports: dict[str, str], derived: set[str], ip_names: set[str]
) -> dict[str, Builtin]:
    """Umbrel's built-ins, `PORT` when the web UI is published, and the app's own exports."""
    builtins = dict(_BUILTINS)
    if port:
        builtins["PORT"] = Builtin("PORT", str(port), "host port of the web interface")
    builtins |= {
        key: Builtin(key, value, "set by the app's exports.sh")
        for key, value in exports.items()
        if key not in ip_names
    }
    builtins |= {
        key: Builtin(key, None, "a secret Umbrel derives from the device seed: choose one", True)
        for key in derived
    }
    return builtins


def _drop_store_services(services: dict[str, Any], notes: list[str]) -> list[str]:
    """Remove the services that are Umbrel's own plumbing (Tor); their names."""
    removed = []
    for service_name, service in list(services.items()):
        image = str((service or {}).get("image", ""))
        if any(image.startswith(prefix) for prefix in _STORE_SERVICES):
            del services[service_name]
            removed.append(service_name)
            image = image.split("@", maxsplit=1)[0]
            notes.append(f"dropped Umbrel's {service_name} service ({image})")
    return removed


def _exports(path: Path, notes: list[str]) -> tuple[dict[str, str], set[str]]:
    """The literal `export NAME=value` lines of exports.sh, and the names of the secrets it
    derives from the device seed; other computed values, and exports made only under a
    condition, are noted."""
    found: dict[str, str] = {}
    secrets: set[str] = set()
    if not path.is_file():
        return found, secrets
    depth = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        code = line.split("#", 1)[0]
        inside = depth > 0
        depth = max(0, depth + len(_OPENS.findall(code)) - len(_CLOSES.findall(code)))
        match = _EXPORT.match(line)
        if match is None:
            continue
        if inside:
            notes.append(f"exports.sh sets {match[1]} only under a condition; not converted")
            continue
        value = match[2].strip()
        try:
            words = shlex.split(value)
        except ValueError:
            words = []
        if len(words) == 1 and "$" not in words[0] and "`" not in value:
            found[match[1]] = words[0]
        elif "derive_entropy" in value:  # a secret Umbrel derives from the device seed
            secrets.add(match[1])
        else:
            notes.append(f"exports.sh computes {match[1]} at runtime; not converted")
    return found, secrets


def _resolve(value: Any, exports: dict[str, str]) -> str:
    text = str(value).strip()
    ref = _REF_NAME.match(text)
    return exports.get(ref[1], text) if ref else text


def _web_target(
    env: Any, services: dict[str, Any], exports: dict[str, str], app_id: str
) -> tuple[str, str] | None:
    """The (service, container port) app_proxy forwards to, if any: the service it names, or
    else the app's one service on the host's network."""
    if isinstance(env, list):
        env = dict(str(e).split("=", 1) for e in env if "=" in str(e))
    host, port = env.get("APP_HOST"), env.get("APP_PORT")
    if not host or not port:
        return None
    host_text, resolved = str(host), _resolve(host, exports)
    for service_name, service in services.items():
        if resolved in (f"{app_id}_{service_name}_1", f"{app_id}-{service_name}-1", service_name):
            return service_name, _resolve(port, exports)
        for address in _addresses(service):
            if address in (host_text, resolved) or _resolve(address, exports) == resolved:
                return service_name, _resolve(port, exports)
    on_host = [name for name, service in services.items() if on_host_network(service or {})]
    if len(on_host) == 1:  # APP_HOST is then the node's own address
        return on_host[0], _resolve(port, exports)
    return None


def _addresses(service: Any) -> list[str]:
    networks = (service or {}).get("networks")
    if not isinstance(networks, dict):
        return []
    return [
        str(n["ipv4_address"])
        for n in networks.values()
        if isinstance(n, dict) and n.get("ipv4_address")
    ]


def _service_ips(services: dict[str, Any], exports: dict[str, str]) -> dict[str, str]:
    """Exported variables holding a service's fixed IP → that service's name."""
    names: dict[str, str] = {}
    for service_name, service in services.items():
        for address in _addresses(service):
            ref = _REF_NAME.match(address)
            if ref:
                names[ref[1]] = service_name
            for key, value in exports.items():
                if _IP.match(value) and value == address:
                    names[key] = service_name
    return names


def _prefix(app_id: str) -> str:
    """Umbrel's prefix of the values an app exports: `APP_BITCOIN` for bitcoin."""
    return "APP_" + re.sub(r"[^A-Za-z0-9]", "_", app_id).upper()


def _dependencies(
    draft: Draft, store: Path, manifest: dict[str, Any], options: Options
) -> frozenset[str]:
    """`requires:` for the dependencies in the store whose exports the app uses, under
    Umbrel's prefix, so what they export (`APP_BITCOIN_RPC_PORT`) reaches this app as the same
    variable; the variables they provide."""
    deps = [str(d) for d in manifest.get("dependencies") or []]
    outside = [d for d in deps if d not in options.store_apps]
    if outside:
        draft.notes.append(f"needs Umbrel apps not in this store: {', '.join(outside)}")
    used = set(used_variables(draft))
    provided: set[str] = set()
    for dep in (d for d in deps if d in options.store_apps):
        offered = _offered(store / dep)
        if used.isdisjoint(offered):
            draft.notes.append(f"needs {dep}, which exports nothing it uses: install it too")
            continue
        draft.requires.append({"package": package_name(dep), "prefix": _prefix(dep)})
        provided |= offered
    return frozenset(provided)


def _offered(app_dir: Path) -> set[str]:
    """The variables an app of the store gives the apps requiring it (none if unreadable)."""
    try:
        app = _read(app_dir)
    except UnconvertibleError:
        return set()
    provides = app.provides()
    if provides is None:
        return set()
    return {f"{_prefix(app.app_id)}_{key}" for key in ["HOST", *provides["values"]]}


def _provides(
    app_id: str,
    exports: dict[str, str],
    derived: set[str],
    ip_names: dict[str, str],
    web_service: str | None,
) -> dict[str, Any] | None:
    """What the app exports to its dependants (exports.sh), as `provides:`: a fixed IP is the
    service's name, every other export the app's own variable of that name."""
    prefix = _prefix(app_id) + "_"
    values: dict[str, str] = {}
    service = None
    for key in [*exports, *sorted(derived)]:
        short = key.removeprefix(prefix)
        if short in (key, "HOST"):
            continue
        if key in ip_names:
            service = service or ip_names[key]
            values[short] = ip_names[key]
        else:
            values[short] = "${" + key + "}"
    service = service or web_service
    if not values or service is None:
        return None
    return {"service": service, "values": values}
