"""Which node each installation runs on: its `node:`, a node its `placement:` selector matches,
or the first node of nebula.yaml.

Pure and deterministic, so every nebulad following the repo places alike. Installations with
`node:` (or with neither field: the first node) are placed first; then those with a selector,
in name order, each on the matching node (in nebula.yaml's order) with the fewest installations
placed so far. A selector matching no node and an unknown node are issues at their line.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

from nebula.errors import ConfigIssue
from nebula.spec.config import NebulaConfig, Node
from nebula.spec.repo import InstallationSource

GPU = "gpu"  # the selector key matching `Node.gpu`; every other key is a label


def place(
    sources: Sequence[InstallationSource], config: NebulaConfig
) -> tuple[dict[str, str], list[ConfigIssue]]:
    """Installation name -> its node's name; the installations that cannot be placed are left
    out, with an issue each."""
    placed: dict[str, str] = {}
    issues: list[ConfigIssue] = []
    load = dict.fromkeys((n.name for n in config.nodes), 0)
    selected: list[InstallationSource] = []
    for source in sources:
        if source.spec.placement is not None:
            selected.append(source)
            continue
        node = config.node(source.spec.node)
        if node is None:
            issues.append(source.doc.issue(("node",), _unknown(source.spec.node, config)))
            continue
        placed[source.name] = node.name
        load[node.name] += 1
    for source in sorted(selected, key=lambda s: s.name):
        selector = source.spec.placement or {}
        matching = [n.name for n in config.nodes if matches(n, selector)]
        if not matching:
            issues.append(source.doc.issue(("placement",), _no_match(selector, config)))
            continue
        chosen = min(matching, key=lambda name: load[name])  # the first of the least loaded
        placed[source.name] = chosen
        load[chosen] += 1
    return placed, issues


def matches(node: Node, selector: Mapping[str, str]) -> bool:
    """Whether `node` has everything `selector` asks for."""
    for key, value in selector.items():
        if key == GPU:
            if node.gpu != (value == "true"):
                return False
        elif node.labels.get(key) != value:
            return False
    return True


def _unknown(name: str | None, config: NebulaConfig) -> str:
    names = ", ".join(n.name for n in config.nodes)
    return f"no node {name!r} in nebula.yaml (nodes: {names})"


def _no_match(selector: Mapping[str, str], config: NebulaConfig) -> str:
    wanted = ", ".join(f"{k}: {v}" for k, v in selector.items())
    nodes = "; ".join(_describe(n) for n in config.nodes)
    labels = sorted({key for n in config.nodes for key in n.labels} | {GPU})
    missing = [_missing_label(key, labels) for key in selector if key not in labels]
    hint = f" ({'; '.join(missing)})" if missing else ""
    return (
        f"no node in nebula.yaml matches {{{wanted}}}{hint}; the nodes: {nodes}. Give a node "
        "the labels in nebula.yaml, or change the selector"
    )


def _missing_label(key: str, labels: list[str]) -> str:
    close = difflib.get_close_matches(key, labels, n=1)
    return f"no node has a label {key!r}" + (f", did you mean {close[0]!r}?" if close else "")


def _describe(node: Node) -> str:
    labels = ", ".join(f"{k}: {v}" for k, v in sorted(node.labels.items()))
    return f"{node.name} (gpu: {'true' if node.gpu else 'false'}{', ' + labels if labels else ''})"
