"""The marketplace as nebulad offers it to the dashboard: browse the catalog, install and
uninstall through commits to the config repo.

An install or uninstall asked through the API is the same edit `nebula install` makes, checked
the same way, committed on the branch's tip (from a scratch work tree, as the caller) and pushed
to the repo the daemon follows; then a sync applies it like any other commit. In watch mode the
followed folder is edited, and committed when it is a git work tree. A package needing powers
over the host is installed only when the body's `allow` grants them (400 naming them otherwise),
and each commit is recorded in the audit log (`repo.commit`, with the grants it gives).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nebula.catalog import Catalog, builtin_catalog_dir
from nebula.catalog.index import load_index
from nebula.daemon.audit import AuditTrail
from nebula.daemon.control import ControlError
from nebula.daemon.gitsync import GitSource
from nebula.engine import configrepo
from nebula.engine.catalog_edits import (
    GrantError,
    MarketplaceError,
    RepoEdit,
    install_edit,
    move_secrets_out,
    plan_install,
    uninstall_edit,
)
from nebula.errors import ConfigError, ConfigIssue, SyncError
from nebula.kinds.packages.grants import grants_needed
from nebula.paths import UnsafePathError
from nebula.secrets import open_vault
from nebula.spec.names import InvalidNameError
from nebula.spec.repo import load_repo, local_catalog_dir
from nebula.spec.yaml_dump import dump_yaml
from nebula.store import Store


class InvalidEditError(ControlError):
    """An edit after which the config repo would not validate: `issues` says where."""

    def __init__(self, error: ConfigError) -> None:
        super().__init__("invalid", str(error))
        self.issues: list[ConfigIssue] = error.issues


class Marketplace:
    def __init__(
        self, store: Store, source: GitSource | None, folder: Path, on_commit: Callable[[], None]
    ) -> None:
        self.store = store
        self.source = source
        self.folder = folder  # the config folder (watch mode), or the clone's checked-out one
        self.on_commit = on_commit

    def catalog_dirs(self) -> list[Path]:
        """The built-in catalog, then the config repo's own (when it is a folder inside it)."""
        try:
            local = local_catalog_dir(self.folder)
        except ConfigError as exc:
            raise ControlError("invalid", str(exc)) from None
        return [builtin_catalog_dir(), *([local] if local else [])]

    def packages(self, query: str = "", category: str | None = None) -> list[dict[str, Any]]:
        index = load_index(self.catalog_dirs())
        return [e.to_dict() for e in index.search(query, category)]

    def package(self, name: str) -> dict[str, Any]:
        catalog = Catalog(self.catalog_dirs())
        entry = catalog.get(name)
        if entry is None:
            raise ControlError("not_found", f"no package {name!r} in the catalog")
        package = entry.package
        return {
            "name": package.name,
            "version": package.version,
            "versions": catalog.versions(name),
            "description": package.description,
            "category": package.category,
            "icon": package.icon,
            "repository": package.repository,
            "variables": [
                {
                    "name": v.name,
                    "description": v.description,
                    "required": v.required and v.default is None,
                    "secret": v.secret,
                    "default": None if v.secret else v.default,
                }
                for v in package.variables
            ],
            "requires": [r.model_dump() for r in package.requires],
            "services": sorted(package.compose.services),
            "grants": {
                grant: list(services) for grant, services in grants_needed(package.compose).items()
            },
        }

    def install(self, body: Mapping[str, Any], actor: str) -> dict[str, Any]:
        """Install as `nebula install` does; secret values given or generated go to the vault."""
        package = body.get("package")
        if not isinstance(package, str) or not package:
            raise ControlError("invalid", 'give the package to install: {"package": NAME}')
        values = body.get("values") or {}
        expose = body.get("expose") or []
        allow = body.get("allow") or []
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise ControlError("invalid", '"values" is an object of strings')
        if not isinstance(expose, list) or not all(_expose_entry(e) for e in expose):
            raise ControlError(
                "invalid",
                '"expose" is a list of hostnames or entries such as '
                '{"host": "ide.example.com", "auth": "nebula"}',
            )
        if not isinstance(allow, list) or not all(isinstance(g, str) for g in allow):
            raise ControlError("invalid", '"allow" is a list of grants, e.g. ["host_network"]')

        to_vault: dict[str, str] = {}

        def edit(folder: Path) -> RepoEdit:
            try:
                added = plan_install(
                    load_repo(folder),
                    package,
                    name=_optional(body, "name"),
                    version=_optional(body, "version"),
                    values=values,
                    node=_optional(body, "node"),
                    expose=expose,
                    allow=allow,
                )
            except GrantError as exc:
                grants = ", ".join(f'"{grant}"' for grant in (*allow, *exc.missing))
                hint = f'; grant them with "allow": [{grants}]' if exc.missing else ""
                raise ControlError("invalid", f"{exc}{hint}") from None
            missing = [f"{a.name}: {v.name}" for a in added for v in a.missing() if not v.secret]
            if missing:
                raise ControlError("invalid", f"values needed: {', '.join(missing)}")
            moved = [move_secrets_out(a, lambda _v: None) for a in added]
            to_vault.clear()
            for _, secrets in moved:
                to_vault.update(secrets)
            return install_edit([item for item, _ in moved])

        def store_secrets() -> None:
            vault = open_vault(self.store)
            vault.init()
            for name, value in to_vault.items():
                vault.set(name, value)

        return self._commit(edit, actor, store_secrets)

    def uninstall(self, name: str, actor: str) -> dict[str, Any]:
        return self._commit(lambda folder: uninstall_edit(load_repo(folder), name), actor)

    def save_definition(
        self,
        folder: str,
        name: str,
        document: Mapping[str, Any],
        actor: str,
        *,
        create: bool,
        author: configrepo.Author | None = None,
    ) -> dict[str, Any]:
        """Write `document` as `FOLDER/NAME.yaml` (an agent, a function, a project) and commit
        it (as `author` when given): a `create` refused (conflict) when the file exists, an
        update when it does not (not_found); `InvalidEditError` when the repo would not
        validate with it."""
        verb = "Add" if create else "Update"

        def edit(root: Path) -> RepoEdit:
            found = [
                f"{folder}/{name}{e}"
                for e in (".yml", ".yaml")
                if (root / folder / f"{name}{e}").exists()
            ]
            rel = found[-1] if found else f"{folder}/{name}.yaml"
            exists = bool(found)
            if create and exists:
                raise ControlError("conflict", f"{rel} exists already: update it with PUT")
            if not create and not exists:
                raise ControlError("not_found", f"no {rel} in the config repo: create it first")
            text = dump_yaml(dict(document))
            return RepoEdit({rel: text}, message=f"{verb} {folder[:-1]} {name} ({actor})")

        return self._commit(edit, actor, author=author)

    def delete_definition(
        self, folder: str, name: str, actor: str, author: configrepo.Author | None = None
    ) -> dict[str, Any]:
        """Commit the removal of `FOLDER/NAME.yaml` (not_found when there is none)."""

        def edit(root: Path) -> RepoEdit:
            found = [
                f"{folder}/{name}{e}"
                for e in (".yml", ".yaml")
                if (root / folder / f"{name}{e}").is_file()
            ]
            if not found:
                raise ControlError("not_found", f"no {folder}/{name}.yaml in the config repo")
            return RepoEdit({}, tuple(found), message=f"Remove {folder[:-1]} {name} ({actor})")

        return self._commit(edit, actor, author=author)

    def _commit(
        self,
        make: Callable[[Path], RepoEdit],
        actor: str,
        before: Callable[[], None] = lambda: None,
        author: configrepo.Author | None = None,
    ) -> dict[str, Any]:
        """Make the edit against the config as it is now, check it, run `before`, commit (as
        `author`; default: nebulad on behalf of `actor`, or git's identity in a work tree)."""
        made: list[RepoEdit] = []

        def checked(folder: Path) -> RepoEdit:
            change = make(folder)
            change.check(folder)
            before()
            made.append(change)
            return change

        def edit_clone(folder: Path) -> str:
            change = checked(folder)
            change.apply_to(folder)
            return change.message

        try:
            if self.source is not None:
                who = author or configrepo.Author(f"nebulad API ({actor})", "nebulad@localhost")
                sha: str | None = self.source.publish(edit_clone, who.name, who.email)
            elif configrepo.is_git_repo(self.folder):
                sha = configrepo.commit(self.folder, checked(self.folder), author)
            else:
                checked(self.folder).apply_to(self.folder)
                sha = None
        except (MarketplaceError, SyncError, configrepo.ConfigRepoError) as exc:
            raise ControlError("conflict", str(exc)) from None
        except ConfigError as exc:
            raise InvalidEditError(exc) from None
        except (InvalidNameError, UnsafePathError) as exc:
            raise ControlError("invalid", str(exc)) from None
        self.on_commit()
        change = made[0]
        done: dict[str, Any] = {"commit": sha, "message": change.message, "files": change.paths()}
        if change.granted:
            done["granted"] = {name: list(grants) for name, grants in change.granted.items()}
        AuditTrail(self.store).record(actor, "repo.commit", str(self.folder)[-500:], done)
        return done


def _optional(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise ControlError("invalid", f'"{key}" is a string')
    return value


def _expose_entry(entry: object) -> bool:
    """A hostname, or an object of strings (an `expose:` entry, checked when loaded)."""
    if isinstance(entry, dict):
        return all(isinstance(k, str) and isinstance(v, str) for k, v in entry.items())
    return isinstance(entry, str)
