"""The package catalog: the built-in packages plus a config repo's own `catalog/` folder.

A catalog folder holds one directory per package and one file per version:
`<name>/<version>.yaml`, each in the seed's package format with `version:` equal to the file's
stem. Folders later in the list add versions to earlier ones and replace a version they both
have. Packages are read on demand, so planning a homelab reads only the versions it installs.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from nebula.paths import UnsafePathError, builtin_catalog_dir, folder_within
from nebula.spec.names import NAME

if TYPE_CHECKING:  # imported where used: `nebula.catalog.index` must stay import-light
    from packaging.version import Version

    from nebula.spec.package import Package
    from nebula.spec.yamlfile import YamlDocument

_SUFFIXES = (".yaml", ".yml")
_NUMBERS = re.compile(r"(\d+)")


class CatalogEntry(NamedTuple):  # not a dataclass: importing dataclasses slows a search
    package: Package
    doc: YamlDocument


__all__ = ["Catalog", "CatalogEntry", "builtin_catalog_dir", "version_key"]


def version_key(version: str) -> tuple[int, Version | tuple[tuple[int, int | str], ...]]:
    """Sort key for versions: PEP 440 order where a version parses (`16.4`, `v1.2.0`, `2024.9.3`),
    else numbers compared as numbers (`RELEASE.2024-09-13T20-26-02Z`), after all PEP 440 ones."""
    from packaging.version import InvalidVersion, Version

    try:
        return (1, Version(version))
    except InvalidVersion:
        parts = _NUMBERS.split(version)
        return (0, tuple((1, int(p)) if p.isdigit() else (0, p) for p in parts if p))


class Catalog:
    """Packages by name and version."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = [d.resolve() for d in dirs if d.is_dir()]

    def _files(self, name: str) -> dict[str, Path]:
        """Version -> file, later folders winning; none for a name outside the grammar of
        names (`nebula.spec.names`), which is never looked up on disk (`../x` stays out).
        `ConfigError` for a package folder leading out of its catalog (a symlink)."""
        found: dict[str, Path] = {}
        if not NAME.fullmatch(name):
            return found
        for folder in self.dirs:
            try:
                package_dir = folder_within(folder, name)
            except UnsafePathError as exc:
                from nebula.errors import ConfigError, ConfigIssue

                issue = ConfigIssue(f"{folder.name}/{name}", 1, 1, "", exc.reason)
                raise ConfigError([issue]) from None
            if package_dir is not None:
                for path in package_dir.iterdir():
                    if path.suffix in _SUFFIXES and path.is_file():
                        found[path.stem] = path
        return found

    def names(self) -> list[str]:
        return sorted({p.name for d in self.dirs for p in d.iterdir() if p.is_dir()})

    def versions(self, name: str) -> list[str]:
        """The versions of `name`, oldest first (empty if there is no such package)."""
        return sorted(self._files(name), key=version_key)

    def get(self, name: str, version: str | None = None) -> CatalogEntry | None:
        """`name` at `version` (the newest when None), or None; an invalid file raises."""
        files = self._files(name)
        if version is None:
            if not files:
                return None
            version = max(files, key=version_key)
        path = files.get(version)
        return _load(path) if path is not None else None

    def all(self, *, every_version: bool = False) -> list[CatalogEntry]:
        """The newest version of every package (or every version); `ConfigError` lists the
        problems of all invalid files at once."""
        from nebula.errors import ConfigError

        entries, issues = [], []
        for name in self.names():
            try:
                versions = self.versions(name)
            except ConfigError as exc:  # its folder leads out of the catalog
                issues.extend(exc.issues)
                continue
            for version in versions if every_version else versions[-1:]:
                try:
                    entry = self.get(name, version)
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
    from nebula.errors import ConfigError
    from nebula.spec.package import Package
    from nebula.spec.repo import read_document
    from nebula.spec.validate import validate_document

    catalog = path.parent.parent  # the (resolved) catalog folder: the file must stay inside
    doc = read_document(path, catalog, names_from=catalog.parent)
    package = validate_document(doc, Package)
    if package.name != path.parent.name:
        raise ConfigError(
            [doc.issue(("name",), f"package name must match its folder {path.parent.name!r}")]
        )
    if package.version != path.stem:
        raise ConfigError(
            [doc.issue(("version",), f"version must match its file name {path.stem!r}")]
        )
    return CatalogEntry(package, doc)


def _load(path: Path) -> CatalogEntry:
    return _load_cached(path, path.stat().st_mtime_ns)
