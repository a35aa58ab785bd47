"""Files an installation takes from the config repo: its folder, and compose's env-file format.

An installation `packages/NAME.yaml` may keep files in the folder `packages/NAME/` beside it;
`env_file:`, `configs:` and relative bind mounts name files inside it (a relative bind mount
may name a folder too). Every file is read through `nebula.paths.read_file`: a path leaving the
folder (`..`, absolute, a symlink leading out), anything but a regular file, and a file over
1 MiB are refused. A bound folder holds only files and folders (no symlink), within limits.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypeVar

from nebula.kinds.packages.types import TreeEntry
from nebula.paths import UnsafePathError, folder_within, read_file, within
from nebula.spec.names import excerpt

MAX_TREE_ENTRIES = 1000
"""The most files and sub-folders a bound folder may hold."""
MAX_TREE_BYTES = 16 * 1024 * 1024
"""The most bytes a bound folder's files may hold together."""


@dataclass(frozen=True)
class TreeKind:
    """What a folder read whole is for: its name in errors, what to do about a symlink in it,
    its limits, and whether its entries keep their own modes (else 0o555 for a folder or an
    executable file and 0o444 for another, as a read-only bind shows them)."""

    name: str
    symlink_hint: str
    max_entries: int
    max_bytes: int
    own_modes: bool = False


BOUND_FOLDER = TreeKind(
    "a bound folder", "copy the file in, or bind it on its own", MAX_TREE_ENTRIES, MAX_TREE_BYTES
)

_Read = TypeVar("_Read")


def installation_folder(root: Path, file: str) -> Path:
    """The folder of the installation declared in `file` (relative to the repo `root`):
    `packages/NAME.yaml` → `root/packages/NAME`."""
    declared = PurePosixPath(file)
    return root / declared.parent / declared.stem


class MissingFileError(ValueError):
    """The installation's folder has no file by that name."""


def read_repo_file(folder: Path, path: str) -> bytes:
    """The bytes of `path` inside the installation's `folder`; ValueError saying why not
    (`MissingFileError` when there is no such file)."""
    return _read(folder, path, lambda inside: read_file(inside / path, inside))


def read_repo_tree(
    folder: Path, path: str, kind: TreeKind = BOUND_FOLDER
) -> tuple[TreeEntry, ...] | None:
    """The files and sub-folders of the folder `path` inside the installation's `folder`, or
    None when `path` is no folder (it is read as a file). ValueError saying why not: a
    symlink, device or FIFO inside it, or more than the `kind`'s limits."""
    return _read(folder, path, lambda inside: _tree(inside, path, kind))


def _read(folder: Path, path: str, read: Callable[[Path], _Read]) -> _Read:
    """`read` of the installation's `folder` resolved, its errors as ValueError saying why."""
    if PurePosixPath(path).is_absolute():
        raise ValueError(f"{excerpt(path)} is absolute: name a file inside {_shown(folder)}/")
    try:
        inside = folder_within(folder.parent, folder.name)
        if inside is None:
            raise MissingFileError(f"{excerpt(path)}: there is no folder {_shown(folder)}/")
        return read(inside)
    except UnsafePathError as exc:
        raise ValueError(f"{excerpt(path)}: {exc.reason}") from None
    except FileNotFoundError:
        raise MissingFileError(f"{excerpt(path)}: no such file in {_shown(folder)}/") from None
    except OSError as exc:
        raise ValueError(f"{excerpt(path)}: cannot read it: {exc.strerror or exc}") from None


