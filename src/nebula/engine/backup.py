"""Backup and restore of an installation's named volumes into a restic repository.

The runbook and workflow actions `backup` and `restore` and the commands `nebula backup` and
`nebula restore` all call these. restic reads and writes each volume's folder on this machine
(its `Mountpoint`), so the Docker Engine must be local. Each volume is its own snapshot, of host
`nebula`, tagged `installation=NAME` and `volume=NAME`. A repository that is not there yet is
created by the first backup; a restore never creates one.

A restore first fetches every snapshot into a folder beside its volume's, while the installation
runs: a wrong password or a missing snapshot changes nothing. Then the installation is stopped,
each volume's contents are replaced by its snapshot's, and it is started again.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from nebula.errors import NebulaError, ProviderError
from nebula.providers.restic import Restic, Retention, Snapshot

if TYPE_CHECKING:
    from nebula.providers.docker import DockerProvider

__all__ = ["Backup", "BackupError", "Hold", "Restored", "Retention", "Snapshot"]
HOST = "nebula"  # the host of every snapshot Nebula takes, whichever machine runs it
Hold = Literal[False, True, "pause"]  # during a backup: run on, stopped, or paused


class BackupError(NebulaError):
    """A backup or restore asked for something that is not there, or cannot be done here."""


@dataclass(frozen=True)
class Backup:
    """What a backup did: one snapshot per volume, and what retention forgot."""

    installation: str
    created: bool  # the repository did not exist and was initialised
    snapshots: dict[str, str]  # volume -> snapshot id
    files: int
    bytes: int
    forgotten: list[str] = field(default_factory=list)

    def summary(self) -> str:
        made = ", ".join(f"{v} ({s[:8]})" for v, s in self.snapshots.items())
        lines = [f"backed up {self.installation}: {made}; {self.files} files, {self.bytes} bytes"]
        if self.created:
            lines.insert(0, "initialised the repository")
        if self.forgotten:
            lines.append(f"forgot {len(self.forgotten)} older snapshot(s) and pruned their data")
        return "\n".join(lines)


@dataclass(frozen=True)
class Restored:
    installation: str
    snapshots: dict[str, str]  # volume -> snapshot id

    def summary(self) -> str:
        done = ", ".join(f"{v} from {s[:8]}" for v, s in self.snapshots.items())
        return f"restored {self.installation}: {done}"


def backup(
    docker: DockerProvider,
    repository: str,
    password: str,
    installation: str,
    *,
    volumes: Sequence[str] = (),
    hold: Hold = False,
    tags: Sequence[str] = (),
    keep: Retention | None = None,
    timeout: float | None = None,
) -> Backup:
    """Snapshots of the installation's `volumes` (default: all its named volumes); with `hold`,
    its running containers are stopped or paused meanwhile and always started again."""
    left = _clock(timeout)
    folders = _volumes(docker, installation, volumes)
    restic = Restic(repository, password)
    created = restic.open(create=True, timeout=left())
    made: dict[str, str] = {}
    files = size = 0
    with _held(docker, installation, hold):
        for volume, folder in folders.items():
            labels = _tags(installation, volume)
            snapshot, summary = restic.backup(folder, HOST, [*labels, *tags], left())
            made[volume] = snapshot
            files += int(summary.get("total_files_processed", 0))
            size += int(summary.get("total_bytes_processed", 0))
    forgotten = []
    if keep is not None:
        for volume in folders:
            forgotten += restic.forget(HOST, _tags(installation, volume), keep, left())
    return Backup(installation, created, made, files, size, forgotten)


def snapshots(
    repository: str, password: str, installation: str, timeout: float | None = None
) -> list[Snapshot]:
    """The installation's snapshots, oldest first."""
    return Restic(repository, password).snapshots(HOST, _tags(installation), timeout)


