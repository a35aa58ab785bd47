"""The one error hierarchy of Nebula.

Every failure a user can meet is a `NebulaError`. Errors from outside systems (Docker, the
database, HTTP) are translated at the provider boundary into one of these, so the CLI can print
a clear message and choose an exit code without knowing any vendor exception.

- `ConfigError`: the config repo does not load or validate; carries every `ConfigIssue` found.
- `ProviderError`: an outside system refused or failed a request; names the resource, and
  whether the failure is temporary (unreachable, 5xx, rate limited) or not (refused).
- `InstallationError`: an installation's services did not come up healthy, or a hook failed.
- `StoreError`: the state database cannot be opened or migrated.
- `SyncError`: the config repo cannot be fetched or checked out (git failed; secrets masked).
- `RequestError`: a request refused for a reason its caller can act on (nothing of that name,
  a conflict with the current state, invalid): the API's 404, 409 and 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


class NebulaError(Exception):
    """Base of every error Nebula raises on purpose.

    `temporary`: whether the same request may succeed later by itself (a server unreachable,
    rate limited or failing), so nebulad tries again at its next sync; a permanent error (a
    refused token, an invalid record, an invalid commit) waits until its cause changes.
    """

    temporary = False


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in the config repo, pointing at the file, line and column."""

    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class ConfigError(NebulaError):
    """The config repo is invalid; `issues` lists every problem found, in file order."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = sorted(issues, key=lambda i: (i.file, i.line, i.column))
        super().__init__("\n".join(str(i) for i in self.issues))


class UnknownNodeError(NebulaError):
    """A node was named (`--node`, a daemon's node) that nebula.yaml does not list."""


class ProviderError(NebulaError):
    """An outside system (Docker, DNS, proxy) failed a request about `resource`."""

    def __init__(self, resource: str, cause: str, *, temporary: bool = True) -> None:
        self.resource = resource
        self.cause = cause
        self.temporary = temporary
        super().__init__(f"{resource}: {cause}")


class InstallationError(NebulaError):
    """An installation did not come up: a service unhealthy, exited, or a hook failed."""


class StoreError(NebulaError):
    """The state database cannot be opened, migrated or written."""


class NotFoundError(StoreError):
    """What a request names (an incident, a silence, a runbook execution) is not in the store."""


class StateError(StoreError):
    """A request conflicts with the state of what it names (resolving a resolved incident)."""


class SyncError(NebulaError):
    """Git could not fetch or check out the config repo; the message carries git's own reason."""


class RequestError(NebulaError):
    """A request refused for a reason its caller can act on: `reason` is not_found, conflict
    or invalid."""

    def __init__(self, reason: Literal["not_found", "conflict", "invalid"], message: str) -> None:
        self.reason = reason
        super().__init__(message)