def _tree(inside: Path, path: str, kind: TreeKind) -> tuple[TreeEntry, ...] | None:
    top = within(inside, path)
    if not top.exists():
        raise MissingFileError(f"{excerpt(path)}: no such file or folder in {_shown(inside)}/")
    if not top.is_dir():
        return None
    entries: list[TreeEntry] = []
    total = 0
    pending = [top]
    while pending:
        current = pending.pop()
        for item in sorted(os.scandir(current), key=lambda item: item.name):
            inner = Path(item.path).relative_to(top).as_posix()
            named = f"{excerpt(path)}: {inner}"
            if len(entries) == kind.max_entries:
                raise ValueError(
                    f"{excerpt(path)}: holds more than {kind.max_entries:,} files and folders, "
                    f"the most {kind.name} may; refused"
                )
            info = item.stat(follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                entries.append(TreeEntry(inner, _mode(info.st_mode, kind)))
                pending.append(Path(item.path))
                continue
            if stat.S_ISLNK(info.st_mode):
                raise ValueError(
                    f"{named}: a symlink; {kind.name} holds only files and folders: "
                    f"{kind.symlink_hint}; refused"
                )
            total += info.st_size
            if total > kind.max_bytes:
                raise ValueError(
                    f"{excerpt(path)}: its files hold more than {kind.max_bytes:,} bytes, the "
                    f"most {kind.name} may; refused"
                )
            try:  # refuses a FIFO, device or socket by its kind, unread
                content = read_file(Path(item.path), inside, kind.max_bytes)
            except UnsafePathError as exc:
                raise ValueError(f"{named}: {exc.reason}") from None
            entries.append(TreeEntry(inner, _mode(info.st_mode, kind), content))
    return tuple(entries)


def _mode(mode: int, kind: TreeKind) -> int:
    if kind.own_modes:
        return stat.S_IMODE(mode)
    return 0o555 if stat.S_ISDIR(mode) or mode & 0o111 else 0o444


def _shown(folder: Path) -> str:
    return f"{folder.parent.name}/{folder.name}"


# -- compose's env-file format ------------------------------------------------------------


@dataclass(frozen=True)
class EnvEntry:
    """One variable of an env file. `value` None: the name alone (`NAME`), which compose takes
    from its own environment; `literal`: single-quoted, so not interpolated."""

    key: str
    value: str | None
    literal: bool
    line: int


_ASSIGNMENT = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*(?:(=)\s*(.*))?")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "$": "$$"}


def parse_env_file(text: str) -> list[EnvEntry]:
    """Compose's env-file format: `NAME=VALUE` lines (`export ` allowed), blank lines and `#`
    comments; an unquoted value ends at ` #` and is trimmed; a single-quoted value is taken
    as written; a double-quoted one may span lines and takes `\\n`, `\\t`, `\\"`, `\\\\`, `\\$`.
    ValueError names the line of a wrong entry."""
    lines = text.splitlines()
    entries: list[EnvEntry] = []
    index = 0
    while index < len(lines):
        number, line = index + 1, lines[index].strip()
        index += 1
        if not line or line.startswith("#"):
            continue
        match = _ASSIGNMENT.fullmatch(line)
        if match is None:
            raise ValueError(f"line {number}: expected NAME=VALUE")
        key, equals, rest = match[1], match[2], match[3] or ""
        if not equals:
            entries.append(EnvEntry(key, None, False, number))
            continue
        quote = rest[:1]
        if quote not in ("'", '"'):
            value = re.split(r"\s#", rest, maxsplit=1)[0].strip()
            entries.append(EnvEntry(key, value, False, number))
            continue
        body = rest[1:]
        while (end := _closing(body, quote)) < 0:
            if index == len(lines):
                raise ValueError(f"line {number}: the value's {quote} is never closed")
            body += "\n" + lines[index]
            index += 1
        after = body[end + 1 :].strip()
        if after and not after.startswith("#"):
            raise ValueError(f"line {number}: text after the closing {quote}")
        value = body[:end]
        if quote == '"':
            value = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], m[0]), value)
        entries.append(EnvEntry(key, value, quote == "'", number))
    return entries


def _closing(body: str, quote: str) -> int:
    """Where the quote closes in `body`, or -1: a double quote may be escaped."""
    if quote == "'":
        return body.find("'")
    match = re.search(r'(?<!\\)(?:\\\\)*"', body)
    return match.end() - 1 if match else -1
