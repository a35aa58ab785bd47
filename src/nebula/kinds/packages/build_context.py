"""The context of a compose `build:`: a folder of the installation's folder, read whole.

Reading it when resolving makes the image's content hash part of the plan, and lets apply send
the engine exactly the files planned. Every file is read through `nebula.paths.read_file`: a
context or file leading out of its folder (`..`, absolute, a symlink) is refused, and so are
symlinks to folders (copy the folder instead), anything but regular files and folders, and a
context over `MAX_CONTEXT_BYTES` or `MAX_CONTEXT_FILES`. `.dockerignore` is not read: the
folder holds what the build needs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from nebula.kinds.packages.repo_files import MissingFileError
from nebula.kinds.packages.types import BuildFile
from nebula.paths import UnsafePathError, folder_within, read_file, within
from nebula.spec.names import excerpt

MAX_CONTEXT_BYTES = 64 * 1024 * 1024
MAX_CONTEXT_FILES = 10_000
_SMALLER = "refused: keep only what the build needs in the context folder"
_REMOTE = re.compile(r"[a-z][a-z0-9+.-]*://|git@", re.IGNORECASE)


def is_remote(context: str) -> bool:
    """Whether `context` is a URL or git remote rather than a folder."""
    return bool(_REMOTE.match(context))


def read_context(folder: Path, context: str) -> tuple[BuildFile, ...]:
    """Every file of the folder `context` inside the installation's `folder`, by path; a
    ValueError saying why not (`MissingFileError` when there is no such folder)."""
    if PurePosixPath(context).is_absolute():
        raise ValueError(f"{excerpt(context)} is absolute: name a folder inside {_shown(folder)}/")
    try:
        inside = folder_within(folder.parent, folder.name)
        if inside is None:
            raise MissingFileError(f"{excerpt(context)}: there is no folder {_shown(folder)}/")
        within(inside, context)  # a context leading out is refused, whether it exists or not
        root = folder_within(inside, context)
    except UnsafePathError as exc:
        raise ValueError(
            f"{excerpt(context)}: {exc.reason}: name a folder inside {_shown(folder)}/"
        ) from None
    if root is None:
        raise MissingFileError(f"{excerpt(context)}: no such folder in {_shown(folder)}/")
    try:
        return _files(root)
    except UnsafePathError as exc:
        raise ValueError(f"{excerpt(context)}: {exc}") from None
    except OSError as exc:
        raise ValueError(f"{excerpt(context)}: cannot read it: {exc.strerror or exc}") from None


def _files(root: Path) -> tuple[BuildFile, ...]:
    files: list[BuildFile] = []
    left = MAX_CONTEXT_BYTES
    for directory, folders, names in os.walk(root, onerror=_fail):
        folders.sort()
        here = Path(directory)
        for name in folders:
            if (here / name).is_symlink():
                raise UnsafePathError(
                    (here / name).relative_to(root).as_posix(),
                    "a symlink to a folder; refused: put the folder itself in the context",
                )
        for name in sorted(names):
            path = here / name
            shown = path.relative_to(root).as_posix()
            if len(files) == MAX_CONTEXT_FILES:
                raise UnsafePathError(
                    shown, f"the context holds more than {MAX_CONTEXT_FILES:,} files; {_SMALLER}"
                )
            info = within(root, path).stat()  # refused first when it leads out of the context
            if info.st_size > left:
                raise UnsafePathError(
                    shown,
                    f"the context holds more than {MAX_CONTEXT_BYTES:,} bytes; {_SMALLER}",
                )
            content = read_file(path, root, limit=left)
            left -= len(content)
            files.append(BuildFile(shown, info.st_mode & 0o7777, content))
    return tuple(files)


def _fail(error: OSError) -> None:
    """A folder of the context that cannot be listed fails the read: never a partial context."""
    raise error


def _shown(folder: Path) -> str:
    return f"{folder.parent.name}/{folder.name}"
