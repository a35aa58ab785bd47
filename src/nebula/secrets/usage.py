"""Which installations of a config repo refer to which secrets (`${secret:NAME}`).

Read from the files' text, so it works on a repo that does not validate (yet) too.
"""

from __future__ import annotations

from pathlib import Path

from nebula.spec.interpolate import secret_references
from nebula.spec.repo import PACKAGES_DIR


def referenced_by(root: Path) -> dict[str, list[str]]:
    """Secret name -> the installations (file stems under `packages/`) referring to it."""
    users: dict[str, list[str]] = {}
    folder = root / PACKAGES_DIR
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]) if folder.is_dir() else []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for name in dict.fromkeys(secret_references(text)):
            users.setdefault(name, []).append(path.stem)
    return users
