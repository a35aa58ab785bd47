"""A search index of catalog folders, so that searching 2,000 packages parses no YAML.

Two JSON files in the user's cache dir:

- `catalog-index.json`: for the newest version of each package the few fields search needs
  (name, versions, category, description), and the paths it was built from: each catalog
  folder, its package folders and their files, with their sizes and mtimes. A search checks
  it with one `stat` per path (a package added or removed changes its folder's mtime; a
  version added, its package folder's; an edit, the file's size or mtime);
- `catalog-index-files.json`: what each file read last time gave, by path, size and mtime.
  When anything changed, only the files whose size or mtime changed are read again (parsed and
  validated as `Catalog` does); the rest comes from here.

Import-light on purpose: `nebula catalog search` answers before the CLI framework or the spec
models load (no pydantic, no YAML unless a file changed).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from nebula.spec.names import NAME

_FORMAT = 2
_SUFFIXES = (".yaml", ".yml")


class IndexEntry(NamedTuple):
    name: str
    version: str  # the newest
    versions: tuple[str, ...]  # oldest first
    category: str
    description: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "versions": list(self.versions),
            "category": self.category,
            "description": self.description,
        }


class CatalogIndex:
    def __init__(self, rows: list[list[Any]], problems: list[str], rebuilt: int) -> None:
        self._rows = rows  # [name, version, versions, category, description]
        self.problems = tuple(problems)  # invalid newest versions, as `file:line:column: ...`
        self.rebuilt = rebuilt  # files read again to answer (0: the index was current)

    @property
    def entries(self) -> list[IndexEntry]:
        return [_entry(row) for row in self._rows]

    def categories(self) -> list[str]:
        return sorted({row[3] for row in self._rows if row[3]})

    def search(self, term: str, category: str | None = None) -> list[IndexEntry]:
        """Packages matching every word of `term` in their name, category or description,
        best first: exact name, name prefix, name contains the term, every word in the name,
        category equal to the term, then the rest; alphabetical within each rank."""
        words = term.lower().split()
        wanted = term.lower().strip()
        ranked = []
        for row in self._rows:
            if category is not None and row[3] != category:
                continue
            name = row[0].lower()
            text = f"{name} {row[3].lower()} {row[4].lower()}"
            if not all(word in text for word in words):
                continue
            if name == wanted:
                rank = 0
            elif name.startswith(wanted):
                rank = 1
            elif wanted in name:
                rank = 2
            elif all(word in name for word in words):
                rank = 3
            elif row[3].lower() == wanted:
                rank = 4
            else:
                rank = 5
            ranked.append((rank, row[0], row))
        ranked.sort(key=lambda r: (r[0], r[1]))
        return [_entry(row) for _, _, row in ranked]


def _entry(row: list[Any]) -> IndexEntry:
    return IndexEntry(row[0], row[1], tuple(row[2]), row[3], row[4])


def default_index_file() -> Path:
    """`catalog-index.json` in the user's cache dir (platformdirs' choice; on Linux, the
    XDG rule is applied directly: importing platformdirs costs a good part of a search)."""
    if sys.platform.startswith("linux"):
        base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.expanduser("~/.cache")
        return Path(base) / "nebula" / "catalog-index.json"
    import platformdirs

    return Path(platformdirs.user_cache_dir("nebula")) / "catalog-index.json"


def load_index(dirs: Sequence[Path], index_file: Path | None = None) -> CatalogIndex:
    """The index of `dirs` (later folders win, as in `Catalog`), rebuilt where files changed."""
    index_file = index_file or default_index_file()
    folders = [os.path.abspath(d) for d in dirs if os.path.isdir(d)]
    cached = _read(index_file)
    if cached.get("folders") == folders:
        stats = _stats(_full(folders, cached["paths"]))
        if stats is not None and stats == cached.get("stats"):
            return CatalogIndex(cached["rows"], cached["problems"], 0)
    return _rebuild(folders, index_file)


def _full(folders: list[str], paths: list[list[str]]) -> list[str]:
    return [f"{f}/{p}" for f, names in zip(folders, paths, strict=True) for p in names]


def _stats(paths: list[str]) -> str | None:
    """Every path's size and mtime, as text; None when one has gone."""
    parts = []
    stat = os.stat
    try:
        for path in paths:
            result = stat(path)
            parts.append(f"{result.st_size}:{result.st_mtime_ns}")
    except OSError:
        return None
    return " ".join(parts)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    from nebula import __version__

    valid = isinstance(data, dict) and data.get("format") == _FORMAT
    return data if valid and data.get("nebula") == __version__ else {}


def _write(path: Path, data: dict[str, Any]) -> None:
    """Replace a cache file atomically; one that cannot be written is only slower next time."""
    from nebula import __version__

    data = {"format": _FORMAT, "nebula": __version__, **data}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, separators=(",", ":")))
        tmp.replace(path)
    except OSError:
        pass


def _scan(folder: str) -> tuple[list[str], dict[str, str]]:
    """(paths relative to `folder` whose stats key the index: "" for the folder itself, each
    package folder and each version file; version files by absolute path)."""
    paths = [""]
    files: dict[str, str] = {}
    try:
        packages = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return paths, files
    for package in packages:
        if not package.is_dir():
            continue
        paths.append(package.name)
        for file in sorted(os.scandir(package.path), key=lambda e: e.name):
            if file.name.endswith(_SUFFIXES) and file.is_file():
                paths.append(f"{package.name}/{file.name}")
                files[file.path] = package.name
    return paths, files


def _rebuild(folders: list[str], index_file: Path) -> CatalogIndex:
    """Rows for the newest version of every package; files whose stats did not change since
    the last rebuild are not read again."""
    from nebula.catalog import Catalog, version_key
    from nebula.errors import ConfigError

    records_file = index_file.with_name(index_file.stem + "-files.json")
    old_records: dict[str, Any] = _read(records_file).get("files", {})
    scanned = [_scan(folder) for folder in folders]
    paths = [folder_paths for folder_paths, _ in scanned]
    stats = _stats(
        _full(folders, paths)
    )  # before reading: what changes meanwhile is read next time
    versions: dict[str, dict[str, str]] = {}  # name -> version -> path (later folders win)
    for _, files in scanned:
        for path, name in files.items():
            versions.setdefault(name, {})[os.path.splitext(os.path.basename(path))[0]] = path
    catalog = Catalog([Path(f) for f in folders])
    records: dict[str, Any] = {}
    rows, problems, read = [], [], 0
    for name in sorted(versions):
        if not NAME.fullmatch(name):
            continue  # not a package for `Catalog` either; `nebula catalog lint` says so
        ordered = sorted(versions[name], key=version_key)
        path = versions[name][ordered[-1]]
        stat = os.stat(path)
        key = [stat.st_size, stat.st_mtime_ns]
        record = old_records.get(path)
        if record is None or record["stat"] != key:
            read += 1
            try:
                loaded = catalog.get(name, ordered[-1])
            except ConfigError as exc:
                record = {"stat": key, "problems": [str(issue) for issue in exc.issues]}
            else:
                assert loaded is not None  # the file was listed a moment ago
                package = loaded.package
                record = {
                    "stat": key,
                    "category": package.category,
                    "description": package.description,
                }
        records[path] = record
        if "problems" in record:
            problems.extend(record["problems"])
        else:
            rows.append([name, ordered[-1], ordered, record["category"], record["description"]])
    _write(records_file, {"files": records})
    _write(
        index_file,
        {
            "folders": folders,
            "paths": paths,
            "stats": stats,
            "rows": rows,
            "problems": problems,
        },
    )
    return CatalogIndex(rows, problems, read)
