"""`nebula catalog import`: turn a Runtipi, CasaOS or Umbrel app-store checkout into packages."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from nebula.cli.options import Output
from nebula.cli.output import (
    EXIT_FAILED,
    EXIT_INVALID,
    OutputFormat,
    abort,
    console,
    print_json,
)


class StoreFormat(StrEnum):
    runtipi = "runtipi"
    casaos = "casaos"
    umbrel = "umbrel"


def import_store(
    store: Annotated[
        StoreFormat,
        typer.Option(
            "--from",
            help="The store's format: runtipi (apps/<id>/config.json), casaos "
            "(Apps/<Name>/docker-compose.yml) or umbrel (<id>/umbrel-app.yml).",
        ),
    ],
    path: Annotated[Path, typer.Argument(help="A checkout of the app store.")],
    into: Annotated[
        Path,
        typer.Option(
            "--into",
            help="Catalog folder to write <name>/<version>.yaml files into; a config repo's "
            "catalog/ shadows the built-in one.",
        ),
    ] = Path("catalog"),
    arch: Annotated[
        str | None,
        typer.Option(
            "--arch", help="Architecture apps must support (amd64, arm64). Default: this machine's."
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace package files that exist already.")
    ] = False,
    output: Output = OutputFormat.table,
) -> None:
    """Convert every app of a store into a Nebula package, and report what could not be.

    Store variables become package variables (Runtipi's random fields and Umbrel's seed-derived
    passwords become secrets you set), app data folders become named volumes, and store plumbing
    (Umbrel's app_proxy, Traefik labels, x-* extensions) is dropped. Every written file is loaded
    back and validated. Exit code 0 if any package was written, 1 if none could be, 2 if PATH is
    not a store of that format.
    """
    from nebula.catalog.importers import AppStoreError
    from nebula.catalog.importers import import_store as run_import

    try:
        report = run_import(store.value, path, into, arch=arch, force=force)
    except AppStoreError as exc:
        abort(str(exc), EXIT_INVALID)
    code = 0 if report.imported else EXIT_FAILED
    if output is OutputFormat.json:
        print_json({"ok": code == 0, **report.to_dict()})
        raise typer.Exit(code)
    out = console()
    for app in report.imported:
        out.print(f"[green]✓[/] {app.name} {app.version}  [dim]{app.file}[/]", highlight=False)
        for note in app.notes:
            out.print(f"    {note}", markup=False)
    for app in report.skipped:
        out.print(f"[red]✗[/] {app.app}: ", end="")
        out.print(str(app.reason), markup=False)
    out.print(
        f"{len(report.imported)} of {len(report.apps)} {store.value} apps imported into {into}"
        + (f"; {len(report.skipped)} not converted" if report.skipped else "")
    )
    raise typer.Exit(code)
