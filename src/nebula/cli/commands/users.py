"""`nebula user add|list|rm|passwd` and `nebula apikey create|list|revoke`: local accounts.

They work on the state database directly (like `nebula status`), so they need no running
daemon: run them as the user nebulad runs as, or with its `--database-url`. Passwords come from
a hidden prompt (asked twice), or from standard input with `--password-stdin`; never from the
command line, where `ps` and the shell history would keep them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from nebula.cli.audit_trail import record
from nebula.cli.options import DatabaseUrl, Output
from nebula.cli.output import (
    EXIT_INVALID,
    OutputFormat,
    abort,
    console,
    err_console,
    handle_errors,
    print_json,
    print_list,
)

if TYPE_CHECKING:
    from nebula.engine.session import Store

user_app = typer.Typer(
    help="Local users who log in to nebulad's TCP API (`nebula login`). Roles: viewer (read), "
    "operator (sync, suspend, rollback, approve), admin (also users and API keys).",
    no_args_is_help=True,
)
apikey_app = typer.Typer(
    help="API keys for automation (scopes read, write, admin) and service tokens for nodes. "
    "Send one as `Authorization: Bearer KEY`, or as NEBULA_TOKEN to the CLI.",
    no_args_is_help=True,
)

Name = Annotated[str, typer.Argument(help="User name: a-z, 0-9, '.', '_', '-'.")]
PasswordStdin = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from standard input (one line)."),
]


def _password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            abort("no password on standard input", EXIT_INVALID)
        return password
    value: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


def _when(at: datetime | None, layout: str = "%Y-%m-%d %H:%M") -> str:
    return at.strftime(layout) if at else ""


@contextmanager
def _store(database_url: str | None, output: OutputFormat) -> Iterator[Store]:
    """The store while the block runs. Errors become messages; an `IdentityError` (unknown
    user, taken name, weak password) is invalid input: exit 2."""
    from nebula.engine.queries import IdentityError
    from nebula.engine.session import open_store

    with handle_errors(output, IdentityError), open_store(database_url) as store:
        yield store


@user_app.command("add")
def user_add(
    name: Name,
    role: Annotated[
        str, typer.Option("--role", "-r", help="viewer, operator or admin.")
    ] = "viewer",
    password_stdin: PasswordStdin = False,
    database_url: DatabaseUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Add a user (password: at least 10 characters)."""
    from nebula.identity import accounts

    password = _password(password_stdin)
    with _store(database_url, output) as store:
        info = accounts.add_user(store, name, password, role)
        record(store, "user.add", info.name, {"role": info.role})
    if output is OutputFormat.json:
        print_json({"ok": True, "name": info.name, "role": info.role})
    else:
        console().print(f"Added user {info.name} ({info.role}).")


@user_app.command("list")
def user_list(database_url: DatabaseUrl = None, output: Output = OutputFormat.table) -> None:
    """Users, their roles, and any lockout from failed logins."""
    from nebula.identity import accounts

    with _store(database_url, output) as store:
        found = accounts.users(store)
    rows = [
        {
            "name": u.name,
            "role": u.role,
            "failed_logins": u.failed_logins,
            "locked_until": u.locked_until,
            "created_at": u.created_at,
        }
        for u in found
    ]
    print_list(
        output,
        rows,
        ("name", "role", "failed logins", "locked until", "created"),
        (
            (
                u.name,
                u.role,
                str(u.failed_logins),
                _when(u.locked_until, "%Y-%m-%d %H:%M:%S"),
                _when(u.created_at),
            )
            for u in found
        ),
        "No users: add one with `nebula user add NAME --role admin`.",
    )


@user_app.command("rm")
def user_rm(
    name: Name, database_url: DatabaseUrl = None, output: Output = OutputFormat.table
) -> None:
    """Remove a user: its sessions and tokens end (within seconds for a running nebulad), and
    the API keys it made are revoked."""
    from nebula.identity import accounts

    with _store(database_url, output) as store:
        revoked = [k.prefix for k in accounts.remove_user(store, name)]
        record(store, "user.rm", name, {"revoked_keys": revoked})
    if output is OutputFormat.json:
        print_json({"ok": True, "removed": name, "revoked_keys": revoked})
    else:
        console().print(f"Removed user {name}.{_revoked_note(revoked)}")


