"""Dynamic shell completion: the names an argument or option takes, read where they live.

Each function is a typer `autocompletion` callback: installations (`packages/*.yaml` of the
config repo), catalog packages (the built-in catalog and the repo's `catalog/`), nodes
(`nebula.yaml`'s `nodes:`) and the vault's secret names (never values). The config repo is the
command's `--repo` when it was typed before the word being completed, else the current folder.

A completion must never print a traceback into the user's prompt: whatever goes wrong (no
repo, a broken file, no database) gives no candidates. Imported by the commands that use it,
so it imports nothing heavy itself.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import typer

from nebula.spec.names import NAME

Completer = Callable[[typer.Context, str], list[str]]

# a top-level `name:` line: only then is a packages/ file parsed for the name it gives
_NAME_LINE = re.compile(r"^name\s*:", re.MULTILINE)


def _quiet(names: Callable[[typer.Context], Iterable[str]]) -> Completer:
    """The candidates among `names` that start with what was typed, sorted; none, silently,
    when reading them fails."""

    def complete(ctx: typer.Context, incomplete: str) -> list[str]:
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                found = set(names(ctx))
        except Exception:  # a completion shows nothing rather than a traceback
            return []
        return sorted(n for n in found if n.startswith(incomplete))

    complete.__doc__ = names.__doc__
    return complete


def _repo(ctx: typer.Context) -> Path:
    repo = ctx.params.get("repo")
    return Path(repo) if repo else Path(".")


def _yaml(path: Path, root: Path) -> object:
    from nebula.paths import read_file
    from nebula.spec.yamlfile import parse_yaml

    return parse_yaml(read_file(path, root).decode("utf-8"), path.name).data


@_quiet
def installations(ctx: typer.Context) -> Iterable[str]:
    """`packages/NAME.yaml`: the file's name, or the `name:` it sets; a file that cannot be
    read is passed over."""
    from nebula.errors import NebulaError

    root = _repo(ctx)
    for path in (root / "packages").glob("*.y*ml"):
        if path.suffix not in (".yaml", ".yml"):
            continue
        try:
            name = _installation_name(path, root)
        except (NebulaError, OSError, ValueError):
            continue
        if NAME.fullmatch(name):
            yield name


def _installation_name(path: Path, root: Path) -> str:
    if not _NAME_LINE.search(path.read_text(encoding="utf-8", errors="replace")):
        return path.stem
    data = _yaml(path, root)
    named = data.get("name") if isinstance(data, dict) else None
    return named if isinstance(named, str) else path.stem


@_quiet
def packages(ctx: typer.Context) -> Iterable[str]:
    """The catalog's package folders: the built-in catalog's and the repo's own `catalog/`."""
    from nebula.paths import builtin_catalog_dir

    for folder in (builtin_catalog_dir(), _repo(ctx) / "catalog"):
        if folder.is_dir():
            yield from (e.name for e in os.scandir(folder) if e.is_dir() and NAME.fullmatch(e.name))


@_quiet
def nodes(ctx: typer.Context) -> Iterable[str]:
    """`nebula.yaml`'s `nodes:`; without any, the one local node."""
    root = _repo(ctx)
    data = _yaml(root / "nebula.yaml", root)
    listed = data.get("nodes") if isinstance(data, dict) else None
    if not isinstance(listed, list):
        yield "local"
        return
    for node in listed:
        if isinstance(node, dict) and isinstance(node.get("name"), str):
            yield node["name"]


@_quiet
def secrets(ctx: typer.Context) -> Iterable[str]:
    """The vault's secret names, from the state database when it exists (none is created)."""
    from nebula.engine.session import open_existing_store
    from nebula.secrets import open_vault

    store = open_existing_store(ctx.params.get("database_url"))
    if store is None:
        return []
    with store:
        return [s.name for s in open_vault(store).secrets()]
