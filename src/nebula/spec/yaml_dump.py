"""YAML that Nebula's loader reads back exactly as written.

PyYAML quotes a string only when YAML 1.1 would read it as something else; Nebula reads YAML 1.2
(`yaml_scalars`), where `0o17`, `1e3` and `08` are numbers that 1.1 leaves strings. Written
plain, such a value (an installation's `values:`, an imported default, a record) would come back
changed; this dumper quotes it.
"""

from __future__ import annotations

from typing import Any

import yaml

from nebula.spec.yaml_scalars import STR, resolve_plain


class _Dumper(yaml.SafeDumper):
    pass


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if resolve_plain(value)[0] != STR:
        return dumper.represent_scalar(STR, value, style="'")
    return dumper.represent_str(value)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(data: Any, width: int = 80) -> str:
    """`data` as block YAML, keys in their order, non-ASCII text as it is."""
    text: str = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=width)
    return text
