"""The `nebula` console script.

A plain `nebula catalog search TERM [...]` is answered here, before typer and the commands
load (that import alone takes longer than the whole search); anything else, `--help` and every
malformed search included, goes to the typer application, which shares the same `run`.
"""

from __future__ import annotations

import sys


def main() -> None:
    args = sys.argv[1:]
    if args[:2] == ["catalog", "search"]:
        from nebula.cli.search import parse_args, run

        parsed = parse_args(args[2:])
        if parsed is not None:
            sys.exit(run(*parsed))
    from nebula.cli.app import main as app_main

    app_main()
