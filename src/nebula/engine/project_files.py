"""A project's files in a checked-out work tree: list them, read one, write one.

What the files API (and so a browser) may touch is the project's folder and nothing else, so
every path a caller gives is checked before any file is opened:

- refused as written: empty, a NUL byte, an absolute path, a `..` part, a `.git` part (git's
  own files: a hook written there would run as nebulad), longer than `MAX_PATH` characters;
- refused once resolved: a path whose symlinks lead outside the project (reading) and any
  symlink on the way at all (writing: a write never goes through a link, inside or not);
- refused by size: a file over `MAX_FILE_BYTES` is neither read nor written.

Writes replace the file atomically (a temporary file renamed over it, which replaces a link
rather than following it) and keep an existing file's mode. Committing the write is the
caller's job (`configrepo.commit_paths`, or `GitSource.publish` in nebulad): this module only
touches files.
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from nebula.errors import RequestError
from nebula.paths import UnsafePathError, folder_within, read_file, within

MAX_FILE_BYTES = 512 * 1024  # as JSON (base64 for binary files) it stays under the API's 1 MB
MAX_PATH = 1024
MAX_LISTED = 10_000


class ProjectFileError(RequestError):
    """A path or file the files API refuses; the message names the path and says why."""


@dataclass(frozen=True)
class FileEntry:
    """One file of a project: its path relative to the project's folder."""

    path: str
    size: int
    kind: Literal["file", "symlink"]


@dataclass(frozen=True)
class Listing:
    files: list[FileEntry]
    truncated: bool  # more than MAX_LISTED files: the first ones, in path order


def clean_path(path: str) -> str:
    """`path` as a relative POSIX path inside a project, or `ProjectFileError` (see above)."""
    if not path or not path.strip():
        raise ProjectFileError("invalid", "give the file's path inside the project")
    shown = path if len(path) <= 100 else path[:100] + "..."
    if "\0" in path:
        raise ProjectFileError("invalid", f"{shown!r}: a path cannot hold a NUL byte")
    if len(path) > MAX_PATH:
        raise ProjectFileError("invalid", f"{shown!r}: longer than {MAX_PATH} characters")
    pure = PurePosixPath(path)
    if pure.is_absolute():
        raise ProjectFileError(
            "invalid", f"{shown!r}: an absolute path; give it relative to the project's folder"
        )
    if ".." in pure.parts:
        raise ProjectFileError("invalid", f"{shown!r}: `..` would leave the project; refused")
    if ".git" in pure.parts:
        raise ProjectFileError("invalid", f"{shown!r}: git's own files are not project files")
    if not pure.parts or str(pure) == ".":
        raise ProjectFileError("invalid", f"{shown!r} names the project's folder, not a file")
    return str(pure)


class ProjectFiles:
    """The files of a project: the folder `folder` ("": all of it) of the work tree `tree`."""

    def __init__(self, tree: Path, folder: str = "") -> None:
        self.tree = tree
        self.folder = folder

    def root(self) -> Path:
        """The project's folder, resolved; `ProjectFileError` when it is missing (not_found)
        or leads outside the work tree."""
        if not self.folder:
            return self.tree.resolve()
        try:
            found = folder_within(self.tree, self.folder)
        except UnsafePathError as exc:
            raise ProjectFileError(
                "invalid", f"the project's folder {self.folder}: {_reason(exc)}"
            ) from None
        if found is None:
            raise ProjectFileError(
                "not_found", f"the project's folder {self.folder} is not in its repo"
            )
        return found

    def list(self) -> Listing:
        """Every file and symlink under the folder (git's own files left out), by path."""
        root = self.root()
        found: list[FileEntry] = []
        for top, dirs, files in os.walk(root):  # symlinks to folders are listed, not walked
            dirs[:] = sorted(d for d in dirs if d != ".git")
            here = Path(top)
            links = [d for d in dirs if (here / d).is_symlink()]
            for name in sorted([*files, *links]):
                info = os.lstat(here / name)
                kind: Literal["file", "symlink"] = (
                    "symlink" if stat.S_ISLNK(info.st_mode) else "file"
                )
                rel = (here / name).relative_to(root).as_posix()
                found.append(FileEntry(rel, info.st_size, kind))
                if len(found) > MAX_LISTED:
                    return Listing(sorted(found, key=lambda e: e.path)[:MAX_LISTED], True)
        return Listing(sorted(found, key=lambda e: e.path), False)

    def read(self, path: str) -> bytes:
        """The file's bytes; refused when it resolves outside the project, is no regular file
        or is over `MAX_FILE_BYTES`; not_found when there is no such file."""
        rel = clean_path(path)
        root = self.root()
        try:
            within(root, rel)  # before anything is said of what is outside
            if not os.path.lexists(root / rel):
                raise ProjectFileError("not_found", f"{rel}: no such file in the project")
            if (root / rel).is_file() and (root / rel).stat().st_size > MAX_FILE_BYTES:
                raise _too_big(rel, (root / rel).stat().st_size)
            return read_file(root / rel, root, MAX_FILE_BYTES)
        except UnsafePathError as exc:
            raise ProjectFileError("invalid", f"{rel}: {_reason(exc)}") from None

    def write(self, path: str, content: bytes) -> str:
        """Write the file (its folders made as needed); the path relative to the project.
        Refused when any part of the path is a symlink, or names a folder."""
        rel = clean_path(path)
        if len(content) > MAX_FILE_BYTES:
            raise _too_big(rel, len(content))
        root = self.root()
        parent = root
        parts = PurePosixPath(rel).parts
        for part in parts[:-1]:
            parent = parent / part
            if parent.is_symlink():
                raise _through_link(rel, parent.relative_to(root).as_posix())
            if parent.exists() and not parent.is_dir():
                raise ProjectFileError("conflict", f"{rel}: {parent.name} is a file, not a folder")
            parent.mkdir(exist_ok=True)
        target = parent / parts[-1]
        mode = 0o644
        if os.path.lexists(target):
            info = os.lstat(target)
            if stat.S_ISLNK(info.st_mode):
                raise _through_link(rel, rel)
            if not stat.S_ISREG(info.st_mode):
                raise ProjectFileError("conflict", f"{rel}: not a regular file; refused")
            mode = stat.S_IMODE(info.st_mode)
        fd, temporary = tempfile.mkstemp(dir=parent, prefix=".nebula-write-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
            os.chmod(temporary, mode)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return rel


def _through_link(rel: str, link: str) -> ProjectFileError:
    return ProjectFileError(
        "invalid", f"{rel}: {link} is a symlink; the files API does not write through links"
    )


def _too_big(rel: str, size: int) -> ProjectFileError:
    return ProjectFileError(
        "invalid",
        f"{rel}: {size:,} bytes, over the {MAX_FILE_BYTES:,} the files API reads or writes; "
        "use git or the IDE for it",
    )


def _reason(exc: UnsafePathError) -> str:
    """The refusal without the absolute path of the work tree (the caller knows the project)."""
    if "resolves outside" in exc.reason:
        return "a symlink that leads outside the project; refused"
    return exc.reason
