"""Files an installation takes from the config repo: its folder, and compose's env-file format.

An installation `packages/NAME.yaml` may keep files in the folder `packages/NAME/` beside it;
`env_file:`, `configs:` and relative bind mounts name files inside it. Every file is read
through `nebula.paths.read_file`: a path leaving the folder (`..`, absolute, a symlink leading
out), anything but a regular file, and a file over 1 MiB are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from nebula.paths import UnsafePathError, folder_within, read_file
from nebula.spec.names import excerpt


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
    if PurePosixPath(path).is_absolute():
        raise ValueError(f"{excerpt(path)} is absolute: name a file inside {_shown(folder)}/")
    try:
        inside = folder_within(folder.parent, folder.name)
        if inside is None:
            raise MissingFileError(f"{excerpt(path)}: there is no folder {_shown(folder)}/")
        return read_file(inside / path, inside)
    except UnsafePathError as exc:
        raise ValueError(f"{excerpt(path)}: {exc.reason}") from None
    except FileNotFoundError:
        raise MissingFileError(f"{excerpt(path)}: no such file in {_shown(folder)}/") from None
    except OSError as exc:
        raise ValueError(f"{excerpt(path)}: cannot read it: {exc.strerror or exc}") from None


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
