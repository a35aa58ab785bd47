"""What the store importers share: compose clean-up, variable mapping, writing and checking.

Each store module turns one app of its store into a `Draft` (plain data in the seed's package
format) or raises `UnconvertibleError` with the reason. This module carries the rules every store
follows:

- Compose keys Nebula's subset supports are kept; keys that only tune a container (logging,
  limits, grace periods) are dropped with a note; keys without which the app cannot work as the
  store meant it (`build` without an image, `env_file`, `configs`, ...) make the app
  unconvertible, with the reason.
- Powers over the host (host networking, `privileged`, `cap_add`, `devices`, `sysctls`, `pid` or
  `ipc: host`) are kept: the package declares what it uses, an installation grants it with
  `allow:`, and a note names the grants. A service on the host's network publishes nothing and
  joins no network, so its `ports` and `networks` are dropped with a note.
- The store's app-data folder (`${APP_DATA_DIR}/data/db`, `/DATA/AppData/$AppID/config`) becomes
  a named volume (`db`, `config`): Nebula keeps named volumes across updates and removals.
- The store's built-in variables are renamed to Nebula variables with defaults (`APP_PORT` →
  `PORT`), replaced by constants (`$AppID` → the package name), and every other variable the app
  still refers to is declared, required unless the reference carries its own default.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nebula.catalog.categories import CATEGORIES
from nebula.errors import ConfigError
from nebula.spec.compose import Service
from nebula.spec.host_paths import bind_grant
from nebula.spec.interpolate import InterpolationError, references
from nebula.spec.yamlfile import parse_yaml

# Keys without which the app would not run as its store meant: the app is not converted.
BLOCKING_KEYS = {
    "build": "builds its image from source",
    "env_file": "reads an env_file shipped with the store",
    "configs": "uses compose configs",
    "secrets": "uses compose secrets",
    "extends": "extends another compose file",
    "volumes_from": "mounts another container's volumes (volumes_from)",
}
# Keys Nebula takes only as `host` (with its grant); the app is not converted with another value.
HOST_ONLY_KEYS = ("network_mode", "pid", "ipc")


def on_host_network(service: dict[str, Any]) -> bool:
    return service.get("network_mode") == "host"


def bind_grants(service: dict[str, Any]) -> set[str | None]:
    """The grants the service's binds of host paths need (`spec.host_paths`)."""
    found: set[str | None] = set()
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            source, read_only = str(volume.get("source") or ""), bool(volume.get("read_only"))
        else:
            source, _, rest = str(volume).partition(":")
            read_only = rest.endswith(":ro")
        if source.startswith("/"):
            found.add(bind_grant(source, read_only))
    return found


# A grant (an installation's `allow:`) → whether a converted service uses the power it gives.
GRANTS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "host_network": on_host_network,
    "privileged": lambda service: bool(service.get("privileged")),
    "cap_add": lambda service: bool(service.get("cap_add")),
    "devices": lambda service: bool(service.get("devices")),
    "sysctls": lambda service: bool(service.get("sysctls")),
    "host_pid": lambda service: service.get("pid") == "host",
    "host_ipc": lambda service: service.get("ipc") == "host",
    "docker_socket": lambda service: "docker_socket" in bind_grants(service),
    "host_system": lambda service: "host_system" in bind_grants(service),
}
# Keys Nebula names or manages itself: dropped without a note.
SILENT_KEYS = {"container_name", "hostname", "version", "name"}
_STORE_LABEL = re.compile(r"^(traefik|runtipi|casaos|umbrel)\.")
_FILE_SUFFIXES = {
    ".yml", ".yaml", ".json", ".conf", ".cfg", ".toml", ".ini", ".env", ".sh", ".txt",
    ".xml", ".db", ".sqlite", ".js", ".py", ".php", ".lua", ".pem", ".key", ".crt",
}  # fmt: skip
_REF = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_VOLUME_NAME_BAD = re.compile(r"[^a-z0-9_.-]+")
_PACKAGE_NAME_BAD = re.compile(r"[^a-z0-9_.-]+")
_VERSION_BAD = re.compile(r"[^A-Za-z0-9_.+-]+")


class UnconvertibleError(Exception):
    """This app cannot become a Nebula package; the message says why."""


@dataclass(frozen=True)
class Options:
    """How to import: the node architecture apps must support, and every app id of the store
    (dependencies on apps of the same store become `requires:`)."""

    arch: str
    store_apps: frozenset[str] = frozenset()

    def check_arch(self, archs: list[str]) -> None:
        """Refuse an app whose store lists architectures (none listed: any) without ours."""
        if archs and self.arch not in archs:
            raise UnconvertibleError(f"supports only {', '.join(archs)}, not {self.arch}")


