"""A restic repository, through the `restic` binary (the Debian package `restic`).

The repository and its password go to restic in its environment (`RESTIC_REPOSITORY`,
`RESTIC_PASSWORD`), never on its command line, so no process listing or log shows them; the
`RESTIC_*` variables of Nebula's own environment are left out, so none of them overrides these.
A backend's own credentials (`AWS_ACCESS_KEY_ID`, `B2_ACCOUNT_ID`, ...) come from Nebula's
environment. Output is restic's `--json`; its failures become `ProviderError`s that say what to
do: `WrongPasswordError`, `NoRepositoryError` (nothing there yet, or it cannot be reached), a lock.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nebula.errors import ProviderError

_USERINFO = re.compile(r"(?<=://)[^/@]*@")  # rest:https://user:pass@host/ -> without user:pass


class WrongPasswordError(ProviderError):
    """The password opens no key of the repository."""


class NoRepositoryError(ProviderError):
    """No repository at that location, or the location cannot be reached."""


@dataclass(frozen=True)
class Snapshot:
    id: str
    time: str  # RFC 3339, as restic writes it
    paths: tuple[str, ...]
    tags: tuple[str, ...]

    @property
    def short_id(self) -> str:
        return self.id[:8]

    def tag(self, key: str) -> str:
        """The value of the `key=value` tag, or ''."""
        return next((t.split("=", 1)[1] for t in self.tags if t.startswith(f"{key}=")), "")


@dataclass(frozen=True)
class Retention:
    """`restic forget --keep-*`: how many of the newest snapshots of each period stay."""

    last: int | None = None
    daily: int | None = None
    weekly: int | None = None
    monthly: int | None = None

    def flags(self) -> list[str]:
        kept = {"last": self.last, "daily": self.daily, "weekly": self.weekly}
        kept["monthly"] = self.monthly
        return [f for name, n in kept.items() if n is not None for f in (f"--keep-{name}", str(n))]


class Restic:
    def __init__(self, repository: str, password: str, binary: str = "restic") -> None:
        self.repository = repository
        self.where = f"restic repository {_USERINFO.sub('', repository)}"
        self._password = password
        self._binary = binary

    def open(self, *, create: bool = False, timeout: float | None = None) -> bool:
        """Check the repository opens with the password; with `create`, a repository that is
        not there yet is initialised. Whether it was created."""
        try:
            self._run(["cat", "config", "--no-lock"], timeout)  # a check: no lock needed
            return False
        except NoRepositoryError as missing:
            if not create:
                raise
            try:
                self._run(["init"], timeout)
            except ProviderError as exc:
                raise NoRepositoryError(
                    self.where, f"{missing.cause}; creating it failed too: {exc.cause}"
                ) from None
            return True

    def backup(
        self, path: Path, host: str, tags: Sequence[str], timeout: float | None = None
    ) -> tuple[str, dict[str, Any]]:
        """A snapshot of the folder `path`: its id and restic's summary (files, bytes)."""
        flags = [f for tag in tags for f in ("--tag", tag)]
        out = self._run(["backup", "--host", host, *flags, str(path)], timeout)
        summary = next((m for m in _messages(out) if m.get("message_type") == "summary"), None)
        if summary is None or not summary.get("snapshot_id"):
            raise ProviderError(self.where, f"restic backup of {path} reported no snapshot")
        return str(summary["snapshot_id"]), summary

    def snapshots(
        self, host: str, tags: Sequence[str] = (), timeout: float | None = None
    ) -> list[Snapshot]:
        """The snapshots of `host` having every one of `tags`, oldest first."""
        flags = ["--tag", ",".join(tags)] if tags else []
        found = json.loads(self._run(["snapshots", "--host", host, *flags], timeout) or "[]")
        return [
            Snapshot(s["id"], s["time"], tuple(s.get("paths") or ()), tuple(s.get("tags") or ()))
            for s in found or []
        ]

    def restore(self, snapshot_id: str, target: Path, timeout: float | None = None) -> None:
        """The snapshot's files under `target`, each at its full original path."""
        self._run(["restore", snapshot_id, "--target", str(target)], timeout)

    def forget(
        self, host: str, tags: Sequence[str], keep: Retention, timeout: float | None = None
    ) -> list[str]:
        """Forget the snapshots of `host` and `tags` that `keep` does not keep, and prune the
        data only they used; the ids forgotten."""
        flags = ["--host", host, "--tag", ",".join(tags), *keep.flags(), "--prune"]
        out = self._run(["forget", *flags], timeout)
        groups: list[dict[str, Any]] = next(
            (json.loads(line) for line in out.splitlines() if line[:1] == "["), []
        )
        return [s["id"] for group in groups for s in group.get("remove") or []]

    def _run(self, args: list[str], timeout: float | None) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
        env |= {"RESTIC_REPOSITORY": self.repository, "RESTIC_PASSWORD": self._password}
        try:
            done = subprocess.run(
                [self._binary, "--json", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError:
            raise ProviderError(
                self.where,
                f"{self._binary} is not installed: install the package restic",
                temporary=False,
            ) from None
        except subprocess.TimeoutExpired:
            raise ProviderError(
                self.where, f"restic {args[0]} timed out after {timeout:g}s"
            ) from None
        if done.returncode != 0:
            raise self._error(args[0], done.stderr)
        return done.stdout

    def _error(self, command: str, stderr: str) -> ProviderError:
        text = stderr.replace(self._password, "••••") if self._password else stderr
        fatal = [line[len("Fatal: ") :] for line in text.splitlines() if line.startswith("Fatal:")]
        cause = (
            fatal[-1] if fatal else (text.strip().splitlines() or [f"restic {command} failed"])[-1]
        )
        if "wrong password or no key found" in text:
            return WrongPasswordError(
                self.where,
                "wrong password: it opens no key of this repository; check the secret that holds "
                "it (nebula secrets set NAME)",
                temporary=False,
            )
        if "unable to open config file" in text:
            return NoRepositoryError(
                self.where,
                f"no repository there, or it cannot be reached ({cause}); check the location "
                "and the backend's credentials (a backup creates the repository when there is none)",
            )
        if "repository is already locked" in text:
            return ProviderError(
                self.where,
                "locked by another restic process; try again when it is done (if none runs, "
                "remove the stale lock with `restic unlock`)",
            )
        return ProviderError(self.where, f"restic {command}: {cause}")


def _messages(out: str) -> list[dict[str, Any]]:
    """restic's `--json` lines that are JSON objects (progress, summary)."""
    found = []
    for line in out.splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found
