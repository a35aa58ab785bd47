"""`nebula audit`: who changed what, and when; `nebula audit verify`: is the record whole?

Both read the state database directly (the one nebulad and `nebula apply` write to).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nebula.cli.options import DatabaseUrl, Output, parse_since
from nebula.cli.output import (
    EXIT_FAILED,
    EXIT_INVALID,
    OutputFormat,
    abort,
    console,
    err_console,
    handle_errors,
    print_json,
)
from nebula.engine.session import open_store

if TYPE_CHECKING:
    from rich.text import Text

    from nebula.engine.queries import AuditRecord

app = typer.Typer(
    help="The audit log: every change made through the CLI, the API or a sync, hash-chained.\n\n"
    "`nebula audit` lists entries; `nebula audit verify` checks that none was edited, deleted "
    "or moved.",
    invoke_without_command=True,
)


@app.callback()
def audit(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only entries since a duration ago (30m, 2h, 7d) or a time "
            "(2026-01-31 or 2026-01-31T12:00, UTC unless it says otherwise).",
            show_default=False,
        ),
    ] = None,
    actor: Annotated[
        str | None,
        typer.Option(
            "--actor",
            help="Only this actor: the whole name (user:alice, daemon:sync) or after the colon "
            "(alice).",
            show_default=False,
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            help="Only entries about this: an installation, a secret's name, a user, a zone.",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="Show at most the newest N entries.")
    ] = 50,
    database_url: DatabaseUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """List the newest audit entries, oldest first. Secrets in them are masked (••••)."""
    if ctx.invoked_subcommand is not None:
        return
    start = parse_since(since) if since is not None else None
    from nebula.engine.queries import audit_entries

    with handle_errors(output), open_store(database_url) as store:
        found = audit_entries(store, since=start, actor=actor, target=target, limit=limit)
    if output is OutputFormat.json:
        print_json([_json(e) for e in found])
        return
    if not found:
        console().print("No audit entries" + (" match." if since or actor or target else " yet."))
        return
    _render(found)


@app.command()
def verify(
    expect: Annotated[
        str | None,
        typer.Option(
            "--expect",
            help="A head printed by an earlier verify (SEQ:HASH), kept somewhere else: it must "
            "still be in the log. Catches a log cut back and its head rewritten.",
            show_default=False,
        ),
    ] = None,
    database_url: DatabaseUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Check the hash chain: report every entry edited, deleted or moved. Exit 1 if any."""
    from nebula.engine.queries import audit_verification, parse_audit_head

    anchor = None
    if expect is not None:
        try:
            anchor = parse_audit_head(expect.strip())
        except ValueError as exc:
            abort(f"--expect: {exc}", EXIT_INVALID)
    with handle_errors(output), open_store(database_url) as store:
        result = audit_verification(store, anchor)
    head = f"{result.head_seq}:{result.head_hash}"
    if output is OutputFormat.json:
        problems = [{"seq": p.seq, "kind": p.kind, "message": p.message} for p in result.problems]
        print_json({"ok": result.ok, "checked": result.checked, "head": head, "problems": problems})
    elif result.ok:
        console().print(f"[green]Audit log intact:[/] {result.checked} entries, head {head}")
    else:
        count = len(result.problems)
        err_console().print(
            f"[bold red]audit log tampered[/] ({count} problem{'s' * (count != 1)} in "
            f"{result.checked} entries):"
        )
        for problem in result.problems:
            err_console().print(f"  {problem.kind}: {problem.message}", markup=False)
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)


_TAMPERED = "tampered: the stored detail is not a JSON object (see `nebula audit verify`)"


def _json(entry: AuditRecord) -> dict[str, Any]:
    tampered = {} if entry.detail is not None else {"tampered": _TAMPERED}
    return {
        "seq": entry.seq,
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "detail": entry.detail,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
        **tampered,
    }


def _render(found: list[AuditRecord]) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, show_edge=False)
    for column in ("#", "time (UTC)", "actor", "action"):
        table.add_column(column, no_wrap=True)
    table.add_column("target", overflow="fold")
    table.add_column("detail", overflow="fold", ratio=1)
    for entry in found:
        table.add_row(
            str(entry.seq),
            entry.at.strftime("%Y-%m-%d %H:%M:%S"),
            Text(entry.actor),
            Text(entry.action),
            Text(entry.target or ""),
            _detail(entry),
        )
    console().print(table)


def _detail(entry: AuditRecord) -> Text:
    from rich.text import Text

    if entry.detail is None:
        return Text(_TAMPERED, style="bold red")
    detail = json.dumps(entry.detail, ensure_ascii=False, separators=(",", ":"))
    return Text("" if detail == "{}" else detail)
