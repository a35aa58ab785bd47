"""Names of a package that load their module on first use (a module `__getattr__`, PEP 562), so
importing the package costs nothing until one of them is needed."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, where: dict[str, str]) -> Callable[[str], Any]:
    """The `__getattr__` of `package`: each name of `where` is the attribute of that name in
    the module it maps to, or `module:attribute` for one exported under another name."""

    def load(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = where[name].partition(":")
        return getattr(importlib.import_module(module), attribute or name)

    return load
