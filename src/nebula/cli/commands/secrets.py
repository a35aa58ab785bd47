"""`nebula secrets`: the vault of passwords, tokens and keys the config repo refers to.

Values never come from the command line by default (`ps` and the shell history would keep
them): `set` asks with a hidden prompt, or reads standard input when it is not a terminal.
The vault lives in the state database (`--database-url`), sealed under a master key kept in the
OS keyring, a key file, or NEBULA_MASTER_KEY (see `nebula secrets init --help`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nebula.cli import complete
from nebula.cli.audit_trail import record
from nebula.cli.options import DatabaseUrl, Output
from nebula.cli.output import (
    EXIT_FAILED,
    EXIT_INVALID,
    OutputFormat,
    console,
    err_console,
    fail,
    handle_errors,
    print_json,
    print_table,
)

if TYPE_CHECKING:
    from nebula.engine.session import Store
    from nebula.secrets import SecretInfo, Vault

app = typer.Typer(
    help="Secrets the config repo refers to as ${secret:NAME}: stored encrypted (AES-256-GCM) "
    "in the state database, shown only as •••• and a fingerprint. Start with "
    "`nebula secrets init`, then `nebula secrets set NAME`.",
    no_args_is_help=True,
)

Name = Annotated[
    str,
    typer.Argument(
        help="Secret name: letters, digits, '_', '.', '-' (e.g. db.password).",
        autocompletion=complete.secrets,
    ),
]
RepoOption = Annotated[
    Path,
    typer.Option(
        "--repo",
        help="The config repo whose packages/*.yaml may refer to secrets.",
        show_default=".",
    ),
]
_RANDOM_BYTES = 32


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M") if at else ""


@contextmanager
def _vault(database_url: str | None) -> Iterator[tuple[Store, Vault]]:
    """The store at `database_url` and its vault, closed when the block ends."""
    from nebula.engine.session import open_store
    from nebula.secrets import open_vault

    with open_store(database_url) as store:
        yield store, open_vault(store)


def _checked(name: str, output: OutputFormat) -> str:
    from nebula.secrets import VaultError
    from nebula.secrets.vault import check_name

    try:
        return check_name(name)
    except VaultError as exc:
        fail(str(exc), output, EXIT_INVALID)


def _read_value(name: str, value: str | None, output: OutputFormat) -> str:
    """The value: `--value` (warned about), else standard input if piped, else a prompt."""
    if value is not None:
        err_console().print(
            "[yellow]warning:[/] a value on the command line stays in the shell history and "
            "is visible in `ps`; prefer the prompt or standard input"
        )
    elif not sys.stdin.isatty():
        value = sys.stdin.read()
        value = value[:-1] if value.endswith("\n") else value
        value = value[:-1] if value.endswith("\r") else value
    else:
        value = typer.prompt(f"Value of {name}", hide_input=True, confirmation_prompt=True)
    if not value:
        fail(f"no value given for {name}", output, EXIT_INVALID)
    return value


def _info_json(info: SecretInfo, used_by: list[str] | None = None) -> dict[str, object]:
    data: dict[str, object] = {
        "name": info.name,
        "fingerprint": info.fingerprint,
        "created_at": info.created_at.isoformat() if info.created_at else None,
        "rotated_at": info.rotated_at.isoformat() if info.rotated_at else None,
    }
    if used_by is not None:
        data["used_by"] = used_by
    return data


@app.command()
def init(database_url: DatabaseUrl = None, output: Output = OutputFormat.table) -> None:
    """Create the master key (or adopt the one found) and say where it lives.

    The key goes to the OS keyring when one is usable, else to a key file (mode 0600) in the
    user's config dir. NEBULA_MASTER_KEY_FILE=PATH chooses the file; NEBULA_MASTER_KEY (base64
    of 32 bytes) supplies a key for daemons and CI. Back the key up: without it the secrets
    cannot be read. Running init again changes nothing.
    """
    with handle_errors(output), _vault(database_url) as (store, vault):
        result = vault.init()
        if result.created:
            record(store, "secret.init", None, {"key_id": result.key_id, "where": result.where})
    if output is OutputFormat.json:
        print_json({"ok": True, "key_id": result.key_id, "where": result.where})
        return
    verb = "Created" if result.created else "Using"
    console().print(f"{verb} the master key (key id {result.key_id}) in {result.where}.")
    if result.created:
        console().print("Back it up: without it, the secrets in this vault cannot be read.")


@app.command("set")
def set_(
    name: Name,
    value: Annotated[
        str | None,
        typer.Option(
            "--value",
            help="The value itself. Avoid: it stays in the shell history and shows in `ps`.",
        ),
    ] = None,
    database_url: DatabaseUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Store a secret (new, or a new value): from a hidden prompt, or standard input.

    Examples: `nebula secrets set db.password` (asks twice), `pass show db | nebula secrets set
    db.password`. Refer to it in the config repo as ${secret:db.password}.
    """
    name = _checked(name, output)
    secret = _read_value(name, value, output)
    with handle_errors(output), _vault(database_url) as (store, vault):
        info = vault.set(name, secret)
        record(store, "secret.set", name, {"fingerprint": info.fingerprint})
    if output is OutputFormat.json:
        print_json({"ok": True, **_info_json(info)})
        return
    console().print(f"Stored {name} {info.masked}. Refer to it as ${{secret:{name}}}.")


