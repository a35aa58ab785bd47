"""`nebula context add|use|list|remove|current`: the daemons the CLI speaks to, by name (see
`nebula.cli.contexts`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nebula.cli.options import Output
from nebula.cli.output import (
    EXIT_INVALID,
    OutputFormat,
    abort,
    console,
    handle_errors,
    print_json,
    print_list,
)

app = typer.Typer(
    help="Contexts: named daemons (a TCP API or a unix socket) the CLI speaks to, like "
    "kubectl's. --context NAME or NEBULA_CONTEXT picks one for a command.",
    no_args_is_help=True,
)

ContextName = Annotated[str, typer.Argument(help="The context's name.")]


@app.command("add")
def add(
    name: ContextName,
    url: Annotated[
        str | None,
        typer.Option("--url", help="The daemon's TCP API, e.g. https://nebula.home.lan:7733."),
    ] = None,
    socket: Annotated[
        Path | None, typer.Option("--socket", help="The daemon's unix socket.")
    ] = None,
    use: Annotated[bool, typer.Option("--use", help="Make it the current context.")] = False,
    output: Output = OutputFormat.table,
) -> None:
    """Add a context (or change one's daemon). Log in to a URL with `nebula login URL`: the
    session is kept by URL, never in the contexts file."""
    from pydantic import ValidationError

    from nebula.cli import contexts
    from nebula.cli.contexts import Context

    given = {"name": name, "url": url, "socket": str(socket.absolute()) if socket else None}
    try:
        context = Context.model_validate(given)
    except ValidationError as exc:
        abort("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors()), EXIT_INVALID)
    with handle_errors(output):
        found = contexts.load()
        kept = [c for c in found.contexts if c.name != name]
        current = name if use or not found.contexts else found.current
        path = contexts.save(
            found.model_copy(update={"contexts": [*kept, context], "current": current})
        )
    if output is OutputFormat.json:
        print_json({"ok": True, "name": name, "daemon": context.daemon, "current": current})
        return
    now = " (current)" if current == name else f"; `nebula context use {name}` to switch to it"
    console().print(f"Context {name}: {context.daemon}{now}. Saved in {path}.")


@app.command("use")
def use(name: ContextName, output: Output = OutputFormat.table) -> None:
    """Make a context the current one: commands speak to its daemon from now on."""
    from nebula.cli import contexts

    with handle_errors(output):
        found = contexts.load()
        context = found.get(name)
        contexts.save(found.model_copy(update={"current": name}))
    if output is OutputFormat.json:
        print_json({"ok": True, "current": name, "daemon": context.daemon})
    else:
        console().print(f"Current context: {name} ({context.daemon}).")


@app.command("list")
def list_(output: Output = OutputFormat.table) -> None:
    """The contexts, the current one marked."""
    from nebula.cli import contexts

    with handle_errors(output):
        found = contexts.load()
        chosen = contexts.selected()
    rows = [
        {
            "name": c.name,
            "daemon": c.daemon,
            "current": chosen is not None and c.name == chosen.name,
        }
        for c in found.contexts
    ]
    print_list(
        output,
        rows,
        ["", "name", "daemon"],
        [("*" if r["current"] else "", str(r["name"]), str(r["daemon"])) for r in rows],
        "No contexts: add one with `nebula context add NAME --url URL` (or --socket PATH).",
    )


@app.command("current")
def current(output: Output = OutputFormat.table) -> None:
    """The context commands use now (--context, NEBULA_CONTEXT, else the current one)."""
    from nebula.cli import contexts

    with handle_errors(output):
        chosen = contexts.selected()
    if output is OutputFormat.json:
        print_json(None if chosen is None else {"name": chosen.name, "daemon": chosen.daemon})
    elif chosen is None:
        console().print("No context: commands use --daemon, --socket or the default socket.")
    else:
        console().print(f"{chosen.name} ({chosen.daemon})")


@app.command("remove")
def remove(name: ContextName, output: Output = OutputFormat.table) -> None:
    """Remove a context (its login, if any, stays until `nebula logout URL`)."""
    from nebula.cli import contexts

    with handle_errors(output):
        found = contexts.load()
        found.get(name)
        current = None if found.current == name else found.current
        kept = [c for c in found.contexts if c.name != name]
        contexts.save(found.model_copy(update={"contexts": kept, "current": current}))
    if output is OutputFormat.json:
        print_json({"ok": True, "removed": name, "current": current})
    else:
        left = "" if current or not kept else "; no context is current now"
        console().print(f"Context {name} removed{left}.")
