"""The package catalog: the built-in packages plus a config repo's own `catalog/` folder.

A catalog is a folder of `<name>.yaml` files in the seed's package format. Packages are read on
demand, so planning a homelab reads only the packages it installs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from nebula.errors import ConfigError
from nebula.paths import builtin_catalog_dir
from nebula.spec.package import Package
from nebula.spec.repo import read_document
from nebula.spec.validate import validate_document
from nebula.spec.yamlfile import YamlDocument


@dataclass(frozen=True)
class CatalogEntry:
    package: Package
    doc: YamlDocument


__all__ = ["Catalog", "CatalogEntry", "builtin_catalog_dir"]


class Catalog:
    """Packages by name; folders later in `dirs` shadow earlier ones."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = [d for d in dirs if d.is_dir()]

    def _path(self, name: str) -> Path | None:
        for folder in reversed(self.dirs):
            for suffix in (".yaml", ".yml"):
                candidate = folder / f"{name}{suffix}"
                if candidate.is_file():
                    return candidate
        return None

    def names(self) -> list[str]:
        found = {
            p.stem for d in self.dirs for p in d.glob("*.y*ml") if p.suffix in (".yaml", ".yml")
        }
        return sorted(found)

    def get(self, name: str) -> CatalogEntry | None:
        """The package called `name`, or None; a package that does not validate raises."""
        path = self._path(name)
        return _load(path) if path is not None else None

    def all(self) -> list[CatalogEntry]:
        """Every package; `ConfigError` lists the problems of all invalid ones at once."""
        entries, issues = [], []
        for name in self.names():
            try:
                entry = self.get(name)
            except ConfigError as exc:
                issues.extend(exc.issues)
                continue
            if entry is not None:
                entries.append(entry)
        if issues:
            raise ConfigError(issues)
        return entries


@cache
def _load_cached(path: Path, mtime_ns: int) -> CatalogEntry:
    doc = read_document(path, path.parent.parent)
    package = validate_document(doc, Package)
    if package.name != path.stem:
        raise ConfigError(
            [doc.issue(("name",), f"package name must match its file name {path.stem!r}")]
        )
    return CatalogEntry(package, doc)


def _load(path: Path) -> CatalogEntry:
    return _load_cached(path, path.stat().st_mtime_ns)