@dataclass(frozen=True)
class Builtin:
    """A store's built-in variable as a Nebula variable (`name`) with a default."""

    name: str
    default: str | None
    description: str
    secret: bool = False


@dataclass
class Draft:
    """One app on its way to a package file (the seed's package format, as plain data)."""

    name: str
    version: str
    description: str = ""
    category: str = ""
    icon: str | None = None
    repository: str | None = None
    compose: dict[str, Any] = field(default_factory=dict)
    variables: list[dict[str, Any]] = field(default_factory=list)
    health_checks: list[dict[str, Any]] = field(default_factory=list)
    requires: list[dict[str, Any]] = field(default_factory=list)
    provides: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def add_prefix(self, prefix: str) -> None:
        """Name the package, and the packages of the same store it requires, `<prefix><name>`."""
        self.name = prefix + self.name
        for requirement in self.requires:
            requirement["package"] = prefix + requirement["package"]

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "version": self.version}
        for key in ("description", "category", "icon", "repository"):
            if getattr(self, key):
                doc[key] = getattr(self, key)
        doc["compose"] = self.compose
        for key in ("variables", "health_checks", "requires", "provides"):
            if getattr(self, key):
                doc[key] = getattr(self, key)
        return doc


@dataclass
class Context:
    """Per-app conversion state: how the store spells its data folder, and what was noted."""

    package: str
    app_dir: Path
    data_prefixes: tuple[re.Pattern[str], ...]
    notes: list[str] = field(default_factory=list)
    volumes: dict[str, None] = field(default_factory=dict)
    networks: set[str] = field(default_factory=set)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def read_mapping(path: Path) -> dict[str, Any]:
    """A store file that holds a mapping: JSON when it ends in `.json`, else YAML."""
    data = _parse(path)
    if not isinstance(data, dict):
        kind = "JSON object" if path.suffix == ".json" else "mapping"
        raise UnconvertibleError(f"{path.name} is not a {kind}")
    return data


def read_compose(path: Path) -> dict[str, Any]:
    """A compose file with at least one service."""
    data = _parse(path)
    if isinstance(data, dict) and isinstance(data.get("services"), dict) and data["services"]:
        return data
    raise UnconvertibleError(f"{path.name} has no services")


def _parse(path: Path) -> Any:
    """JSON, or YAML read as every Nebula file is (YAML 1.2, as compose reads it: `53:53` and
    `yes` stay strings), with the loader's limits, duplicate keys and line numbers."""
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if path.suffix == ".json" else parse_yaml(text, path.name).data
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnconvertibleError(f"{path.name} cannot be read: {exc}") from None
    except ConfigError as exc:
        raise UnconvertibleError(f"cannot be read: {exc.issues[0]}") from None


def package_name(raw: str) -> str:
    """A store id as a Nebula package name (lowercase letters, digits, '.', '_', '-')."""
    name = _PACKAGE_NAME_BAD.sub("-", raw.strip().lower()).strip("-._")[:63]
    if not name:
        raise UnconvertibleError(f"{raw!r} gives no usable package name")
    return name


def version_name(raw: object) -> str:
    """A store version as a catalog version (it names a file, so no '/' or spaces)."""
    text = _VERSION_BAD.sub("-", str(raw).strip()).strip("-.") if raw is not None else ""
    return text or "latest"


# The stores' categories (Runtipi, CasaOS, Umbrel; lowercased) → Nebula's (`CATEGORIES`).
_CATEGORY = {
    "development": "dev", "developer": "dev", "developer-tools": "dev",
    "utilities": "productivity", "featured": "productivity", "finance": "productivity",
    "gaming": "productivity", "games": "productivity", "dashboard": "productivity",
    "notes": "productivity",
    "social": "web", "chat": "web", "blog": "web", "cms": "web",
    "photography": "media", "gallery": "media", "photos": "media", "books": "media",
    "music": "media", "downloader": "media", "downloaders": "media", "streaming": "media",
    "backup": "files", "cloud": "files", "documents": "files", "file sync": "files",
    "networking": "network", "dns": "network", "vpn": "network",
    "home automation": "home", "smart home": "home",
    "analytics": "monitoring", "database": "data",
}  # fmt: skip


def category(raw: object, notes: list[str]) -> str:
    """A store category in Nebula's terms; one with no match is filed under productivity
    (Nebula's "other everyday tools"), with a note naming the store's."""
    text = " ".join(str(raw or "").lower().split())
    if not text:
        return ""
    found = text if text in CATEGORIES else _CATEGORY.get(text)
    if found is None:
        notes.append(f"store category {raw!r} has no Nebula counterpart: filed under productivity")
        return "productivity"
    return found


