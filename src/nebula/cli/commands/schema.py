"""`nebula schema export DIR`: JSON Schemas of every config-repo kind, for editors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nebula.cli.options import Output
from nebula.cli.output import OutputFormat, console, print_json

app = typer.Typer(
    help="JSON Schemas of the config repo's files, for editors.", no_args_is_help=True
)


@app.command("export")
def export(
    directory: Annotated[Path, typer.Argument(help="Folder to write <kind>.schema.json into.")],
    output: Output = OutputFormat.table,
) -> None:
    """Write a JSON Schema for nebula.yaml, packages/*.yaml, domains/*.yaml, catalog packages,
    agents/*.yaml and functions/*.yaml.

    Point your editor at them (VS Code's YAML extension: `yaml.schemas`, or a
    `# yaml-language-server: $schema=...` first line) to get completion and checks as you
    type. `nebula init` sets this up in .nebula/schema/; run this again after upgrading Nebula.
    """
    from nebula.kinds.schemas import SCHEMAS
    from nebula.spec.schema import export as write

    written = write(directory, SCHEMAS)
    if output is OutputFormat.json:
        print_json(
            {
                "ok": True,
                "schemas": [
                    {"kind": k.name, "file": str(p), "applies_to": list(k.files)}
                    for k, p in zip(SCHEMAS, written, strict=True)
                ],
            }
        )
        return
    for kind, path in zip(SCHEMAS, written, strict=True):
        console().print(f"[green]✓[/] {path}  [dim]{', '.join(kind.files)}[/]", highlight=False)
