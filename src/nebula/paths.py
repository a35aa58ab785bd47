"""Where Nebula's own files are, and the safe way to reach files under a root it was given.

Every path built from user input (an installation's name, a package asked of the catalog, a
file of the config repo) goes through `within`, and every config file is read with
`read_file`: a path that resolves outside its root (`..`, an absolute path, a symlink
leading out) is refused, and so is anything but a regular file of at most `MAX_FILE_BYTES`,
before a byte is read: a FIFO would block forever, `/dev/zero` never ends, and a symlink to
`/etc/shadow` would put its lines into error messages.

Import-light: the fast paths of the CLI use it.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
from pathlib import Path

from nebula.errors import NebulaError

MAX_FILE_BYTES = 1024 * 1024
"""The largest config file Nebula reads (a package file is a few KiB)."""


class UnsafePathError(NebulaError):
    """A path Nebula refuses to touch: outside its root, a loop, or not a regular file."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def builtin_catalog_dir() -> Path:
    """The built-in catalog: shipped inside the wheel, or the source checkout's `catalog/`."""
    here = Path(__file__).resolve().parent
    shipped = here / "builtin_catalog"
    return shipped if shipped.is_dir() else here.parents[1] / "catalog"


def builtin_runbooks_dir() -> Path:
    """The built-in runbooks: shipped inside the wheel, or the source checkout's `runbooks/`."""
    here = Path(__file__).resolve().parent
    shipped = here / "builtin_runbooks"
    return shipped if shipped.is_dir() else here.parents[1] / "runbooks"


def nebulad_unit_file() -> Path:
    """nebulad's systemd unit: shipped inside the wheel, or the source checkout's `nebulad/`."""
    here = Path(__file__).resolve().parent
    shipped = here / "builtin_nebulad"
    return (shipped if shipped.is_dir() else here.parents[1] / "nebulad") / "nebulad.service"


def repo_files_dir() -> Path:
    """Where apply writes the files installations take from the config repo, to bind them."""
    import platformdirs

    return Path(platformdirs.user_data_dir("nebula")) / "files"


def project_sources_dir() -> Path:
    """Where the projects' git remotes are mirrored (bare), fetched again before each build."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("nebula")) / "projects"


def within(root: Path, path: str | Path) -> Path:
    """`root / path` resolved (symlinks followed; it need not exist), or `UnsafePathError`
    when that leaves `root`."""
    base = root.resolve()
    try:
        resolved = (base / path).resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        raise UnsafePathError(_shown(base, path), _unresolvable(exc)) from None
    if not resolved.is_relative_to(base):
        raise UnsafePathError(_shown(base, path), f"resolves outside {base}; refused")
    return resolved


def folder_within(root: Path, path: str | Path) -> Path | None:
    """The folder `root / path` resolved inside `root`, or None when there is none;
    `UnsafePathError` when it leaves `root`, is a symlink loop or is not a folder."""
    name = _shown(root.resolve(), path)
    if not os.path.lexists(root / path):
        return None
    try:
        resolved = (root.resolve() / path).resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise UnsafePathError(name, _unresolvable(exc)) from None
    if not resolved.is_relative_to(root.resolve()):
        raise UnsafePathError(name, f"resolves outside {root.resolve()}; refused")
    if not resolved.is_dir():
        raise UnsafePathError(name, "not a folder")
    return resolved


def read_file(path: Path, root: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of the regular file `path` inside `root`; `UnsafePathError` (naming the file,
    never quoting it) for a path leading outside `root` (refused before a byte is read), or a
    FIFO, device, socket or file over `limit` bytes (refused before it is opened). `OSError`
    passes through.

    Plain strings, not pathlib: the daemon reads every file of the repo on each sync."""
    base = _real(os.fspath(root))
    full = os.path.join(base, path)
    lexical = os.path.normpath(full)
    name = lexical[len(base) :].lstrip("/") if _inside(lexical, base) else str(path)
    if lexical != full or not _inside(full, base):
        full = str(within(Path(base), path))  # resolved here, and checked to stay inside
    info = os.lstat(full)
    if stat.S_ISLNK(info.st_mode):  # followed here, and checked to stay inside
        full = str(within(Path(base), path))
        info = os.lstat(full)
    _check_kind(info, name, limit)
    # O_NOFOLLOW: the file looked at a moment ago must not become a symlink meanwhile;
    # O_NONBLOCK: a FIFO swapped in meanwhile must not block the open.
    fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        # O_NOFOLLOW guards the last part only: a folder above it may be (or have become) a
        # symlink. What was opened is what the kernel says the descriptor points at.
        if not _inside(os.readlink(f"/proc/self/fd/{fd}"), base):
            raise UnsafePathError(name, f"resolves outside {base}; refused")
        opened = os.fstat(fd)
        _check_kind(opened, name, limit)
        # Sized by the file (a read of `limit` bytes allocates them all); one more byte, and
        # a file that grew meanwhile is read on up to the limit.
        data = handle.read(opened.st_size + 1)
        if len(data) > opened.st_size:
            data += handle.read(limit + 1 - len(data))
    if len(data) > limit:
        raise UnsafePathError(name, _too_large(limit))
    return data


@functools.lru_cache(maxsize=64)
def _real(root: str) -> str:
    """`root` resolved, remembered: a repo's root is resolved once, not once per file. Safe
    though the root may change after: the files read are checked against the root as it was
    resolved, so a changed one can only refuse a file, never let one out."""
    return os.path.realpath(root)


def _inside(path: str, base: str) -> bool:
    """Whether the normalised absolute `path` is `base` or under it."""
    return path == base or path.startswith(base.rstrip("/") + "/")


def _check_kind(info: os.stat_result, name: str, limit: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise UnsafePathError(name, f"not a regular file ({_kind(info.st_mode)}); refused")
    if info.st_size > limit:
        raise UnsafePathError(name, _too_large(limit))


def _too_large(limit: int) -> str:
    return f"larger than {limit:,} bytes, the most a config file may be; refused"


def _kind(mode: int) -> str:
    kinds = {
        stat.S_ISDIR: "a folder",
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
    }
    return next((what for test, what in kinds.items() if test(mode)), "not a file")


def _unresolvable(exc: OSError | RuntimeError) -> str:
    if isinstance(exc, RuntimeError) or exc.errno == errno.ELOOP:
        return "a symlink loop"
    return f"cannot resolve it: {exc.strerror or exc}"


def _shown(base: Path, path: str | Path) -> str:
    """`path` as the user knows it: relative to `base` when it is under it."""
    full = base / path
    return full.relative_to(base).as_posix() if full.is_relative_to(base) else str(path)