@app.command()
def get(
    name: Name,
    reveal: Annotated[
        bool, typer.Option("--reveal", help="Print the plain value (alone, on standard output).")
    ] = False,
    database_url: DatabaseUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Show a secret masked with its fingerprint; the value only with --reveal."""
    from nebula.secrets import UnknownSecretError

    name = _checked(name, output)
    with handle_errors(output, UnknownSecretError), _vault(database_url) as (store, vault):
        info = vault.info(name)
        plain = vault.reveal(name) if reveal else None
        if reveal:
            record(store, "secret.reveal", name, {"fingerprint": info.fingerprint})
    if output is OutputFormat.json:
        print_json({"ok": True, **_info_json(info)} | ({"value": plain} if reveal else {}))
    elif plain is not None:
        sys.stdout.write(plain + "\n")
    else:
        rotated = f", rotated {_when(info.rotated_at)}" if info.rotated_at else ""
        console().print(f"{name} {info.masked} (created {_when(info.created_at)}{rotated})")


@app.command("list")
def list_(
    repo: RepoOption = Path("."),
    database_url: DatabaseUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Every secret: fingerprint, when created and rotated, which installations refer to it."""
    from nebula.secrets.usage import referenced_by

    with handle_errors(output), _vault(database_url) as (_, vault):
        secrets = vault.secrets()
    users = referenced_by(repo)
    missing = sorted(set(users) - {s.name for s in secrets})
    if output is OutputFormat.json:
        print_json(
            {
                "secrets": [_info_json(s, users.get(s.name, [])) for s in secrets],
                "missing": [{"name": n, "used_by": users[n]} for n in missing],
            }
        )
        return
    if not secrets and not missing:
        console().print("No secrets yet: `nebula secrets set NAME` stores one.")
        return
    print_table(
        ("name", "fingerprint", "created", "rotated", "used by"),
        (
            (
                s.name,
                s.masked,
                _when(s.created_at),
                _when(s.rotated_at),
                ", ".join(users.get(s.name, [])) or "-",
            )
            for s in secrets
        ),
    )
    for name in missing:
        err_console().print(
            f"[yellow]missing:[/] {name} is used by {', '.join(users[name])} but not in the "
            f"vault; `nebula secrets set {name}`",
            highlight=False,
        )


@app.command()
def rm(
    name: Name,
    force: Annotated[
        bool, typer.Option("--force", help="Remove even while the config repo refers to it.")
    ] = False,
    repo: RepoOption = Path("."),
    database_url: DatabaseUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Remove a secret; refused while an installation of the config repo refers to it."""
    from nebula.secrets.usage import referenced_by

    name = _checked(name, output)
    users = referenced_by(repo).get(name, [])
    if users and not force:
        fail(
            f"{name} is used by {', '.join(users)} (in {repo / 'packages'}); remove those "
            "references first, or pass --force",
            output,
            EXIT_FAILED,
        )
    with handle_errors(output), _vault(database_url) as (store, vault):
        removed = vault.remove(name)
        if removed:
            record(store, "secret.rm", name, {"forced_while_used_by": users})
    if not removed:
        fail(f"no secret {name!r} in the vault", output, EXIT_INVALID)
    if output is OutputFormat.json:
        print_json({"ok": True, "name": name})
    else:
        console().print(f"Removed {name}.")


@app.command()
def rotate(
    name: Name,
    stdin: Annotated[
        bool,
        typer.Option("--stdin", help="Read the new value from standard input instead."),
    ] = False,
    database_url: DatabaseUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Give a secret a new value (random, 43 URL-safe characters, unless --stdin) and a new
    data key. The next apply recreates the services that use it."""
    import secrets as random

    from nebula.secrets import UnknownSecretError

    name = _checked(name, output)
    value = _read_value(name, None, output) if stdin else random.token_urlsafe(_RANDOM_BYTES)
    with handle_errors(output, UnknownSecretError), _vault(database_url) as (store, vault):
        info = vault.rotate(name, value)
        record(store, "secret.rotate", name, {"fingerprint": info.fingerprint})
    if output is OutputFormat.json:
        print_json({"ok": True, **_info_json(info)})
        return
    console().print(f"Rotated {name}: now {info.masked}. `nebula apply` hands it to its services.")


@app.command("rotate-key")
def rotate_key(database_url: DatabaseUrl = None, output: Output = OutputFormat.table) -> None:
    """Re-wrap every secret's data key under a new master key.

    The new key is saved before any secret moves and each secret records which key wraps it,
    so the rotation can be killed at any point: every secret stays readable, and running
    rotate-key again finishes it. Back up the new key afterwards.
    """
    with handle_errors(output), _vault(database_url) as (store, vault):
        result = vault.rotate_key()
        record(
            store,
            "secret.rotate-key",
            None,
            {
                "old_key_id": result.old_key_id,
                "new_key_id": result.new_key_id,
                "moved": result.moved,
            },
        )
    if output is OutputFormat.json:
        print_json(
            {
                "ok": True,
                "old_key_id": result.old_key_id,
                "new_key_id": result.new_key_id,
                "moved": result.moved,
                "where": result.where,
            }
        )
        return
    console().print(
        f"Master key rotated: {result.old_key_id} → {result.new_key_id} ({result.moved} "
        f"secret(s) re-wrapped); the new key is in {result.where}. Back it up."
    )
