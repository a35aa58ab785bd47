"""Import app stores (Runtipi, CasaOS, Umbrel) into a Nebula catalog folder.

Every app of the store is converted on its own: one that cannot be converted is reported with
its reason and the others go on. Each package is written as `<into>/<name>/<version>.yaml`; once
all are written, each is loaded back through `Catalog` and given the checks `nebula catalog
validate` makes (`check`); one that fails is removed again (or its previous file restored) and
reported, so the folder only ever holds packages that validate.

Re-importing is safe: a package file whose content would not change is reported `unchanged`; one
that differs (edited by hand, or the store changed) is `kept` as it is unless `force`. An app
named like a built-in package is refused, since its package would replace the built-in one for
every installation that does not pin a version: `prefix` imports every app under another name.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Literal

from nebula.catalog import Catalog, CatalogEntry, builtin_catalog_dir
from nebula.catalog.importers import casaos, runtipi, umbrel
from nebula.catalog.importers.common import Draft, Options, UnconvertibleError
from nebula.errors import ConfigError, NebulaError
from nebula.spec.names import NAME, NAME_RULE
from nebula.spec.yaml_dump import dump_yaml

STORES: dict[str, ModuleType] = {"runtipi": runtipi, "casaos": casaos, "umbrel": umbrel}
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}

# The errors a loaded package has beyond its schema, as `field: message` (the catalog linter's).
Check = Callable[[CatalogEntry, Catalog], list[str]]
Status = Literal["imported", "unchanged", "kept", "skipped"]


class AppStoreError(NebulaError):
    """The folder is not an app store of the format asked for, or --prefix cannot start a name."""


@dataclass
class AppResult:
    """What became of one app of the store: its package `file` (written, unchanged or kept),
    or the `reason` it was not converted."""

    app: str
    status: Status = "skipped"
    name: str | None = None
    version: str | None = None
    file: str | None = None
    notes: list[str] = field(default_factory=list)
    reason: str | None = None


@dataclass
class ImportReport:
    store: str
    source: str
    into: str
    apps: list[AppResult]

    def having(self, status: Status) -> list[AppResult]:
        return [a for a in self.apps if a.status == status]

    @property
    def imported(self) -> list[AppResult]:
        return self.having("imported")

    @property
    def skipped(self) -> list[AppResult]:
        return self.having("skipped")

    def to_dict(self) -> dict[str, object]:
        def brief(app: AppResult) -> dict[str, object]:
            return {"app": app.app, "name": app.name, "version": app.version, "file": app.file}

        return {
            "store": self.store,
            "source": self.source,
            "into": self.into,
            "imported": [{**brief(a), "notes": a.notes} for a in self.imported],
            "unchanged": [brief(a) for a in self.having("unchanged")],
            "kept": [{**brief(a), "reason": a.reason} for a in self.having("kept")],
            "skipped": [{"app": a.app, "reason": a.reason} for a in self.skipped],
        }


def node_arch() -> str:
    """This machine's architecture in the stores' spelling (amd64, arm64)."""
    machine = platform.machine().lower()
    return _ARCH.get(machine, machine)


def import_store(
    store: str,
    source: Path,
    into: Path,
    *,
    check: Check,
    arch: str | None = None,
    force: bool = False,
    prefix: str = "",
) -> ImportReport:
    """Convert every app of the `store`-format checkout at `source` into packages in `into`."""
    module = STORES.get(store)
    if module is None:
        raise AppStoreError(f"unknown store format {store!r}; use one of {', '.join(STORES)}")
    if not source.is_dir():
        raise AppStoreError(f"{source} is not a folder")
    if prefix and not NAME.fullmatch(prefix + "a"):
        raise AppStoreError(f"prefix {prefix!r} does not start a package name: {NAME_RULE}")
    app_dirs: list[Path] = module.discover(source)
    if not app_dirs:
        raise AppStoreError(f"{source} holds no {store} apps ({_LAYOUT[store]})")
    options = Options(arch or node_arch(), frozenset(p.name for p in app_dirs))
    builtins = set(Catalog([builtin_catalog_dir()]).names())
    report = ImportReport(store, str(source), str(into), [])
    written: dict[Path, tuple[AppResult, bytes | None]] = {}  # target -> its previous content
    for app_dir in app_dirs:
        result = AppResult(app_dir.name)
        report.apps.append(result)
        try:
            draft = module.convert(app_dir, options)
        except UnconvertibleError as exc:
            result.reason = str(exc)
            continue
        draft.add_prefix(prefix)
        result.name, result.version, result.notes = draft.name, draft.version, draft.notes
        target = into / draft.name / f"{draft.version}.yaml"
        if draft.name in builtins:
            result.reason = (
                f"{draft.name} is the name of a built-in package, which this one would replace "
                "for every installation that does not pin a version; import under another "
                f"name with --prefix (e.g. --prefix {store}-)"
            )
        elif any(a.file == str(target) for a in report.apps):
            result.reason = f"another app of the store is also {draft.name} {draft.version}"
        else:
            _write(target, _text(draft, store, app_dir.name), result, written, force)
    _check(written, into, check)
    return report


_LAYOUT = {
    "runtipi": "apps/<id>/config.json",
    "casaos": "Apps/<Name>/docker-compose.yml",
    "umbrel": "<id>/umbrel-app.yml",
}


def _text(draft: Draft, store: str, app: str) -> bytes:
    header = f"# Imported from the {store} app {app} by `nebula catalog import`.\n"
    body = dump_yaml(draft.document(), width=100)  # text that reads as a number stays quoted
    return (header + body).encode("utf-8")


def _write(
    target: Path,
    text: bytes,
    result: AppResult,
    written: dict[Path, tuple[AppResult, bytes | None]],
    force: bool,
) -> None:
    """Write the package unless its file holds it already, or holds something else (kept
    unless `force`); `written` remembers what the file held, to restore it on failure."""
    result.file = str(target)
    previous = target.read_bytes() if target.is_file() else None
    if previous == text:
        result.status = "unchanged"
        return
    if previous is not None and not force:
        result.status = "kept"
        result.reason = (
            f"{target} differs from what the store gives now (edited by hand, or the store "
            "changed): kept; --force replaces it"
        )
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(text)
    result.status = "imported"
    written[target] = (result, previous)


def _check(written: dict[Path, tuple[AppResult, bytes | None]], into: Path, check: Check) -> None:
    """Validate every written package as `nebula catalog validate` does, taking back those that
    fail until all pass (a package taken back may fail the ones requiring it)."""
    failed = True
    while failed:
        failed = False
        catalog = Catalog([into])
        for target, (result, previous) in list(written.items()):
            problems = _problems(catalog, target, check)
            if not problems:
                continue
            failed = True
            del written[target]
            if previous is not None:
                target.write_bytes(previous)
            else:
                target.unlink()
                if not any(target.parent.iterdir()):
                    target.parent.rmdir()
            result.status, result.file = "skipped", None
            result.reason = "does not validate: " + "; ".join(problems)


def _problems(catalog: Catalog, target: Path, check: Check) -> list[str]:
    try:
        entry = catalog.get(target.parent.name, target.stem)
    except ConfigError as exc:
        return [f"{i.field}: {i.message}" for i in exc.issues]
    if entry is None:
        return [f"{target.parent.name} is not a package name"]
    return check(entry, catalog)
