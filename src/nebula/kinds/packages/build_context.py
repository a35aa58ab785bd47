"""The context of a compose `build:`: a folder of the installation's folder, read whole.

Reading it when resolving makes the image's content hash part of the plan, and lets apply send
the engine exactly what was planned. It is read as a bound folder is (`repo_files`): a context
leading out of the installation's folder is refused, and so are symlinks, devices and FIFOs in
it; its files keep their own modes, within larger limits. `.dockerignore` is not read: the
folder holds what the build needs.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from nebula.kinds.packages.repo_files import TreeKind, read_repo_tree
from nebula.kinds.packages.types import TreeEntry
from nebula.spec.names import excerpt

BUILD_CONTEXT = TreeKind(
    "a build context",
    "copy the file in",
    max_entries=10_000,
    max_bytes=64 * 1024 * 1024,
    own_modes=True,
)
_REMOTE = re.compile(r"[a-z][a-z0-9+.-]*://|git@", re.IGNORECASE)


def is_remote(context: str) -> bool:
    """Whether `context` is a URL or git remote rather than a folder."""
    return bool(_REMOTE.match(context))


def read_context(folder: Path, context: str) -> tuple[TreeEntry, ...]:
    """The files and sub-folders of the folder `context` inside the installation's `folder`;
    a ValueError saying why not."""
    if PurePosixPath(context).is_absolute():
        shown = f"{folder.parent.name}/{folder.name}/"
        raise ValueError(f"{excerpt(context)} is absolute: name a folder inside {shown}")
    entries = read_repo_tree(folder, context, BUILD_CONTEXT)
    if entries is None:
        raise ValueError(f"{excerpt(context)} is a file: give the folder holding the Dockerfile")
    return entries
