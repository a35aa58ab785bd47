"""The one console every command writes to, and how errors become messages and exit codes.

Exit codes: 0 ok; 1 a change failed or an outside system refused; 2 the config is invalid (or
the command line was). Full tracebacks only with NEBULA_DEBUG=1.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from rich.console import Console

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2


@cache
def console() -> Console:
    """Standard output for people (rich is imported on first use: --help stays fast)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


@cache
def err_console() -> Console:
    """Standard error: progress and messages, never wrapped mid-line (greppable, pastable)."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


def print_json(data: Any) -> None:
    """Machine-readable output: plain JSON on stdout, nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A borderless table on stdout, a heading a column; a cell too long for it folds."""
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console().print(table)


def print_list(
    output: OutputFormat,
    data: list[Any],
    columns: Sequence[str],
    rows: Iterable[Sequence[str]],
    empty: str,
) -> None:
    """What a list command shows: `data` as JSON, else the table of `rows`, else `empty`."""
    if output is OutputFormat.json:
        print_json(data)
    elif data:
        print_table(columns, rows)
    else:
        console().print(empty)


def abort(message: str, code: int = EXIT_FAILED) -> NoReturn:
    err_console().print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def fail(message: str, output: OutputFormat, code: int = EXIT_FAILED) -> NoReturn:
    """Say what went wrong (`{"ok": false, "error": ...}` with --output json) and exit `code`."""
    if output is OutputFormat.json:
        print_json({"ok": False, "error": message})
    else:
        err_console().print("[bold red]error:[/] ", end="")
        err_console().print(message, markup=False)
    raise typer.Exit(code)


@contextmanager
def handle_errors(
    output: OutputFormat = OutputFormat.table,
    invalid: type[Exception] | tuple[type[Exception], ...] = (),
) -> Iterator[None]:
    """Turn Nebula's errors into a message and the documented exit code; the errors of
    `invalid` say the command's input was wrong (an unknown user, a weak password): exit 2."""
    from nebula.errors import ConfigError, NebulaError

    try:
        yield
    except ConfigError as exc:
        if os.environ.get("NEBULA_DEBUG") == "1":
            raise
        if output is OutputFormat.json:
            print_json({"ok": False, "errors": [issue.__dict__ for issue in exc.issues]})
        else:
            count = len(exc.issues)
            err_console().print(
                f"[bold red]invalid config[/] ({count} problem{'s' * (count != 1)}):"
            )
            for issue in exc.issues:
                err_console().print(f"  {issue}", markup=False)
        raise typer.Exit(EXIT_INVALID) from None
    except NebulaError as exc:
        if os.environ.get("NEBULA_DEBUG") == "1":
            raise
        fail(str(exc), output, EXIT_INVALID if isinstance(exc, invalid) else EXIT_FAILED)
