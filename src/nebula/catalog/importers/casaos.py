"""CasaOS app stores: `Apps/<Name>/docker-compose.yml`, compose files with an `x-casaos` extension.

The top-level `x-casaos` holds the store info (`main` service, `architectures`, `port_map`: the
web UI's host port, `index`: its path, `title`/`tagline`/`description` by locale, `category`,
`icon`); each service's `x-casaos` only describes its envs, ports and volumes for the UI. CasaOS
fills in `$AppID` (the app's name), `$PUID`, `$PGID` and `$TZ`, and keeps app data under
`/DATA/AppData/$AppID/`, which becomes named volumes here.
"""

from __future__ import annotations

import re
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
    image_tag,
    localized,
    map_strings,
    on_host_network,
    package_name,
    read_compose,
    rewrite,
    version_name,
    web_health_check,
)

_BUILTINS = {
    "PUID": Builtin("PUID", "1000", "user id the app runs as"),
    "PGID": Builtin("PGID", "1000", "group id the app runs as"),
    "TZ": Builtin("TZ", "Etc/UTC", "time zone"),
}


def discover(root: Path) -> list[Path]:
    apps = root / "Apps" if (root / "Apps").is_dir() else root
    return sorted(p for p in apps.iterdir() if (p / "docker-compose.yml").is_file())


def convert(app_dir: Path, options: Options) -> Draft:
    data = read_compose(app_dir / "docker-compose.yml")
    store = data.get("x-casaos") or {}
    name = package_name(str(data.get("name") or app_dir.name))
    options.check_arch([str(a) for a in store.get("architectures") or []])
    main = str(store.get("main") or next(iter(data["services"])))
    if main not in data["services"]:
        raise UnconvertibleError(f"x-casaos main names {main}, which is not one of its services")
    prefixes = tuple(
        re.compile(rf"/DATA/AppData/(?:\$AppID|\$\{{AppID\}}|{re.escape(raw)})(?=/|$)")
        for raw in dict.fromkeys([name, str(data.get("name") or app_dir.name)])
    )
    ctx = Context(name, app_dir, prefixes)
    compose = convert_compose(data, ctx)
    compose = map_strings(compose, lambda s: rewrite(s, {}, {"AppID": name}))
    web_port = str(store.get("port_map") or "").strip()
    host_network = on_host_network(compose["services"][main])
    published = not host_network and _publish_web_port(compose["services"][main], web_port)
    image = str(data["services"][main].get("image", ""))
    draft = Draft(
        name=name,
        version=version_name(store.get("version") or image_tag(image)),
        description=localized(store.get("tagline")) or localized(store.get("title")),
        category=category(store.get("category"), ctx.notes),
        icon=str(store["icon"]) if store.get("icon") else None,
        compose=compose,
        notes=ctx.notes,
    )
    tip = localized((store.get("tips") or {}).get("before_install"))
    if tip:
        draft.notes.append("store tip: " + " ".join(tip.split())[:300])
    index = str(store.get("index") or "/")
    if published:
        draft.health_checks = [web_health_check(index)]
    elif host_network and web_port:  # the app listens on the node's port_map itself
        draft.health_checks = [web_health_check(index, web_port)]
    elif web_port:
        draft.notes.append(f"web UI port {web_port} is not published by service {main}")
    builtins = {**_BUILTINS}
    if published:
        builtins["PORT"] = Builtin("PORT", web_port, "host port of the web interface")
    declare_variables(draft, [], builtins)
    return draft


def _publish_web_port(service: dict[str, Any], web_port: str) -> bool:
    """Make the published web UI port (`port_map`) the `PORT` variable; False if not found."""
    if not web_port:
        return False
    ports = service.get("ports", [])
    for index, port in enumerate(ports):
        if isinstance(port, str | int):
            parts = str(port).split(":")
            if len(parts) >= 2 and parts[-2] == web_port:
                parts[-2] = f"${{PORT:-{web_port}}}"
                ports[index] = ":".join(parts)
                return True
    return False
