"""Checks a catalog package must pass beyond its schema, each finding pointing at file:line.

Errors make a package unfit for the catalog: a host port published twice, an image reference
that is invalid or not pinned to a tag (`latest` moves under you), no health check, an unknown
category. Warnings concern variables: one used but not declared (an installation must then set
it under `values:`) or declared but never used. The schema itself, and a package's name and
version matching its folder and file name, are checked by the loader (`nebula.catalog`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from nebula.catalog import Catalog, CatalogEntry
from nebula.catalog.categories import CATEGORIES
from nebula.errors import ConfigError, ConfigIssue
from nebula.kinds.packages.compose import parse_ports
from nebula.kinds.packages.dependencies import satisfies
from nebula.spec.images import check_image
from nebula.spec.interpolate import InterpolationError, interpolate, references
from nebula.spec.names import NAME, NAME_RULE
from nebula.spec.yamlfile import Path as YamlPath

Severity = Literal["error", "warning"]

# Top-level fields that are prose or metadata, never interpolated.
_PROSE = {"name", "version", "description", "category", "icon", "repository", "variables"}


@dataclass(frozen=True)
class Finding:
    severity: Severity
    issue: ConfigIssue

    def __str__(self) -> str:
        return f"{self.severity}: {self.issue}"


def lint_catalog(folder: Path) -> tuple[int, list[Finding]]:
    """(package versions checked, findings) for every `<name>/<version>.yaml` of `folder`,
    plus an error for each YAML file lying outside a package folder."""
    findings: list[Finding] = []
    for stray in sorted(folder.glob("*.y*ml")):
        findings.append(
            Finding(
                "error",
                ConfigIssue(
                    os.path.join(folder.name, stray.name),
                    1,
                    1,
                    "",
                    "a package file belongs in a folder named after it: NAME/VERSION.yaml",
                ),
            )
        )
    catalog = Catalog([folder])
    checked = 0
    for name in catalog.names():
        if not NAME.fullmatch(name):
            issue = ConfigIssue(
                os.path.join(folder.name, name), 1, 1, "", f"not a package name: {NAME_RULE}"
            )
            findings.append(Finding("error", issue))
            continue
        try:
            versions = catalog.versions(name)
        except ConfigError as exc:  # its folder leads out of the catalog
            findings.extend(Finding("error", issue) for issue in exc.issues)
            continue
        for version in versions:
            checked += 1
            try:
                entry = catalog.get(name, version)
            except ConfigError as exc:
                findings.extend(Finding("error", issue) for issue in exc.issues)
                continue
            if entry is not None:
                findings.extend(lint_package(entry, catalog))
    return checked, findings


def lint_package(entry: CatalogEntry, catalog: Catalog) -> list[Finding]:
    """Every finding about one loaded package version (`catalog`: where its requirements are)."""
    return [
        *_variables(entry, _provided(entry, catalog)),
        *_images_and_ports(entry),
        *_health(entry),
        *_category(entry),
    ]


def _strings(data: Any, path: YamlPath) -> Iterator[tuple[YamlPath, str]]:
    if isinstance(data, str):
        yield path, data
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _strings(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _strings(value, (*path, index))


def _provided(entry: CatalogEntry, catalog: Catalog) -> dict[str, str] | Finding:
    """The variables the package's requirements give it (name -> the package giving it)."""
    provided: dict[str, str] = {}
    for index, requirement in enumerate(entry.package.requires):
        versions = [
            v for v in catalog.versions(requirement.package) if satisfies(v, requirement.version)
        ]
        provider = catalog.get(requirement.package, versions[-1]) if versions else None
        if provider is None or provider.package.provides is None:
            problem = "no catalog version meets it" if provider is None else "it provides nothing"
            return Finding(
                "error",
                entry.doc.issue(("requires", index), f"requires {requirement.package}: {problem}"),
            )
        prefix = requirement.value_prefix
        for key in ["HOST", *provider.package.provides.values]:
            provided[f"{prefix}_{key}"] = requirement.package
    return provided


