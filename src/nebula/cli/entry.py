"""The `nebula` console script.

A plain `nebula catalog search TERM [...]` is answered here, before typer and the commands
load (that import alone takes longer than the whole search); anything else, `--help` and every
malformed search included, goes to the typer application, which shares the same `run`. So is
a `nebula dns plan|apply` that finds nothing to change (`cli.dns_fast`).
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
    if args[:1] == ["dns"]:
        from nebula.cli.dns_fast import run as dns_run

        code = dns_run(args[1:])
        if code is not None:
            sys.exit(code)
    from nebula.cli.app import main as app_main

    app_main()