@user_app.command("role")
def user_role(
    name: Name,
    role: Annotated[str, typer.Argument(help="viewer, operator or admin.")],
    database_url: DatabaseUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Change a user's role: its tokens hold the new role within seconds, and the API keys it
    made above the new role are revoked."""
    from nebula.identity import accounts

    with _store(database_url, output) as store:
        revoked = [k.prefix for k in accounts.set_role(store, name, role)]
        record(store, "user.role", name, {"role": role, "revoked_keys": revoked})
    if output is OutputFormat.json:
        print_json({"ok": True, "name": name, "role": role, "revoked_keys": revoked})
    else:
        console().print(
            f"{name} is now {'an' if role[0] in 'aeiou' else 'a'} {role}.{_revoked_note(revoked)}"
        )


def _revoked_note(prefixes: list[str]) -> str:
    if not prefixes:
        return ""
    return f" Revoked the API keys it made: {', '.join(prefixes)}."


@user_app.command("passwd")
def user_passwd(
    name: Name,
    password_stdin: PasswordStdin = False,
    database_url: DatabaseUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Set a user's password: its sessions end and any lockout lifts."""
    from nebula.identity import accounts

    password = _password(password_stdin)
    with _store(database_url, output) as store:
        accounts.set_password(store, name, password)
        record(store, "user.passwd", name)
    if output is OutputFormat.json:
        print_json({"ok": True, "name": name})
    else:
        console().print(f"Password of {name} changed; its sessions are revoked.")


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Argument(help="What the key is for (or the node's name).")],
    scope: Annotated[
        str, typer.Option("--scope", "-s", help="read (viewer), write (operator) or admin.")
    ] = "read",
    node: Annotated[
        bool, typer.Option("--node", help="A service token for the node NAME, not an API key.")
    ] = False,
    database_url: DatabaseUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Create an API key (or a node's service token). The key is printed once: keep it."""
    import getpass

    from nebula.identity import accounts

    with _store(database_url, output) as store:
        info, token = accounts.create_key(
            store, name, scope, service=node, created_by=f"cli:{getpass.getuser()}"
        )
        record(store, "apikey.create", info.prefix, {"name": info.name, "scope": info.scope})
    if output is OutputFormat.json:
        print_json(
            {
                "ok": True,
                "id": info.prefix,
                "name": info.name,
                "kind": info.kind,
                "scope": info.scope,
                "token": token,
            }
        )
        return
    what = "Service token for node" if node else "API key"
    err_console().print(f"{what} {info.name} ({info.scope}), id {info.prefix}. It is shown once:")
    sys.stdout.write(token + "\n")


@apikey_app.command("list")
def apikey_list(
    revoked: Annotated[bool, typer.Option("--revoked", help="Include revoked keys.")] = False,
    database_url: DatabaseUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """API keys and service tokens (ids and names; the keys themselves are not kept)."""
    from nebula.identity import accounts

    with _store(database_url, output) as store:
        found = accounts.keys(store, revoked=revoked)
    rows = [
        {
            "id": k.prefix,
            "name": k.name,
            "kind": "node" if k.kind == "service" else "key",
            "scope": k.scope,
            "created_by": k.created_by,
            "created_at": k.created_at,
            "revoked_at": k.revoked_at,
        }
        for k in found
    ]
    print_list(
        output,
        rows,
        ("id", "name", "kind", "scope", "created by", "created", "revoked"),
        (
            (
                k.prefix,
                k.name,
                "node" if k.kind == "service" else "key",
                k.scope,
                k.created_by or "",
                _when(k.created_at),
                _when(k.revoked_at),
            )
            for k in found
        ),
        "No API keys: create one with `nebula apikey create NAME --scope read`.",
    )


@apikey_app.command("revoke")
def apikey_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id, as `nebula apikey list` shows.")],
    database_url: DatabaseUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Revoke an API key or service token: requests with it are refused from now on."""
    from nebula.identity import accounts

    with _store(database_url, output) as store:
        info = accounts.revoke_key(store, key_id)
        record(store, "apikey.revoke", info.prefix, {"name": info.name})
    if output is OutputFormat.json:
        print_json({"ok": True, "revoked": info.prefix, "name": info.name})
    else:
        console().print(f"Revoked {info.prefix} ({info.name}).")