def _variables(entry: CatalogEntry, provided: dict[str, str] | Finding) -> Iterator[Finding]:
    doc = entry.doc
    data = doc.data if isinstance(doc.data, dict) else {}
    used: dict[str, YamlPath] = {}  # name -> where first used without a fallback, else anywhere
    bare: set[str] = set()
    for key, value in data.items():
        if key in _PROSE:
            continue
        for path, text in _strings(value, (key,)):
            try:
                refs = references(text)
            except InterpolationError as exc:
                yield Finding("error", doc.issue(path, str(exc)))
                continue
            for name, has_fallback in refs:
                if not has_fallback and name not in bare:
                    bare.add(name)
                    used[name] = path
                used.setdefault(name, path)
    if isinstance(provided, Finding):
        yield provided
        provided = {}
    declared = {v.name for v in entry.package.variables} | set(provided)
    for name, path in used.items():
        if name not in declared:
            how = "" if name in bare else " (only with a fallback)"
            yield Finding(
                "warning",
                doc.issue(
                    path,
                    f"variable {name} is used{how} but not declared under `variables:`; "
                    "installations would have to set it under `values:`",
                ),
            )
    for index, var in enumerate(entry.package.variables):
        if var.secret and var.default is not None:
            yield Finding(
                "error",
                doc.issue(
                    ("variables", index, "default"),
                    f"secret variable {var.name} cannot have a default: its value comes from "
                    "the vault (${secret:NAME})",
                ),
            )
        if var.name not in used:
            yield Finding(
                "warning",
                doc.issue(("variables", index, "name"), f"variable {var.name} is never used"),
            )


def _defaults(entry: CatalogEntry) -> dict[str, str]:
    return {v.name: v.default for v in entry.package.variables if v.default is not None}


def _images_and_ports(entry: CatalogEntry) -> Iterator[Finding]:
    """Images valid and pinned; host ports (with the variables' defaults) published once."""
    doc, values = entry.doc, _defaults(entry)
    published: dict[tuple[str, int, str], YamlPath] = {}
    for service_name, service in entry.package.compose.services.items():
        base: YamlPath = ("compose", "services", service_name)
        try:
            image = None if service.image is None else interpolate(service.image, values)
        except InterpolationError:
            image = None  # depends on a value only the installation gives
        if image is not None:
            problem = _image_problem(image)
            if problem:
                yield Finding("error", doc.issue((*base, "image"), problem))
        for index, port in enumerate(service.ports):
            path = (*base, "ports", index)
            try:
                raw = interpolate(port, values) if isinstance(port, str) else port
                bindings = parse_ports(raw, "0.0.0.0")
            except InterpolationError:
                continue
            except ValueError as exc:
                yield Finding("error", doc.issue(path, str(exc)))
                continue
            for binding in bindings:
                if binding.host_port is None:
                    continue
                key = (binding.host_ip, binding.host_port, binding.protocol)
                first = published.setdefault(key, path)
                if first != path:
                    line = doc.mark_for(first).line
                    yield Finding(
                        "error",
                        doc.issue(
                            path,
                            f"host port {binding.host_port}/{binding.protocol} is already "
                            f"published on line {line}; give each mapping its own host port",
                        ),
                    )


def _image_problem(image: str) -> str | None:
    try:
        check_image(image)
    except ValueError as exc:
        return str(exc)
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.partition(":")[2]
    if not tag and not digest:
        return f"image {image!r} has no tag: pin a release (e.g. {last}:1.2.3)"
    if tag == "latest":
        return f"image {image!r} follows `latest`, which moves under you: pin a release tag"
    return None


def _health(entry: CatalogEntry) -> Iterator[Finding]:
    package = entry.package
    if package.health_checks:
        return
    main_name, main = next(iter(package.compose.services.items()))
    check = main.healthcheck
    if check is not None and not check.disable and check.test is not None:
        return
    yield Finding(
        "error",
        entry.doc.issue(
            ("compose", "services", main_name),
            f"no health check: add `health_checks:` (e.g. an HTTP url) or a compose "
            f"`healthcheck:` to the main service {main_name!r}",
        ),
    )


def _category(entry: CatalogEntry) -> Iterator[Finding]:
    category = entry.package.category
    if category not in CATEGORIES:
        what = f"unknown category {category!r}" if category else "no category"
        yield Finding(
            "error",
            entry.doc.issue(("category",), f"{what}; use one of: {', '.join(CATEGORIES)}"),
        )
