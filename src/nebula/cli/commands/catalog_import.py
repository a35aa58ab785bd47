"""`nebula catalog import`: turn a Runtipi, CasaOS or Umbrel app-store checkout into packages."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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

if TYPE_CHECKING:
    from nebula.catalog import Catalog, CatalogEntry


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
            help="Catalog folder to write <name>/<version>.yaml files into, e.g. a config "
            "repo's catalog/.",
        ),
    ] = Path("catalog"),
    arch: Annotated[
        str | None,
        typer.Option(
            "--arch", help="Architecture apps must support (amd64, arm64). Default: this machine's."
        ),
    ] = None,
    prefix: Annotated[
        str,
        typer.Option(
            "--prefix",
            help="Name every imported package <prefix><name> (e.g. tipi-), so that apps named "
            "like built-in packages are imported too.",
        ),
    ] = "",
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Replace package files that differ from what the store gives."
        ),
    ] = False,
    output: Output = OutputFormat.table,
) -> None:
    """Convert every app of a store into a Nebula package, and report what could not be.

    Store variables become package variables (Runtipi's random fields and Umbrel's seed-derived
    passwords become secrets you set), app data folders become named volumes, and store plumbing
    (Umbrel's app_proxy, Traefik labels, x-* extensions) is dropped. Apps that need host devices
    are not converted. Every written package gets the checks of `nebula catalog validate`; one
    that fails is removed again and reported as not converted, with the reason.

    An app named like a built-in package is not converted: its package would replace the
    built-in one for every installation that does not pin a version. Use --prefix to import
    such apps under other names.

    Importing again is safe: a package whose file would not change is reported unchanged; a
    file that differs (edited by hand, or the store changed) is kept as it is unless --force.
    Exit code 0 if any app was imported, unchanged or kept, 1 if none could be converted, 2 if
    PATH is not a store of that format.
    """
    from nebula.catalog.importers import AppStoreError
    from nebula.catalog.importers import import_store as run_import

    try:
        report = run_import(
            store.value, path, into, check=catalog_errors, arch=arch, force=force, prefix=prefix
        )
    except AppStoreError as exc:
        abort(str(exc), EXIT_INVALID)
    code = EXIT_FAILED if len(report.skipped) == len(report.apps) else 0
    if output is OutputFormat.json:
        print_json({"ok": code == 0, **report.to_dict()})
        raise typer.Exit(code)
    out = console()
    for app in report.imported:
        out.print(f"[green]✓[/] {app.name} {app.version}  [dim]{app.file}[/]", highlight=False)
        for note in app.notes:
            out.print(f"    {note}", markup=False)
    for app in report.having("unchanged"):
        out.print(f"[dim]= {app.name} {app.version}  unchanged[/]", highlight=False)
    for app in report.having("kept"):
        out.print(f"[yellow]![/] {app.name} {app.version}: ", end="", highlight=False)
        out.print(str(app.reason), markup=False)
    for app in report.skipped:
        out.print(f"[red]✗[/] {app.app}: ", end="")
        out.print(str(app.reason), markup=False)
    counts = [
        f"{len(report.having(status))} {status}"
        for status in ("unchanged", "kept")
        if report.having(status)
    ]
    if report.skipped:
        counts.append(f"{len(report.skipped)} not converted")
    out.print(
        f"{len(report.imported)} of {len(report.apps)} {store.value} apps imported into {into}"
        + "".join(f"; {c}" for c in counts)
    )
    raise typer.Exit(code)


def catalog_errors(entry: CatalogEntry, catalog: Catalog) -> list[str]:
    """The errors `nebula catalog validate` reports for one package, as `field: message`."""
    from nebula.kinds.packages.lint import lint_package

    return [
        f"{f.issue.field}: {f.issue.message}"
        for f in lint_package(entry, catalog)
        if f.severity == "error"
    ]
