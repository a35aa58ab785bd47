"""`nebula catalog search`: shared by the typer command and the console script's fast path.

Kept free of typer and rich: `nebula.cli.entry` answers a plain search before the CLI
framework loads (about half of a search's time otherwise), from the catalog index.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from nebula.catalog.index import IndexEntry, load_index
from nebula.paths import builtin_catalog_dir

EXIT_OK, EXIT_INVALID = 0, 2
_OUTPUTS = ("table", "json")


def parse_args(args: Sequence[str]) -> tuple[str, str | None, str, list[Path]] | None:
    """(term, category, output, extra catalogs) from the words after `catalog search`, or None
    for anything but the plain forms (help, a typo, a missing value): typer then answers."""
    term: str | None = None
    category: str | None = None
    output = "table"
    catalogs: list[Path] = []
    rest = list(args)
    while rest:
        word = rest.pop(0)
        name, eq, inline = word.partition("=")
        if name in ("--category", "-c", "--output", "-o", "--catalog"):
            if eq and name.startswith("--"):
                value = inline
            elif not eq and rest:
                value = rest.pop(0)
            else:
                return None
            if name in ("--category", "-c"):
                category = value
            elif name == "--catalog":
                catalogs.append(Path(value))
            elif value in _OUTPUTS:
                output = value
            else:
                return None
        elif word.startswith("-") or term is not None:
            return None
        else:
            term = word
    return (term, category, output, catalogs) if term is not None else None


def run(term: str, category: str | None, output: str, catalogs: Sequence[Path]) -> int:
    """Print the matches (best first); the exit code."""
    for folder in catalogs:
        if not folder.is_dir():
            sys.stderr.write(f"error: {folder} is not a folder\n")
            return EXIT_INVALID
    index = load_index([builtin_catalog_dir(), *catalogs])
    for problem in index.problems[:5]:
        sys.stderr.write(f"warning: skipped an invalid package: {problem}\n")
    if len(index.problems) > 5:
        sys.stderr.write(f"warning: ... and {len(index.problems) - 5} more invalid packages\n")
    if category is not None and category not in index.categories():
        sys.stderr.write(
            f"error: no package has category {category!r}; "
            f"categories: {', '.join(index.categories())}\n"
        )
        return EXIT_INVALID
    found = index.search(term, category)
    if output == "json":
        sys.stdout.write(json.dumps([e.to_dict() for e in found], indent=2) + "\n")
    elif found:
        sys.stdout.write(_table(found))
    else:
        where = f" in category {category!r}" if category else ""
        sys.stderr.write(f"no package matches {term!r}{where}\n")
    return EXIT_OK


def _table(entries: list[IndexEntry]) -> str:
    """Aligned columns; descriptions cut to the terminal's width when writing to one."""
    rows = [("NAME", "VERSION", "CATEGORY", "DESCRIPTION")]
    rows += [(e.name, e.version, e.category, e.description) for e in entries]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    room = shutil.get_terminal_size().columns - sum(widths) - 6 if sys.stdout.isatty() else 0
    lines = []
    for row in rows:
        description = row[3]
        if room > 10 and len(description) > room:
            description = description[: room - 1] + "…"
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)))
        lines[-1] += "  " + description
    return "\n".join(lines) + "\n"
