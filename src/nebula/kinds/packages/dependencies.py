"""Which installation satisfies each package requirement, and the order they resolve in.

A package's `requires` names other packages with a version constraint. In a config repo each
requirement is met by an installation of that package: the only one, or the one chosen under the
dependant's `dependencies:`. Unmet, ambiguous and conflicting requirements and cycles are
reported together, each at the dependant's file and line. Pure: no I/O.
"""

from __future__ import annotations

import graphlib
from collections.abc import Mapping
from dataclasses import dataclass

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from nebula.errors import ConfigIssue
from nebula.spec.package import Package, Requirement
from nebula.spec.repo import InstallationSource


@dataclass(frozen=True)
class Link:
    """`requirement` of the dependant is met by the installation `provider`."""

    requirement: Requirement
    provider: str


@dataclass(frozen=True)
class Linked:
    links: dict[str, tuple[Link, ...]]  # installation -> what it depends on
    order: list[str]  # providers before their dependants
    issues: list[ConfigIssue]
    unmet: frozenset[str]  # installations with a requirement no installation meets

    def dependants(self, name: str) -> list[str]:
        """The installations that depend on `name`, sorted."""
        return sorted(
            d for d, links in self.links.items() if any(k.provider == name for k in links)
        )


def satisfies(version: str, constraint: str) -> bool:
    if not constraint:
        return True
    try:
        return SpecifierSet(constraint).contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


def link(sources: list[InstallationSource], packages: Mapping[str, Package | None]) -> Linked:
    """Link every installation whose package (`packages[name]`, None for inline apps) has
    requirements to the installations that meet them."""
    by_package: dict[str, list[str]] = {}
    for source in sources:
        if (package := packages.get(source.name)) is not None:
            by_package.setdefault(package.name, []).append(source.name)
    links: dict[str, tuple[Link, ...]] = {}
    issues: list[ConfigIssue] = []
    unmet: set[str] = set()
    for source in sources:
        package = packages.get(source.name)
        if package is None:
            continue
        found = []
        for requirement in package.requires:
            provider, problem = _provider(source, requirement, by_package, packages)
            if provider is not None:
                found.append(Link(requirement, provider))
            else:
                unmet.add(source.name)
                where: tuple[str, ...] = ("dependencies", requirement.package)
                if requirement.package not in source.spec.dependencies:
                    where = ("package",)
                issues.append(
                    source.doc.issue(
                        where,
                        f"{package.name} {package.version} requires "
                        f"{_wanted(requirement)}: {problem}",
                    )
                )
        for chosen in source.spec.dependencies:
            if chosen not in {r.package for r in package.requires}:
                issues.append(
                    source.doc.issue(
                        ("dependencies", chosen), f"{package.name} does not require {chosen!r}"
                    )
                )
        links[source.name] = tuple(found)
    sorter = graphlib.TopologicalSorter({n: [k.provider for k in ks] for n, ks in links.items()})
    try:
        order = list(sorter.static_order())
    except graphlib.CycleError as exc:
        cycle: list[str] = exc.args[1]
        first = next(s for s in sources if s.name == cycle[0])
        issues.append(first.doc.issue(("package",), "dependency cycle: " + " → ".join(cycle)))
        order = [s.name for s in sources]
    return Linked(links, order, issues, frozenset(unmet))


def _wanted(requirement: Requirement) -> str:
    return f"{requirement.package} {requirement.version}".strip()


def _provider(
    source: InstallationSource,
    requirement: Requirement,
    by_package: Mapping[str, list[str]],
    packages: Mapping[str, Package | None],
) -> tuple[str | None, str]:
    """The installation meeting `requirement`, or None and why none does."""
    chosen = source.spec.dependencies.get(requirement.package)
    candidates = by_package.get(requirement.package, [])
    if chosen is not None:
        if chosen not in packages:
            return None, f"there is no installation {chosen!r}"
        if chosen not in candidates:
            return None, f"installation {chosen!r} is not a {requirement.package} installation"
        candidates = [chosen]
    if not candidates:
        return None, (
            f"no installation provides it (add packages/{requirement.package}.yaml, "
            f"or run `nebula install {requirement.package}`)"
        )
    if len(candidates) > 1:
        return None, (
            f"several installations could ({', '.join(sorted(candidates))}): choose one under "
            f"`dependencies: {{{requirement.package}: NAME}}`"
        )
    provider = candidates[0]
    package = packages[provider]
    assert package is not None  # candidates come from by_package
    if not satisfies(package.version, requirement.version):
        return None, f"installation {provider!r} has {package.name} {package.version}"
    if package.provides is None:
        return None, f"{package.name} {package.version} provides no connection values"
    return provider, ""
