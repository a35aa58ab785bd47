"""`nebula catalog list|show|search|validate`: browse and check the package catalog."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nebula.cli import complete
from nebula.cli.commands import catalog_import
from nebula.cli.options import Output
from nebula.cli.output import (
    EXIT_INVALID,
    OutputFormat,
    abort,
    console,
    err_console,
    fail,
    handle_errors,
    print_json,
    print_table,
)

if TYPE_CHECKING:
    from nebula.catalog import Catalog

app = typer.Typer(help="Browse the package catalog.", no_args_is_help=True)
app.command("import")(catalog_import.import_store)

Repo = Annotated[
    Path | None,
    typer.Option(
        "--repo",
        help="A config repo whose own catalog/ is included. Default: the current folder, "
        "when it is a config repo (holds nebula.yaml).",
        show_default=False,
    ),
]


def _catalog(repo: Path | None, output: OutputFormat) -> Catalog:
    """The built-in catalog, shadowed by the config repo's `catalog/` as `nebula plan` sees
    it: `repo`'s, or the current folder's when it is a config repo."""
    from nebula.catalog import Catalog, builtin_catalog_dir
    from nebula.spec.repo import CONFIG_FILE, local_catalog_dir

    root = repo if repo is not None else Path(".")
    if not (root / CONFIG_FILE).is_file():
        if repo is not None:
            fail(f"{repo} is not a Nebula config repo (no {CONFIG_FILE})", output, EXIT_INVALID)
        return Catalog([builtin_catalog_dir()])
    with handle_errors(output):
        local = local_catalog_dir(root)
    return Catalog([builtin_catalog_dir(), *([local] if local else [])])


@app.command("list")
def list_packages(repo: Repo = None, output: Output = OutputFormat.table) -> None:
    """Every package in the catalog, with the config repo's own."""
    catalog = _catalog(repo, output)
    with handle_errors(output):
        entries = catalog.all()
    if output is OutputFormat.json:
        print_json(
            [
                {
                    "name": e.package.name,
                    "version": e.package.version,
                    "category": e.package.category,
                    "description": e.package.description,
                }
                for e in entries
            ]
        )
        return
    print_table(
        ("name", "version", "category", "description"),
        (
            (e.package.name, e.package.version, e.package.category, e.package.description)
            for e in entries
        ),
    )


@app.command("show")
def show(
    name: Annotated[
        str,
        typer.Argument(
            help="Package name, as in `nebula catalog list`.", autocompletion=complete.packages
        ),
    ],
    repo: Repo = None,
    output: Output = OutputFormat.table,
) -> None:
    """A package's services, the grants it needs, its variables and health checks (the config
    repo's own version of it when its catalog/ has one)."""
    import difflib

    from nebula.kinds.packages.grants import grants_needed

    catalog = _catalog(repo, output)
    with handle_errors(output):
        entry = catalog.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, catalog.names(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        abort(f"no package {name!r} in the catalog{hint}", EXIT_INVALID)
    package = entry.package
    grants = grants_needed(package.compose)
    if output is OutputFormat.json:
        needs = {grant: list(services) for grant, services in grants.items()}
        print_json(package.model_dump(mode="json") | {"grants": needs})
        return
    console().print(f"[bold]{package.name}[/] {package.version}  [dim]{package.category}[/]")
    if package.description:
        console().print(package.description)
    console().print("\n[bold]services[/]")
    for service_name, service in package.compose.services.items():
        ports = ", ".join(str(p) for p in service.ports)
        console().print(
            f"  {service_name}: {service.image or 'built from its folder'}"
            + (f"  ports {ports}" if ports else ""),
            markup=False,
        )
    if grants:
        allow = " ".join(f"--allow {grant}" for grant in grants)
        console().print(f"\n[bold]grants[/] (powers over the host; install with {allow})")
        for grant, services in grants.items():
            console().print(f"  {grant}: service {', '.join(services)}", markup=False)
    if package.variables:
        console().print("\n[bold]variables[/]")
        for var in package.variables:
            flags = [f for f, on in (("required", var.required), ("secret", var.secret)) if on]
            default = f" (default {var.default})" if var.default is not None else ""
            extra = f" [{', '.join(flags)}]" if flags else ""
            console().print(f"  {var.name}{default}{extra}: {var.description}", markup=False)
    if package.health_checks:
        console().print("\n[bold]health checks[/]")
        for check in package.health_checks:
            console().print(f"  {check.name}: {check.summary()}", markup=False)


@app.command("search")
def search(
    term: Annotated[
        str, typer.Argument(help="Words to look for in names, categories and descriptions.")
    ],
    category: Annotated[
        str | None,
        typer.Option("--category", "-c", help="Only packages of this category (e.g. media, ai)."),
    ] = None,
    catalog: Annotated[
        list[Path] | None,
        typer.Option(
            "--catalog",
            help="Also search this catalog folder (NAME/VERSION.yaml files), e.g. a config "
            "repo's catalog/; repeatable, later folders win.",
        ),
    ] = None,
    output: Output = OutputFormat.table,
) -> None:
    """Find packages: every word must appear in the name, category or description; name
    matches come first. Answers from an index in the user's cache dir, refreshed when a
    catalog file changes."""
    from nebula.cli.search import run

    code = run(term, category, output.value, catalog or [])
    if code:
        raise typer.Exit(code)


@app.command("validate")
def validate(
    folder: Annotated[
        Path | None,
        typer.Argument(
            help="A catalog folder (NAME/VERSION.yaml files). Default: the built-in catalog.",
            show_default=False,
        ),
    ] = None,
    output: Output = OutputFormat.table,
) -> None:
    """Check every version of every package: schema, name and version matching the file,
    images pinned to a tag, host ports published once, a health check, a known category
    (errors, exit 2); variables used but not declared or declared but unused (warnings)."""
    from nebula.catalog import builtin_catalog_dir
    from nebula.kinds.packages.lint import lint_catalog

    folder = folder or builtin_catalog_dir()
    if not folder.is_dir():
        abort(f"{folder} is not a folder", EXIT_INVALID)
    checked, findings = lint_catalog(folder)
    errors = [f for f in findings if f.severity == "error"]
    if output is OutputFormat.json:
        print_json(
            {
                "ok": not errors,
                "packages": checked,
                "findings": [{"severity": f.severity, **f.issue.__dict__} for f in findings],
            }
        )
    else:
        for finding in findings:
            err_console().print(str(finding), markup=False)
        warned = len(findings) - len(errors)
        summary = f"{checked} package versions checked: {len(errors)} errors, {warned} warnings"
        console().print(("[red]✗[/] " if errors else "[green]✓[/] ") + summary)
    if errors:
        raise typer.Exit(EXIT_INVALID)
