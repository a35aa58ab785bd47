"""Which installations of a config repo refer to which secrets (`${secret:NAME}`).

Read from the files' text, so it works on a repo that does not validate (yet) too. Files are
read as every repo file is (`nebula.paths`): a file that is not a regular one inside the repo
(a FIFO, `/dev/zero`, a symlink out of it) is skipped unread; validation reports it.
"""

from __future__ import annotations

from pathlib import Path

from nebula.paths import UnsafePathError, folder_within, read_file
from nebula.spec.interpolate import secret_references
from nebula.spec.repo import PACKAGES_DIR


def referenced_by(root: Path) -> dict[str, list[str]]:
    """Secret name -> the installations (file stems under `packages/`) referring to it."""
    users: dict[str, list[str]] = {}
    try:
        folder = folder_within(root, PACKAGES_DIR)
    except UnsafePathError:
        return users
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]) if folder else []
    for path in files:
        try:
            text = read_file(path, root).decode("utf-8")
        except (UnsafePathError, OSError, UnicodeDecodeError):
            continue
        for name in dict.fromkeys(secret_references(text)):
            users.setdefault(name, []).append(path.stem)
    return users