def image_tag(image: str) -> str | None:
    """`linuxserver/jellyfin:10.10.7@sha256:...` → `10.10.7`; None without a tag."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def localized(value: Any) -> str:
    """A store text that may be a map of locales (`en_us`, `en_US`, ...): the English one."""
    if isinstance(value, dict):
        for key in ("en_us", "en_US", "en_GB", "en"):
            if value.get(key):
                return str(value[key]).strip()
        return next((str(v).strip() for v in value.values() if v), "")
    return str(value).strip() if value else ""


def split_colons(text: str) -> list[str]:
    """Split a short volume/port syntax on ':' outside `${...}` references."""
    parts, depth, current = [], 0, ""
    for index, char in enumerate(text):
        if char == "{" and index and text[index - 1] == "$":
            depth += 1
        elif char == "}" and depth:
            depth -= 1
        elif char == ":" and not depth:
            parts.append(current)
            current = ""
            continue
        current += char
    parts.append(current)
    return parts


def rewrite(
    text: str,
    renames: dict[str, str],
    constants: dict[str, str],
    optional: frozenset[str] = frozenset(),
) -> str:
    """Rename variable references, or replace them by constants, in one string; a bare
    reference to an `optional` name becomes `${NAME:-}` (empty when not given)."""

    def substitute(match: re.Match[str]) -> str:
        if match[1]:
            return "$$"
        name = match[2] or match[4]
        if name in constants:
            return constants[name]
        rest = rewrite(match[3], renames, constants, optional) if match[3] else ""
        if not rest and name in optional:
            rest = ":-"
        return "${" + renames.get(name, name) + rest + "}"

    return _REF.sub(substitute, text) if "$" in text else text


def map_strings(data: Any, change: Callable[[str], str]) -> Any:
    """`data` with `change` applied to every string value (keys stay)."""
    if isinstance(data, str):
        return change(data)
    if isinstance(data, list):
        return [map_strings(item, change) for item in data]
    if isinstance(data, dict):
        return {key: map_strings(value, change) for key, value in data.items()}
    return data


def strings(data: Any) -> Iterator[str]:
    if isinstance(data, str):
        yield data
    elif isinstance(data, list):
        for item in data:
            yield from strings(item)
    elif isinstance(data, dict):
        for value in data.values():
            yield from strings(value)


def convert_compose(raw: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """A store's compose file (services by name) as Nebula's compose subset."""
    services = raw.get("services")
    if not isinstance(services, dict) or not services:
        raise UnconvertibleError("its compose file has no services")
    for name, declaration in (raw.get("networks") or {}).items():
        if isinstance(declaration, dict) and declaration.get("external"):
            continue  # the store's own shared network (tipi_main_network, ...)
        if name != "default":
            ctx.networks.add(name)
    out: dict[str, Any] = {}
    for name, service in services.items():
        out[str(name)] = _service(str(name), service, ctx)
    for name, declaration in (raw.get("volumes") or {}).items():
        if isinstance(declaration, dict) and declaration.get("external"):
            raise UnconvertibleError(f"volume {name} is external (created outside the app)")
        ctx.volumes.setdefault(str(name))
    grants = [g for g, uses in GRANTS.items() if any(uses(s) for s in out.values())]
    if grants:
        ctx.note(
            f"needs the grants {', '.join(grants)}: an installation gives them with "
            f"`allow: [{', '.join(grants)}]`"
        )
    compose: dict[str, Any] = {"services": out}
    if ctx.volumes:
        compose["volumes"] = dict(ctx.volumes)
    if ctx.networks:
        compose["networks"] = dict.fromkeys(sorted(ctx.networks))
    return compose


def _service(name: str, raw: Any, ctx: Context) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise UnconvertibleError(f"service {name} is not a mapping")
    if not raw.get("image"):
        why = "builds its image from source" if "build" in raw else "names no image"
        raise UnconvertibleError(f"service {name} {why}")
    supported = set(Service.model_fields)
    out: dict[str, Any] = {}
    for raw_key, value in raw.items():
        key = str(raw_key)
        if key.startswith("x-") or key in SILENT_KEYS:
            continue
        if key == "network_mode" and str(value) in ("bridge", "default"):
            continue  # what every service gets
        if key in HOST_ONLY_KEYS and value is not None and str(value) != "host":
            raise UnconvertibleError(
                f"service {name} uses {key} {value}; Nebula takes only {key} host"
            )
        if key == "build":
            ctx.note(f"service {name}: dropped build (the image {raw['image']} is used)")
            continue
        if key in BLOCKING_KEYS and value not in (False, None, [], {}):
            raise UnconvertibleError(f"service {name} {BLOCKING_KEYS[key]}")
        if key not in supported:
            ctx.note(f"service {name}: dropped {key} (not in Nebula's compose subset)")
            continue
        converted = _KEY_CONVERTERS.get(key, _keep)(name, value, ctx)
        if converted not in (None, [], {}):
            out[key] = converted
    if on_host_network(out):
        for key in ("ports", "networks"):
            if out.pop(key, None) is not None:
                ctx.note(f"service {name}: on the host's network; dropped its {key}")
    out.setdefault("restart", "unless-stopped")
    return out


def _keep(_service: str, value: Any, _ctx: Context) -> Any:
    return value


def _volumes(service: str, value: Any, ctx: Context) -> list[Any]:
    out: list[Any] = []
    for entry in value or []:
        if isinstance(entry, dict):
            source, target = entry.get("source"), entry.get("target")
            read_only = bool(entry.get("read_only"))
            if entry.get("type") == "tmpfs":
                ctx.note(f"service {service}: dropped tmpfs mount {target}")
                continue
        else:
            parts = split_colons(str(entry))
            if len(parts) == 1:
                source, target, read_only = None, parts[0], False
            else:
                source, target = parts[0], parts[1]
                read_only = len(parts) > 2 and "ro" in parts[2].split(",")
        if not target:
            raise UnconvertibleError(f"service {service}: volume {entry!r} names no target")
        mount = _mount_source(service, str(source) if source else None, str(target), ctx)
        out.append(f"{mount}:{target}" + (":ro" if read_only else ""))
    return out


def _mount_source(service: str, source: str | None, target: str, ctx: Context) -> str:
    if source is None:  # anonymous: its data would be lost on every recreate
        volume = _volume_name(target)
        ctx.note(f"service {service}: anonymous volume {target} became named volume {volume}")
        ctx.volumes.setdefault(volume)
        return volume
    for prefix in ctx.data_prefixes:
        match = prefix.match(source)
        if match is None:
            continue
        sub = source[match.end() :].strip("/")
        shipped = ctx.app_dir / sub if sub else None
        if sub and (Path(sub).suffix.lower() in _FILE_SUFFIXES or (shipped and shipped.is_file())):
            raise UnconvertibleError(
                f"service {service} mounts the file {source}, which the store ships with the "
                "app; a Nebula package carries no files"
            )
        if shipped is not None and shipped.is_dir() and any(shipped.iterdir()):
            ctx.note(f"service {service}: {sub}/ ships files in the store; the volume starts empty")
        parts = [p for p in sub.split("/") if p]
        if len(parts) > 1 and parts[0] == "data":
            parts = parts[1:]
        volume = _volume_name("_".join(parts) or "data")
        ctx.volumes.setdefault(volume)
        return volume
    if source.startswith(("/", "$", "~", ".")):
        if source.startswith((".", "~")):
            raise UnconvertibleError(f"service {service} mounts the relative path {source}")
        ctx.note(f"service {service}: binds host path {source} at {target}")
        return source
    ctx.volumes.setdefault(source)
    return source


def _volume_name(path: str) -> str:
    name = _VOLUME_NAME_BAD.sub("_", path.lower()).strip("_.-")
    return name or "data"


def _labels(_service: str, value: Any, _ctx: Context) -> Any:
    if isinstance(value, dict):
        kept = {str(k): v for k, v in value.items() if not _STORE_LABEL.match(str(k))}
        return {k: v for k, v in kept.items() if v is not None}
    return [label for label in value or [] if not _STORE_LABEL.match(str(label))]


def _networks(service: str, value: Any, ctx: Context) -> Any:
    names = value if isinstance(value, list) else list((value or {}).keys())
    kept: dict[str, Any] = {}
    for net in names:
        settings = value.get(net) if isinstance(value, dict) else None
        if isinstance(settings, dict) and settings.get("ipv4_address"):
            ctx.note(
                f"service {service}: dropped its fixed address {settings['ipv4_address']} "
                "(Nebula services reach each other by service name)"
            )
        if net not in ctx.networks:
            continue
        aliases = settings.get("aliases") if isinstance(settings, dict) else None
        kept[str(net)] = {"aliases": aliases} if aliases else None
    if not kept:
        return None
    return kept if any(v is not None for v in kept.values()) else list(kept)


def _ports(service: str, value: Any, ctx: Context) -> list[Any]:
    """Ports in the short syntax, which Nebula interpolates (`${PORT:-8097}:8096/tcp`)."""
    out: list[Any] = []
    for entry in value or []:
        if not isinstance(entry, dict):
            out.append(entry)
            continue
        if "target" not in entry:
            raise UnconvertibleError(f"service {service}: port {entry!r} has no target")
        text = str(entry["target"])
        if entry.get("published") not in (None, ""):
            text = f"{entry['published']}:{text}"
            host_ip = str(entry.get("host_ip") or "")
            if host_ip:
                text = (f"[{host_ip}]" if ":" in host_ip else host_ip) + ":" + text
        out.append(f"{text}/{entry.get('protocol') or 'tcp'}")
    return out


def _healthcheck(service: str, value: Any, ctx: Context) -> Any:
    if not isinstance(value, dict):
        return value
    allowed = {"test", "interval", "timeout", "retries", "start_period", "disable"}
    for key in set(value) - allowed:
        ctx.note(f"service {service}: dropped healthcheck {key}")
    return {k: v for k, v in value.items() if k in allowed}


def _deploy(service: str, value: Any, ctx: Context) -> Any:
    devices = (((value or {}).get("resources") or {}).get("reservations") or {}).get(
        "devices"
    ) or []
    resources = (value or {}).get("resources") or {}
    if (
        set(value or {}) - {"resources"}
        or set(resources) - {"reservations"}
        or set(resources.get("reservations") or {}) - {"devices"}
    ):
        ctx.note(f"service {service}: dropped deploy settings other than device reservations")
    if not devices:
        return None
    return {"resources": {"reservations": {"devices": devices}}}


_KEY_CONVERTERS: dict[str, Callable[[str, Any, Context], Any]] = {
    "volumes": _volumes,
    "labels": _labels,
    "networks": _networks,
    "ports": _ports,
    "healthcheck": _healthcheck,
    "deploy": _deploy,
}


def drop_dependencies_on(compose: dict[str, Any], removed: set[str]) -> None:
    """Forget `depends_on` entries naming services the import removed (app_proxy, tor)."""
    for service in compose["services"].values():
        deps = service.get("depends_on")
        if isinstance(deps, list):
            service["depends_on"] = [d for d in deps if d not in removed]
        elif isinstance(deps, dict):
            service["depends_on"] = {k: v for k, v in deps.items() if k not in removed}
        if not service.get("depends_on"):
            service.pop("depends_on", None)


def used_variables(draft: Draft) -> dict[str, bool]:
    """The variables the draft refers to, each with whether every reference has a default."""
    used: dict[str, bool] = {}
    for text in strings([draft.compose, draft.health_checks, draft.provides]):
        try:
            found = references(text)
        except InterpolationError as exc:
            raise UnconvertibleError(str(exc)) from None
        for name, has_default in found:
            used[name] = used.get(name, True) and has_default
    return used


def declare_variables(
    draft: Draft,
    own: list[dict[str, Any]],
    builtins: dict[str, Builtin],
    unknown_hint: str = "",
    provided: frozenset[str] = frozenset(),
) -> None:
    """Declare exactly the variables the draft refers to: the app's own (`own`, e.g. form
    fields), then built-ins it uses, then any other name, required unless a reference gives a
    default. Own fields nothing refers to are dropped with a note; `provided` names come from
    `requires:` and are not declared."""
    used = {k: v for k, v in used_variables(draft).items() if k not in provided}
    declared: list[dict[str, Any]] = []
    for variable in own:
        if variable["name"] in used:
            declared.append(variable)
        else:
            draft.notes.append(f"variable {variable['name']} is not used by the app; dropped")
    names = {v["name"] for v in declared}
    for builtin in builtins.values():
        if builtin.name in used and builtin.name not in names:
            entry: dict[str, Any] = {"name": builtin.name, "description": builtin.description}
            if builtin.default is not None:
                entry["default"] = builtin.default
            else:
                entry["required"] = True
            if builtin.secret:
                entry["secret"] = True
            declared.append(entry)
            names.add(builtin.name)
    for name, has_default in used.items():
        if name in names:
            continue
        entry = {"name": name, "description": f"not defined by the store app{unknown_hint}"}
        if not has_default:
            entry["required"] = True
        declared.append(entry)
        names.add(name)
        draft.notes.append(f"variable {name} is not defined by the store app: give it a value")
    draft.variables = declared


def web_health_check(path: str | None, port: str = "${PORT}") -> dict[str, Any]:
    """An HTTP check of the app's web UI on its published `PORT` (or, for a service on the
    host's network, the `port` it listens on)."""
    suffix = "/" + (path or "").strip().lstrip("/")
    return {"name": "web", "url": f"http://127.0.0.1:{port}{suffix}"}
