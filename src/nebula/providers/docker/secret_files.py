"""Compose secrets as files: written to a folder in memory (tmpfs) and bound into containers.

A secret's plain value must never reach persistent disk, so the folder is checked to be on a
memory file system before anything is written; each container's secrets live in their own
folder, named by the container and its spec hash, and go when the container does. After a
reboot the folder is empty: the container fails to start and the next sync recreates it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from nebula.kinds.packages.types import SecretFile, reveal

MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})


def default_secrets_dir() -> Path:
    """The first memory folder of: `/run/nebula` (root) or `$XDG_RUNTIME_DIR/nebula`, then
    `/dev/shm/nebula-UID`."""
    runtime = "/run" if os.geteuid() == 0 else os.environ.get("XDG_RUNTIME_DIR", "")
    candidates = [Path(runtime) / "nebula"] if runtime else []
    candidates.append(Path("/dev/shm") / f"nebula-{os.geteuid()}")
    for folder in candidates:
        if filesystem_type(folder) in MEMORY_FILESYSTEMS:
            return folder / "secrets"
    return candidates[0] / "secrets"


def filesystem_type(path: Path) -> str:
    """The file system `path` is (or would be) on, from /proc/self/mountinfo; "" if unknown."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    resolved = str(existing.resolve())
    best, kind = "", ""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        fields, _, rest = line.partition(" - ")
        mount_point = fields.split()[4].replace("\\040", " ")
        inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, kind = mount_point, rest.split()[0]
    return kind


class SecretsFolderError(ValueError):
    """The secrets folder is not in memory, or cannot be written."""


def write_secret_files(
    folder: Path, files: Iterable[SecretFile], values: Mapping[str, str]
) -> list[tuple[SecretFile, Path]]:
    """Each file written into `folder` (made afresh) with its value revealed, owner and mode;
    (file, host path) pairs to bind."""
    kind = filesystem_type(folder)
    if kind not in MEMORY_FILESYSTEMS:
        raise SecretsFolderError(
            f"{folder} is on {kind or 'an unknown file system'}, not in memory (tmpfs): "
            "compose secrets are never written to disk; mount a tmpfs there"
        )
    remove_secret_files(folder)
    folder.mkdir(parents=True, mode=0o700)
    written = []
    for index, file in enumerate(files):
        path = folder / str(index)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(reveal(file.value, values))
        os.chown(path, file.uid, file.gid)
        path.chmod(file.mode)
        written.append((file, path))
    folder.chmod(0o711)  # the files are reached by their bind, never listed
    return written


def remove_secret_files(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
