"""Umbrel app stores: `<id>/umbrel-app.yml` (the manifest), `docker-compose.yml`, `exports.sh`.

Umbrel puts every app behind its `app_proxy` service, told by `APP_HOST` (a container name such
as `nextcloud_web_1`, or an exported IP) and `APP_PORT` where the web UI is; here that service
publishes `APP_PORT` on the manifest's `port` instead, as the `PORT` variable. Containers reach
each other as `<id>_<service>_1` or at fixed IPs exported by `exports.sh`; Nebula gives each
service its name on the installation's network, so both become the service name. Umbrel fills in
`APP_DATA_DIR` (named volumes here), `APP_PASSWORD` / `APP_SEED` (derived from the device seed;
here secret variables), `APP_DOMAIN`, `DEVICE_HOSTNAME` and friends. `dependencies` on apps of the
same store become `requires:`; the values those apps export become variables to fill in.
"""

from __future__ import annotations

import re
import shlex
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
    package_name,
    read_compose,
    read_mapping,
    rewrite,
    version_name,
    web_health_check,
)

_DATA_DIR = (re.compile(r"\$\{APP_DATA_DIR\}|\$APP_DATA_DIR\b"),)
_EXPORT = re.compile(r"^\s*export\s+([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
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


def convert(app_dir: Path, options: Options) -> Draft:
    manifest = read_mapping(app_dir / "umbrel-app.yml")
    if not (app_dir / "docker-compose.yml").is_file():
        raise UnconvertibleError("has no docker-compose.yml")
    data = read_compose(app_dir / "docker-compose.yml")
    services = data["services"]
    app_id = str(manifest.get("id") or app_dir.name)
    name = package_name(app_id)
    notes: list[str] = []
    exports, derived = _exports(app_dir / "exports.sh", notes)
    proxy = services.pop("app_proxy", None) or {}
    removed = {"app_proxy", *_drop_store_services(services, notes)}
    web = _web_target(proxy.get("environment") or {}, services, exports, app_id)
    ip_names = _service_ips(services, exports)
    ctx = Context(name, app_dir, _DATA_DIR, notes=notes)
    compose = convert_compose(data, ctx)
    drop_dependencies_on(compose, removed)
    port = manifest.get("port")
    if web is not None:
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
    if web is not None and port:
        draft.health_checks = [web_health_check(str(manifest.get("path") or "/"))]
    elif proxy:
        draft.notes.append("app_proxy names no service of the app: its web UI is not published")
    prefixes = _dependencies(draft, manifest, options)
    draft.provides = _provides(app_id, exports, derived, ip_names, web[0] if web else None)
    if manifest.get("defaultUsername") or manifest.get("defaultPassword"):
        user, password = manifest.get("defaultUsername"), manifest.get("defaultPassword")
        draft.notes.append(f"default login: {user or '(none)'} / {password or 'APP_PASSWORD'}")
    if (app_dir / "hooks").is_dir():
        draft.notes.append("Umbrel hooks/ scripts are not converted")
    builtins = _builtins(port if web is not None else None, exports, derived, set(ip_names))
    hint = "; perhaps exported by one of its dependencies" if manifest.get("dependencies") else ""
    declare_variables(draft, [], builtins, hint, prefixes)
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
    derives from the device seed; other computed values are noted."""
    found: dict[str, str] = {}
    secrets: set[str] = set()
    if not path.is_file():
        return found, secrets
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _EXPORT.match(line)
        if match is None:
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
    """The (service, container port) app_proxy forwards to, if any."""
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


def _dependencies(draft: Draft, manifest: dict[str, Any], options: Options) -> tuple[str, ...]:
    """`requires:` for the dependencies in the store, under Umbrel's prefix, so what they
    export (`APP_BITCOIN_RPC_PORT`) reaches this app as the same variable; their prefixes."""
    deps = [str(d) for d in manifest.get("dependencies") or []]
    inside = [d for d in deps if d in options.store_apps]
    outside = [d for d in deps if d not in options.store_apps]
    draft.requires = [{"package": package_name(d), "prefix": _prefix(d)} for d in inside]
    if outside:
        draft.notes.append(f"needs Umbrel apps not in this store: {', '.join(outside)}")
    return tuple(_prefix(d) + "_" for d in inside)


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
