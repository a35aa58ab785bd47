"""Where Nebula's own files are. Import-light: the fast paths of the CLI use it."""

from __future__ import annotations

from pathlib import Path


def builtin_catalog_dir() -> Path:
    """The built-in catalog: shipped inside the wheel, or the source checkout's `catalog/`."""
    here = Path(__file__).resolve().parent
    shipped = here / "builtin_catalog"
    return shipped if shipped.is_dir() else here.parents[1] / "catalog"
