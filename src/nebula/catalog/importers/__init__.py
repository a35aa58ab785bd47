"""Import app stores (Runtipi, CasaOS, Umbrel) into a Nebula catalog folder.

Every app of the store is converted on its own: one that cannot be converted is reported with
its reason and the others go on. Each package is written as `<into>/<name>/<version>.yaml` and
then loaded back through `Catalog`, Nebula's own loader; a file that does not validate is removed
again and reported, so the folder only ever holds packages that load.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType

import yaml

from nebula.catalog import Catalog
from nebula.catalog.importers import casaos, runtipi, umbrel
from nebula.catalog.importers.common import Options, UnconvertibleError
from nebula.errors import ConfigError, NebulaError

STORES: dict[str, ModuleType] = {"runtipi": runtipi, "casaos": casaos, "umbrel": umbrel}
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class AppStoreError(NebulaError):
    """The folder is not an app store of the format asked for."""


@dataclass
class AppResult:
    """What became of one app of the store: a written `file`, or the `reason` it was not."""

    app: str
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

    @property
    def imported(self) -> list[AppResult]:
        return [a for a in self.apps if a.file is not None]

    @property
    def skipped(self) -> list[AppResult]:
        return [a for a in self.apps if a.file is None]

    def to_dict(self) -> dict[str, object]:
        return {
            "store": self.store,
            "source": self.source,
            "into": self.into,
            "imported": [asdict(a) for a in self.imported],
            "skipped": [{"app": a.app, "reason": a.reason} for a in self.skipped],
        }


def node_arch() -> str:
    """This machine's architecture in the stores' spelling (amd64, arm64)."""
    machine = platform.machine().lower()
    return _ARCH.get(machine, machine)


def import_store(
    store: str, source: Path, into: Path, *, arch: str | None = None, force: bool = False
) -> ImportReport:
    """Convert every app of the `store`-format checkout at `source` into packages in `into`."""
    module = STORES.get(store)
    if module is None:
        raise AppStoreError(f"unknown store format {store!r}; use one of {', '.join(STORES)}")
    if not source.is_dir():
        raise AppStoreError(f"{source} is not a folder")
    app_dirs: list[Path] = module.discover(source)
    if not app_dirs:
        raise AppStoreError(f"{source} holds no {store} apps ({_LAYOUT[store]})")
    options = Options(arch or node_arch(), frozenset(p.name for p in app_dirs))
    report = ImportReport(store, str(source), str(into), [])
    written: set[tuple[str, str]] = set()
    for app_dir in app_dirs:
        result = AppResult(app_dir.name)
        report.apps.append(result)
        try:
            draft = module.convert(app_dir, options)
        except UnconvertibleError as exc:
            result.reason = str(exc)
            continue
        result.name, result.version, result.notes = draft.name, draft.version, draft.notes
        if (draft.name, draft.version) in written:
            result.reason = f"another app of the store is also {draft.name} {draft.version}"
            continue
        target = into / draft.name / f"{draft.version}.yaml"
        if target.exists() and not force:
            result.reason = f"{target} exists already (--force replaces it)"
            continue
        error = _write_and_check(target, draft.document(), store, app_dir.name, into)
        if error is not None:
            result.reason = error
            continue
        written.add((draft.name, draft.version))
        result.file = str(target)
    return report


_LAYOUT = {
    "runtipi": "apps/<id>/config.json",
    "casaos": "Apps/<Name>/docker-compose.yml",
    "umbrel": "<id>/umbrel-app.yml",
}


def _write_and_check(
    target: Path, document: dict[str, object], store: str, app: str, into: Path
) -> str | None:
    """Write the package, load it back through the catalog; the reason it failed, or None."""
    created_dir = not target.parent.exists()
    previous = target.read_bytes() if target.exists() else None  # --force: restored on failure
    target.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Imported from the {store} app {app} by `nebula catalog import`.\n"
    target.write_text(
        header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100),
        encoding="utf-8",
    )
    try:
        entry = Catalog([into]).get(str(document["name"]), str(document["version"]))
    except ConfigError as exc:
        if previous is not None:
            target.write_bytes(previous)
        else:
            target.unlink()
        if created_dir:
            target.parent.rmdir()
        return "does not validate: " + "; ".join(f"{i.field}: {i.message}" for i in exc.issues)
    if entry is None:  # pragma: no cover - the file was just written
        return "written but not found by the catalog"
    return None
