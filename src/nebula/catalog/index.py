"""A search index of catalog folders, so that searching 2,000 packages parses no YAML.

The index is a JSON file in the user's cache dir holding, for the newest version of each
package, the few fields search needs (name, versions, category, description). It is keyed by
every catalog file's path, size and modification time: a warm search only lists the folders and
compares. When anything changed, only the files whose size or time changed are read again
(parsing and validating them as `Catalog` does); the rest comes from the previous index.

Import-light on purpose: `nebula catalog search` answers before the CLI framework or the spec
models load (no pydantic, no YAML unless a file changed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_FORMAT = 1
_SUFFIXES = (".yaml", ".yml")

# path -> [size, mtime_ns]
Stats = dict[str, list[int]]


@dataclass(frozen=True)
class IndexEntry:
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


@dataclass(frozen=True)
class CatalogIndex:
    entries: tuple[IndexEntry, ...]
    problems: tuple[str, ...]  # invalid newest versions, as `file:line:column: message`
    rebuilt: int  # files read again to answer (0: the index was current)

    def categories(self) -> list[str]:
        return sorted({e.category for e in self.entries if e.category})

    def search(self, term: str, category: str | None = None) -> list[IndexEntry]:
        """Packages matching every word of `term` in their name, category or description,
        best first: exact name, name prefix, name contains the term, every word in the name,
        category equal to the term, then the rest; alphabetical within each rank."""
        words = term.lower().split()
        wanted = term.lower().strip()
        ranked = []
        for entry in self.entries:
            if category is not None and entry.category != category:
                continue
            name = entry.name.lower()
            text = f"{name} {entry.category.lower()} {entry.description.lower()}"
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
            elif entry.category.lower() == wanted:
                rank = 4
            else:
                rank = 5
            ranked.append((rank, entry.name, entry))
        ranked.sort(key=lambda r: (r[0], r[1]))
        return [entry for _, _, entry in ranked]


def default_index_file() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("nebula")) / "catalog-index.json"


def load_index(dirs: Sequence[Path], index_file: Path | None = None) -> CatalogIndex:
    """The index of `dirs` (later folders win, as in `Catalog`), rebuilt where files changed."""
    index_file = index_file or default_index_file()
    folders = [str(Path(d).resolve()) for d in dirs]
    stats = _scan(folders)
    cached = _read(index_file)
    if cached.get("folders") == folders and cached.get("stats") == stats:
        return CatalogIndex(
            tuple(IndexEntry(**{**e, "versions": tuple(e["versions"])}) for e in cached["entries"]),
            tuple(cached["problems"]),
            0,
        )
    index, records = _rebuild(folders, stats, cached)
    _write(
        index_file,
        {
            "format": _FORMAT,
            "folders": folders,
            "stats": stats,
            "records": records,
            "entries": [e.to_dict() for e in index.entries],
            "problems": list(index.problems),
        },
    )
    return index


def _scan(folders: list[str]) -> Stats:
    """Every catalog file (`<folder>/<name>/<version>.yaml`) with its size and mtime, folder
    by folder in the given order (later folders win in `_rebuild`)."""
    stats: Stats = {}
    for folder in folders:
        found: Stats = {}
        try:
            packages = os.scandir(folder)
        except OSError:
            continue
        with packages:
            for package in packages:
                if not package.is_dir():
                    continue
                with os.scandir(package.path) as files:
                    for file in files:
                        if file.name.endswith(_SUFFIXES) and file.is_file():
                            stat = file.stat()
                            found[file.path] = [stat.st_size, stat.st_mtime_ns]
        stats.update(sorted(found.items()))
    return stats


def _read(index_file: Path) -> dict[str, Any]:
    try:
        data = json.loads(index_file.read_bytes())
    except (OSError, ValueError):
        return {}
    from nebula import __version__

    ok = isinstance(data, dict) and data.get("format") == _FORMAT
    return data if ok and data.get("nebula", __version__) == __version__ else {}


def _write(index_file: Path, data: dict[str, Any]) -> None:
    """Replace the index atomically; a cache that cannot be written is only slower next time."""
    from nebula import __version__

    data["nebula"] = __version__
    try:
        index_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = index_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, separators=(",", ":")))
        tmp.replace(index_file)
    except OSError:
        pass


def _rebuild(
    folders: list[str], stats: Stats, cached: dict[str, Any]
) -> tuple[CatalogIndex, dict[str, Any]]:
    """Entries for the newest version of every package; `records` (path -> entry or problem)
    are kept for the next rebuild, which reads again only files whose stats changed."""
    from nebula.catalog import Catalog, version_key
    from nebula.errors import ConfigError

    old_stats: Stats = cached.get("stats", {})
    old_records: dict[str, Any] = cached.get("records", {})
    files: dict[str, dict[str, str]] = {}  # name -> version -> path (later folders win)
    for path in stats:
        package_dir, file_name = os.path.split(path)
        version = os.path.splitext(file_name)[0]
        files.setdefault(os.path.basename(package_dir), {})[version] = path
    catalog = Catalog([Path(f) for f in folders])
    records: dict[str, Any] = {}
    entries, problems, read = [], [], 0
    for name in sorted(files):
        versions = sorted(files[name], key=version_key)
        newest = versions[-1]
        path = files[name][newest]
        record = old_records.get(path) if old_stats.get(path) == stats[path] else None
        if record is None:
            read += 1
            try:
                loaded = catalog.get(name, newest)
            except ConfigError as exc:
                record = {"problems": [str(issue) for issue in exc.issues]}
            else:
                assert loaded is not None  # the file was listed a moment ago
                package = loaded.package
                record = {"category": package.category, "description": package.description}
        records[path] = record
        if "problems" in record:
            problems.extend(record["problems"])
            continue
        entries.append(
            IndexEntry(name, newest, tuple(versions), record["category"], record["description"])
        )
    return CatalogIndex(tuple(entries), tuple(problems), read), records