def restore(
    docker: DockerProvider,
    repository: str,
    password: str,
    installation: str,
    *,
    snapshot: str = "latest",
    volumes: Sequence[str] = (),
    timeout: float | None = None,
) -> Restored:
    """Each volume's contents replaced by its latest snapshot (or by the one `snapshot` names,
    of one volume); the installation is stopped meanwhile and started again."""
    left = _clock(timeout)
    restic = Restic(repository, password)
    known = restic.snapshots(HOST, _tags(installation), left())
    chosen = _chosen(known, installation, snapshot)
    folders = _volumes(docker, installation, volumes or list(chosen))
    if missing := sorted(set(folders) - set(chosen)):
        raise BackupError(f"{installation}: no snapshot of volume {', '.join(missing)} to restore")
    fetched: dict[str, Path] = {}
    try:
        for volume, folder in folders.items():
            scratch = Path(tempfile.mkdtemp(prefix=".nebula-restore-", dir=folder.parent))
            fetched[volume] = scratch
            restic.restore(chosen[volume].id, scratch, left())
        with _held(docker, installation, True):
            for volume, folder in folders.items():
                _replace(folder, fetched[volume] / chosen[volume].paths[0].lstrip("/"))
    finally:
        for scratch in fetched.values():
            shutil.rmtree(scratch, ignore_errors=True)
    return Restored(installation, {v: chosen[v].id for v in folders})


def _tags(installation: str, volume: str | None = None) -> list[str]:
    return [f"installation={installation}"] + ([f"volume={volume}"] if volume else [])


def _clock(timeout: float | None) -> Callable[[], float | None]:
    """What is left of `timeout` (None: no limit) at each call."""
    if timeout is None:
        return lambda: None
    deadline = time.monotonic() + timeout
    return lambda: max(0.1, deadline - time.monotonic())


def _volumes(docker: DockerProvider, installation: str, wanted: Sequence[str]) -> dict[str, Path]:
    """The installation's named volumes (those `wanted`, by Docker's name or the compose one),
    each with its folder on this machine."""
    if not docker.is_local:
        raise BackupError(
            f"backups read and write the volumes' folders, so they need the Docker Engine on "
            f"this machine (unix://...), not {docker.base_url}; run them on the engine's machine"
        )
    owned = sorted(v.name for v in docker.observe().volumes if v.installation == installation)
    if not owned:
        raise BackupError(f"installation {installation!r} has no named volumes on this engine")
    chosen = []
    for name in wanted or owned:
        full = name if name in owned else f"{installation}_{name}"
        if full not in owned:
            raise BackupError(
                f"{installation} has no volume {name!r} (its volumes: {', '.join(owned)})"
            )
        chosen.append(full)
    folders = {name: docker.volume_mountpoint(name) for name in dict.fromkeys(chosen)}
    for name, folder in folders.items():
        if not folder.is_dir():
            raise BackupError(f"volume {name}'s folder {folder} is not readable on this machine")
    return folders


def _chosen(known: list[Snapshot], installation: str, snapshot: str) -> dict[str, Snapshot]:
    """volume -> the snapshot to restore: the latest of each, or the one named."""
    if snapshot == "latest":
        return {s.tag("volume"): s for s in known}  # oldest first: the latest stays
    found = [s for s in known if s.id.startswith(snapshot)]
    if len(found) != 1:
        listing = ", ".join(f"{s.short_id} ({s.tag('volume')})" for s in known[-5:]) or "none"
        what = "no" if not found else "more than one"
        raise BackupError(
            f"{what} snapshot {snapshot!r} of {installation}; the latest: {listing} "
            "(`nebula restore INSTALLATION --list` lists them all)"
        )
    return {found[0].tag("volume"): found[0]}


@contextmanager
def _held(docker: DockerProvider, installation: str, hold: Hold) -> Iterator[None]:
    """The installation's running containers stopped (`True`) or paused while the body runs;
    they run again afterwards, whatever the body did."""
    if hold is False:
        yield
        return
    running = [
        c
        for c in docker.observe().containers
        if c.installation == installation and c.state == "running"
    ]
    pause = hold == "pause"
    held = []
    try:
        for container in running:
            docker.hold_container(container.id, container.name, pause)
            held.append(container)
        yield
    finally:
        failed = []
        for container in reversed(held):
            try:
                docker.release_container(container.id, container.name, pause)
            except ProviderError as exc:
                failed.append(str(exc))
        if failed:
            raise BackupError(f"{installation} did not run again: {'; '.join(failed)}")


def _replace(folder: Path, restored: Path) -> None:
    """`folder`'s contents replaced by `restored`'s (same file system: moves, not copies),
    its own mode and owner too."""
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    for entry in restored.iterdir():
        entry.rename(folder / entry.name)
    stat = restored.stat()
    os.chown(folder, stat.st_uid, stat.st_gid)
    folder.chmod(stat.st_mode & 0o7777)
