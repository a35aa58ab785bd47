"""Remembering plans that changed nothing, so an unchanged homelab is checked in a blink.

A plan is a pure function of the config repo's files and of what Docker reports. When the last
full plan for exactly these inputs (same file contents, same Nebula version) and exactly this
observed state (same containers, hashes, states, networks, volumes) changed nothing, it changes
nothing again: `nebula plan` and `nebula apply` replay it without loading the spec models at all,
which is most of their start-up time. Any difference in any input is a miss, and the full path runs.

The memo holds plan summaries only (names and reasons, never secret values), in the user's
cache dir.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nebula import __version__
from nebula.paths import UnsafePathError, read_file

if TYPE_CHECKING:
    from nebula.kinds.packages.types import Observed

_KEEP = 8  # config repos remembered


def input_key(root: Path, catalog_dirs: list[Path]) -> str:
    """A digest of everything planning reads: the repo's files and the catalogs' files."""
    digest = hashlib.sha256(f"nebula {__version__}\n".encode())
    root = root.resolve()
    digest.update(str(root).encode())
    # nebula.yaml, every kind's folder (packages/, domains/, ...) and the repo's own catalog
    patterns = ("*.y*ml", "*/*.y*ml", "catalog/*/*.y*ml")
    for path in sorted({p for pattern in patterns for p in root.glob(pattern)}):
        if path.is_file() and path.suffix in (".yaml", ".yml"):
            digest.update(f"\n{path}\n".encode())
            try:
                digest.update(read_file(path, root))
            except UnsafePathError as exc:  # refused unread; the full load reports it
                digest.update(str(exc).encode())
    for path in _installation_files(root):  # env files, configs, build contexts: the spec
        digest.update(f"\n{path}\n".encode())
        try:
            # a mode is part of a build's context, and a file of one may be too large to read
            info = os.lstat(path)
            digest.update(f"{info.st_mode:o} {info.st_size} {info.st_mtime_ns}\n".encode())
            digest.update(read_file(path, root))
        except (UnsafePathError, OSError) as exc:
            digest.update(str(exc).encode())
    for folder in catalog_dirs:  # installed with Nebula: names, sizes and times suffice
        for package_dir in _scan(folder):
            for entry in _scan(Path(package_dir.path)) if package_dir.is_dir() else [package_dir]:
                stat = entry.stat()
                digest.update(f"\n{entry.path} {stat.st_size} {stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _installation_files(root: Path) -> list[Path]:
    """Every file in the installations' folders (`packages/NAME/`), symlinks not followed."""
    found = []
    for top in _scan(root / "packages"):
        if top.is_dir(follow_symlinks=False):
            for folder, _, names in os.walk(top.path):
                found += [Path(folder) / name for name in names]
    return sorted(found)


def _scan(folder: Path) -> list[os.DirEntry[str]]:
    return sorted(os.scandir(folder), key=lambda e: e.name) if folder.is_dir() else []


def observed_digest(observed: Observed) -> str:
    data = json.dumps(dataclasses.asdict(observed), sort_keys=True, default=str)
    return hashlib.sha256(data.encode()).hexdigest()


class NoopMemo:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def default(cls) -> NoopMemo:
        import platformdirs

        return cls(Path(platformdirs.user_cache_dir("nebula")) / "noop-plans.json")

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def entry(self, key: str) -> dict[str, Any] | None:
        """What was remembered for these inputs: `docker_host` (as nebula.yaml named it),
        `observed` (the state's digest) and `plan` (as `Plan.to_dict()`)."""
        entry = self._read().get(key)
        return entry if isinstance(entry, dict) and isinstance(entry.get("plan"), dict) else None

    def remember(
        self, key: str, observed: Observed, plan: dict[str, Any], docker_host: str | None
    ) -> None:
        """Keep a plan that changed nothing; failures to write are harmless and ignored."""
        entries = self._read()
        entries.pop(key, None)
        entries[key] = {
            "observed": observed_digest(observed),
            "plan": plan,
            "docker_host": docker_host,
        }
        kept = dict(list(entries.items())[-_KEEP:])
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(kept))
            tmp.replace(self.path)
        except OSError:
            pass
