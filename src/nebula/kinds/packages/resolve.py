"""Installations → desired Docker resources.

Resolving an installation picks its app (a catalog package or the inline compose), works out the
value of every variable, interpolates, and parses compose's short syntaxes into `ContainerSpec`s.
All problems of all installations are collected and raised together as one `ConfigError`, each
pointing at the file and line to fix, before anything is touched.
"""

from __future__ import annotations

import dataclasses
import difflib
import pathlib
import posixpath
import re
from collections import ChainMap
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from nebula.catalog import Catalog, CatalogEntry
from nebula.errors import ConfigError, ConfigIssue
from nebula.kinds.packages.build_context import is_remote, read_context
from nebula.kinds.packages.checks import check_installations
from nebula.kinds.packages.compose import (
    device_requests,
    parse_bytes,
    parse_count,
    parse_cpus,
    parse_device,
    parse_expose,
    parse_extra_host,
    parse_healthcheck,
    parse_mount,
    parse_ports,
    parse_security_opt,
    parse_tmpfs,
    split_command,
)
from nebula.kinds.packages.dependencies import Link, link
from nebula.kinds.packages.placement import place
from nebula.kinds.packages.probes import resolve_probes
from nebula.kinds.packages.repo_files import (
    MissingFileError,
    installation_folder,
    parse_env_file,
    read_repo_file,
    read_repo_tree,
)
from nebula.kinds.packages.types import (
    RESERVED_LABEL_PREFIX,
    BuildSpec,
    ContainerSpec,
    DesiredInstallation,
    LogConfig,
    Mount,
    NetworkSpec,
    PortBinding,
    RepoFile,
    RepoFolder,
    RestartPolicy,
    SecretFile,
    SwarmDeploy,
    Ulimit,
    UpdateConfig,
    VolumeSpec,
    build_tag,
)
from nebula.spec.base import check_ip_address
from nebula.spec.compose import (
    Build,
    Compose,
    DeviceMapping,
    EnvFile,
    Limits,
    PortMapping,
    Service,
    ServiceConfig,
    ServiceSecret,
    VolumeMount,
)
from nebula.spec.config import NebulaConfig
from nebula.spec.images import check_image
from nebula.spec.installation import Installation
from nebula.spec.interpolate import (
    SECRET_REFERENCE,
    InterpolationError,
    UnknownSecretError,
    interpolate,
    references,
    substitute_secrets,
)
from nebula.spec.names import excerpt
from nebula.spec.package import AppDefinition, Hooks, Provides
from nebula.spec.repo import InstallationSource, RepoSpec
from nebula.spec.yamlfile import Path, YamlDocument
from nebula.stand_ins import MASK, stand_in

DEFAULT_NETWORK = "default"
_Model = TypeVar("_Model", PortMapping, VolumeMount)
_Parsed = TypeVar("_Parsed")
HOOK_KINDS = ("post_install", "pre_upgrade", "post_upgrade", "pre_uninstall")
_SECRETS_GO_TO = ("environment", "command", "entrypoint", "healthcheck", "secrets")
_GRANT_KEYS = {  # a grant → the compose key that needs it
    "host_network": "network_mode",
    "privileged": "privileged",
    "cap_add": "cap_add",
    "devices": "devices",
    "sysctls": "sysctls",
    "host_pid": "pid",
    "host_ipc": "ipc",
    "docker_socket": "volumes",
    "host_system": "volumes",
}


def resolve(
    repo: RepoSpec, catalog: Catalog, secrets: Mapping[str, str] | None = None
) -> list[DesiredInstallation]:
    """Every installation of the repo as desired resources, or `ConfigError` with all issues.

    `secrets` maps the vault's secret names to their fingerprints: a `${secret:NAME}` becomes
    the secret's stand-in, never its value (apply reveals it). None (no vault at hand, as in
    `nebula validate`) accepts any name.
    """
    stand_ins: Mapping[str, str] = (
        _AnySecret() if secrets is None else {n: stand_in(fp) for n, fp in secrets.items()}
    )
    placed, issues = place(repo.installations, repo.config)
    entries: dict[str, CatalogEntry | None] = {}
    for source in repo.installations:
        try:
            entries[source.name] = _pick_version(source, catalog) if source.spec.package else None
        except ConfigError as exc:
            issues.extend(exc.issues)
    by_name = {s.name: s for s in repo.installations}
    packages = {name: entry.package if entry else None for name, entry in entries.items()}
    linked = link([by_name[n] for n in packages], packages)
    issues.extend(linked.issues)
    provided: dict[str, Provided] = {}
    resolved = []
    memo = _Memo()
    for name in dict.fromkeys([*linked.order, *packages]):  # providers first
        links = linked.links.get(name, ())
        if name in linked.unmet or any(k.provider not in provided for k in links):
            continue  # a provider failed to resolve: its own issues say why
        inputs = _Inputs(
            by_name[name],
            entries[name],
            repo.config,
            uses=tuple((k, provided[k.provider]) for k in links),
            stand_ins=stand_ins,
            root=repo.root,
        )
        try:
            desired_one, offer = memo.resolve(inputs)
        except ConfigError as exc:
            issues.extend(exc.issues)
            continue
        if offer is not None:
            provided[name] = offer
        if name in placed:  # else placing it failed, and an issue says why
            resolved.append((by_name[name], replace(desired_one, node=placed[name])))
    memo.keep()
    order = {name: index for index, name in enumerate(by_name)}
    resolved.sort(key=lambda r: order[r[0].name])
    desired = [d for _, d in resolved]
    issues.extend(_clashes(desired))
    issues.extend(check_installations(resolved, catalog, repo.config))
    if issues:  # a catalog file's issue once, however many installations use it
        raise ConfigError(list(dict.fromkeys(issues)))
    return desired


@dataclass(frozen=True)
class Provided:
    """What an installation offers its dependants (its package's `provides`, resolved)."""

    host: str  # the providing service's container name
    network: str  # the network dependants join to reach it
    values: dict[str, str]
    secret: frozenset[str]  # keys of `values` that carry secrets


@dataclass(frozen=True)
class _Inputs:
    """Everything an installation's resolution is made from, besides its repo files."""

    source: InstallationSource
    entry: CatalogEntry | None  # the catalog package version it runs, if any
    config: NebulaConfig
    uses: tuple[tuple[Link, Provided], ...]  # its requirements, with what their providers offer
    stand_ins: Mapping[str, str]  # secret name -> stand-in (`stand_ins.stand_in`)
    root: pathlib.Path  # the repo's: its folder of files is beside its file (`repo_files`)

    def same_as(self, other: _Inputs) -> bool:
        """The same inputs: the documents and models as the very objects (a reload keeps an
        unchanged file's, `spec.repo`), the rest equal."""
        return (
            self.source.name == other.source.name
            and self.source.spec is other.source.spec
            and self.source.doc is other.source.doc
            and self.entry is other.entry  # catalog files are cached while unmodified
            and self.config is other.config
            and self.uses == other.uses
            and self.stand_ins == other.stand_ins
            and self.root == other.root
        )


@dataclass(frozen=True)
class _Failed:
    """A read that raised: as much a part of what was read as a value."""

    kind: type
    message: str


@dataclass
class _Files:
    """The installation's folder of repo files, and every read made of it (with its outcome):
    a resolution holds while reading again gives the same."""

    folder: pathlib.Path
    reads: list[tuple[Callable[..., Any], tuple[Any, ...], object]] = field(default_factory=list)

    def read(self, how: Callable[..., _Parsed], *args: Any) -> _Parsed:
        """`how(folder, *args)`, remembered."""
        try:
            got = how(self.folder, *args)
        except ValueError as exc:
            self.reads.append((how, args, _Failed(type(exc), str(exc))))
            raise
        self.reads.append((how, args, got))
        return got

    def unchanged(self) -> bool:
        for how, args, was in self.reads:
            try:
                got = how(self.folder, *args)
            except ValueError as exc:
                got = _Failed(type(exc), str(exc))
            if got != was:
                return False
        return True


class _Memo:
    """The installations of one resolve, each reused from the resolve before when its inputs
    and repo files are the same: a push that changes one installation resolves that one (and
    its dependants), however many there are. Results are frozen, so sharing them is safe;
    only the last resolve's are kept (as `spec.repo` keeps the last load's documents)."""

    last: dict[str, tuple[_Inputs, _Files, tuple[DesiredInstallation, Provided | None]]] = {}

    def __init__(self) -> None:
        self.now: dict[str, tuple[_Inputs, _Files, tuple[DesiredInstallation, Provided | None]]]
        self.now = {}

    def resolve(self, inputs: _Inputs) -> tuple[DesiredInstallation, Provided | None]:
        name = inputs.source.name
        known = self.last.get(name)
        if known is not None and known[0].same_as(inputs) and known[1].unchanged():
            self.now[name] = known
            return known[2]
        files = _Files(installation_folder(inputs.root, inputs.source.doc.file))
        result = resolve_installation(inputs, files)
        self.now[name] = (inputs, files, result)
        return result

    def keep(self) -> None:
        """This resolve's installations are the ones the next may reuse."""
        _Memo.last = self.now


def resolve_installation(
    inputs: _Inputs, files: _Files
) -> tuple[DesiredInstallation, Provided | None]:
    """The installation's desired resources, and what it provides to dependants (if anything);
    its repo files are read through `files`."""
    source = inputs.source
    spec = source.spec
    version: str | None = None
    if inputs.entry is not None:
        app: AppDefinition = inputs.entry.package
        app_doc = inputs.entry.doc
        version = inputs.entry.package.version
    else:
        assert spec.compose is not None  # guaranteed by the Installation model
        app = AppDefinition(
            compose=spec.compose,
            variables=spec.variables,
            health_checks=spec.health_checks,
            hooks=spec.hooks or Hooks(),
        )
        app_doc = source.doc
    secrets = _SecretRefs(inputs.stand_ins)
    resolver = _Resolver(source, app, app_doc, inputs.config, files, inputs.uses, secrets)
    return resolver.run(version)


def in_channel(version: str, channel: str) -> bool:
    """`latest` holds every version; `16` holds 16 and 16.x.y, not 160."""
    return channel in ("latest", version) or version.startswith(f"{channel}.")


def selected_version(spec: Installation, versions: list[str]) -> str | None:
    """The version of `versions` (oldest first) the installation's pin or channel selects."""
    if spec.version is not None:
        return spec.version if spec.version in versions else None
    channel = spec.channel or "latest"
    matching = [v for v in versions if in_channel(v, channel)]
    return matching[-1] if matching else None


def _pick_version(source: InstallationSource, catalog: Catalog) -> CatalogEntry:
    """The catalog entry the installation's `version` pin or `channel` selects."""
    spec = source.spec
    assert spec.package is not None  # only catalog installations have versions
    package = spec.package
    versions = catalog.versions(package)
    if not versions:
        hint = _did_you_mean(package, catalog.names())
        raise ConfigError(
            [source.doc.issue(("package",), f"no package {package!r} in the catalog{hint}")]
        )
    chosen = selected_version(spec, versions)
    field_name = "version" if spec.version is not None else "channel"
    if chosen is None:
        wanted = spec.version if spec.version is not None else spec.channel
        raise ConfigError(
            [
                source.doc.issue(
                    (field_name,),
                    f"{package} has no version {'in channel ' if field_name == 'channel' else ''}"
                    f"{excerpt(str(wanted))} (available: {', '.join(versions)})",
                )
            ]
        )
    entry = catalog.get(package, chosen)
    assert entry is not None  # listed by versions() a moment ago
    return entry


@dataclass
class _Resolver:
    source: InstallationSource
    app: AppDefinition
    app_doc: YamlDocument
    config: NebulaConfig
    files: _Files  # the installation's files (`repo_files`)
    uses: Sequence[tuple[Link, Provided]] = ()
    secrets: _SecretRefs = field(default_factory=lambda: _SecretRefs({}))
    issues: list[ConfigIssue] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)
    secret_names: set[str] = field(default_factory=set)

    @property
    def name(self) -> str:
        return self.source.name

    def run(self, version: str | None) -> tuple[DesiredInstallation, Provided | None]:
        self._values()
        if self.issues:  # interpolating with missing values would only repeat them
            raise ConfigError(self.issues)
        compose = self.app.compose
        networks = self._networks(compose)
        volumes: dict[str, VolumeSpec] = {}
        containers = [
            self._container(service_name, service, compose, networks, volumes)
            for service_name, service in compose.services.items()
            if not service.profiles  # compose starts no profile unless asked: Nebula never asks
        ]
        if not containers:
            self.issues.append(
                self._issue(
                    ("compose", "services"),
                    "every service has `profiles:`, and services with profiles are not started; "
                    "remove `profiles:` from those that should run",
                )
            )
        self._check_dependencies(compose)
        self._check_container_names(compose)
        checks = resolve_probes(
            self.app.health_checks,
            containers,
            self._text,
            lambda path, message: self.issues.append(self._issue(path, message)),
        )
        exposed = self.secret_names & {v.name for v in self.app.variables if v.expose_to_hooks}
        hidden = self.secret_names - exposed
        hooks = {
            kind: tuple(
                self._hook_line(line, ("hooks", kind, i), exposed)
                for i, line in enumerate(getattr(self.app.hooks, kind))
            )
            for kind in HOOK_KINDS
        }
        if self.issues:
            raise ConfigError(self.issues)
        desired = DesiredInstallation(
            name=self.name,
            requires=tuple(link.provider for link, _ in self.uses),
            source=self.source.doc.file,
            package=self.source.spec.package,
            version=version,
            containers=tuple(containers),
            networks=tuple(networks.values()),
            volumes=tuple(volumes.values()),
            health_checks=checks,
            post_install=hooks["post_install"],
            pre_upgrade=hooks["pre_upgrade"],
            post_upgrade=hooks["post_upgrade"],
            pre_uninstall=hooks["pre_uninstall"],
            hook_env=tuple((k, v) for k, v in sorted(self.values.items()) if k not in hidden),
            config=dict(self.values),  # secrets are stand-ins already
            secrets=self.secrets.used(),
        )
        return desired, self._provided(containers)

    def _provided(self, containers: list[ContainerSpec]) -> Provided | None:
        provides = getattr(self.app, "provides", None)  # only catalog packages provide
        if not isinstance(provides, Provides):
            return None
        container = next((c for c in containers if c.service == provides.service), None)
        if container is None or not container.networks:
            hint = _did_you_mean(provides.service, [c.service for c in containers])
            raise ConfigError(
                [
                    self._issue(
                        ("provides", "service"), f"no service {excerpt(provides.service)}{hint}"
                    )
                ]
            )
        values = {
            key: self._text(text, ("provides", "values", key))
            for key, text in provides.values.items()
        }
        if self.issues:
            raise ConfigError(self.issues)
        secret = frozenset(
            key for key, text in provides.values.items() if _names(text) & self.secret_names
        )
        return Provided(container.name, container.networks[0][0], values, secret)

    # -- variables -------------------------------------------------------------------------

    def _values(self) -> None:
        given = self.source.spec.values
        declared = {var.name for var in self.app.variables}
        used = _used_variables(self.app)
        self.secret_names = {v.name for v in self.app.variables if v.secret}
        for requirement, provided in self.uses:
            prefix = requirement.requirement.value_prefix
            self.values[f"{prefix}_HOST"] = provided.host
            for key, value in provided.values.items():
                self.values[f"{prefix}_{key}"] = value
                if key in provided.secret:
                    self.secret_names.add(f"{prefix}_{key}")
        for var in self.app.variables:
            if var.name in given:
                self.values[var.name] = self._value(var.name, given[var.name], var.secret)
            elif var.default is not None:
                self.values[var.name] = self._value(var.name, var.default, var.secret)
            elif var.required:
                about = f" ({var.description})" if var.description else ""
                self.issues.append(
                    self.source.doc.issue(
                        ("values",),
                        f"required variable {var.name}{about} has no value; set it under `values:`",
                    )
                )
        for key, value in given.items():
            if key in declared:
                continue
            if key in used:
                self.values[key] = self._value(key, value, secret=False)
                continue
            hint = _did_you_mean(key, [*declared, *used])
            self.issues.append(
                self.source.doc.issue(
                    ("values", key), f"no variable {excerpt(key)} in this app{hint}"
                )
            )

    def _value(self, key: str, value: str, secret: bool) -> str:
        """A value as given, its `${secret:NAME}` references replaced by stand-ins. A secret
        variable takes nothing but a reference (the plain text is never echoed)."""
        if secret and not SECRET_REFERENCE.fullmatch(value):
            self.issues.append(
                self.source.doc.issue(
                    ("values", key),
                    f"{key} is a secret: give it as ${{secret:NAME}} and store the value with "
                    "`nebula secrets set NAME`, never in the config repo",
                )
            )
            return value
        try:
            return substitute_secrets(value, self.secrets)
        except InterpolationError as exc:
            self.issues.append(self.source.doc.issue(("values", key), str(exc)))
            return value

    def _text(self, text: str, path: Path, first: Mapping[str, str] | None = None) -> str:
        """`text` interpolated; `first`: variables looked up before the installation's values
        (an env file's earlier lines, as compose reads it)."""
        values = ChainMap(dict(first), self.values) if first else self.values
        try:
            return interpolate(text, values, self.secrets)
        except InterpolationError as exc:
            self.issues.append(self._where_to_fix(path, exc))
            return text

    def _hook_line(self, line: str, path: Path, exposed: set[str]) -> str:
        """A hook line interpolated; one that would put a secret not given to hooks into the
        command is refused (hooks see secrets only of variables marked `expose_to_hooks`)."""
        text = self._text(line, path)
        rest = text
        for name in exposed & set(self.values):
            rest = rest.replace(self.values[name], "")
        if MASK in rest:  # the package's to fix (mark the variable), not the value given
            self.issues.append(
                self.app_doc.issue(
                    path,
                    "this hook uses a secret; hooks see a secret only when its variable is "
                    "marked `expose_to_hooks: true`",
                )
            )
        return text

    def _where_to_fix(self, path: Path, exc: InterpolationError) -> ConfigIssue:
        """A value missing from the installation is fixed there; other errors where written."""
        if (
            exc.name
            and self.app_doc is not self.source.doc
            and not isinstance(exc, UnknownSecretError)
        ):
            at = self.app_doc.mark_for(path)
            return self.source.doc.issue(
                ("values",),
                f"{exc} (used at {self.app_doc.file}:{at.line}); set it under `values:`",
            )
        return self._issue(path, str(exc))

    def _issue(self, path: Path, message: str) -> ConfigIssue:
        """An issue at `path` of the app. When the app is a catalog package and the value there
        is made from a value the installation gives, the issue is the installation's: at that
        value in its file, saying where the package uses it."""
        issue = self.app_doc.issue(path, message)
        given = self._given_in(path)
        if given is None:
            return issue
        return self.source.doc.issue(
            ("values", given),
            f"{message} (the package uses it at {issue.file}:{issue.line}: {issue.field})",
        )

    def _given_in(self, path: Path) -> str | None:
        """The first variable the installation gives under `values:` that the catalog package's
        value at `path` refers to; None for an inline app or a value made of none."""
        if self.app_doc is self.source.doc:
            return None
        raw: Any = self.app_doc.data
        for part in path:
            try:
                raw = raw[part]
            except (KeyError, IndexError, TypeError):
                return None
        given = self.source.spec.values
        return next((n for s in _strings(raw) for n in sorted(_names(s)) if n in given), None)

    # -- services --------------------------------------------------------------------------

    def _networks(self, compose: Compose) -> dict[str, NetworkSpec]:
        nets = {DEFAULT_NETWORK: NetworkSpec(self.name, f"{self.name}_{DEFAULT_NETWORK}")}
        for net_name, decl in compose.networks.items():
            options = tuple(sorted(decl.driver_opts.items())) if decl else ()
            driver = (decl.driver if decl else None) or "bridge"
            nets[net_name] = NetworkSpec(self.name, f"{self.name}_{net_name}", driver, options)
        return nets

    def _container(
        self,
        service_name: str,
        service: Service,
        compose: Compose,
        networks: dict[str, NetworkSpec],
        volumes: dict[str, VolumeSpec],
    ) -> ContainerSpec:
        base: Path = ("compose", "services", service_name)
        platform = self._optional(service.platform, (*base, "platform"))
        image, build = self._image(service_name, service, base, platform)

        environment = self._environment(service, base)
        ports = self._ports(service, base)
        mounts, files = self._mounts(service, compose, base, volumes)
        labels = self._labels(service, base)
        attached: tuple[tuple[str, tuple[str, ...]], ...] = ()
        if service.network_mode is None:
            attached = self._attachments(service_name, service, networks, base)
            attached += tuple((provided.network, ()) for _, provided in self.uses)
        elif service.networks:
            self.issues.append(
                self._issue(
                    (*base, "networks"),
                    "a service on the host's network joins no other network; remove `networks:`",
                )
            )
        health = None
        if service.healthcheck is not None:
            test = service.healthcheck.test
            if isinstance(test, str):
                test = self._text(test, (*base, "healthcheck", "test"))
            elif test is not None:
                test = [
                    self._text(t, (*base, "healthcheck", "test", i)) for i, t in enumerate(test)
                ]
            try:
                health = parse_healthcheck(service.healthcheck, test)
            except ValueError as exc:
                self.issues.append(self._issue((*base, "healthcheck", "test"), str(exc)))

        limits = service.deploy.resources.limits if service.deploy else Limits()
        container = ContainerSpec(
            installation=self.name,
            service=service_name,
            name=f"{self.name}-{service_name}",
            image=image,
            command=self._command(service.command, (*base, "command")),
            entrypoint=self._command(service.entrypoint, (*base, "entrypoint")),
            environment=environment,
            ports=tuple(ports),
            mounts=tuple(mounts),
            files=tuple(files),
            build=build,
            secret_files=self._secret_files(service, compose, base),
            healthcheck=health,
            restart=service.restart,
            labels=labels,
            networks=attached,
            init=service.init,
            user=self._optional(service.user, (*base, "user")),
            working_dir=self._optional(service.working_dir, (*base, "working_dir")),
            depends_on=tuple(sorted(service.dependencies().items())),
            device_requests=device_requests(
                service,
                lambda value, path: self._text(value, (*base, *path)),
                lambda path, message: self.issues.append(self._issue((*base, *path), message)),
            ),
            expose=tuple(
                port
                for ports in self._each(service.expose, (*base, "expose"), parse_expose)
                for port in ports
            ),
            hostname=self._optional(service.hostname, (*base, "hostname")),
            platform=platform,
            stop_signal=self._optional(service.stop_signal, (*base, "stop_signal")),
            stop_grace_period=service.stop_grace_period,
            stdin_open=service.stdin_open,
            tty=service.tty,
            cpus=self._limit(service.cpus, limits.cpus, base, ("cpus", "cpus"), parse_cpus),
            memory=self._limit(
                service.mem_limit, limits.memory, base, ("mem_limit", "memory"), parse_bytes
            ),
            pids=self._limit(
                service.pids_limit, limits.pids, base, ("pids_limit", "pids"), parse_count
            ),
            extra_hosts=self._extra_hosts(service, base),
            dns=self._each(service.dns, (*base, "dns"), check_ip_address),
            tmpfs=self._each(service.tmpfs, (*base, "tmpfs"), parse_tmpfs),
            shm_size=self._parsed(service.shm_size, (*base, "shm_size"), parse_bytes),
            ulimits=tuple(
                Ulimit(name, limit, limit)
                if isinstance(limit, int)
                else Ulimit(name, limit.soft, limit.hard)
                for name, limit in sorted(service.ulimits.items())
            ),
            logging=self._logging(service, base),
            read_only=service.read_only,
            cap_drop=self._each(service.cap_drop, (*base, "cap_drop"), str),
            security_opt=self._each(
                service.security_opt, (*base, "security_opt"), parse_security_opt
            ),
            domainname=self._optional(service.domainname, (*base, "domainname")),
            dns_search=self._each(service.dns_search, (*base, "dns_search"), str),
            dns_opt=self._each(service.dns_opt, (*base, "dns_opt"), str),
            network_mode=service.network_mode,
            privileged=service.privileged,
            cap_add=self._each(service.cap_add, (*base, "cap_add"), str),
            devices=self._each(
                [d if isinstance(d, str) else _device_text(d) for d in service.devices],
                (*base, "devices"),
                parse_device,
            ),
            sysctls=self._sysctls(service, base),
            pid_mode=service.pid,
            ipc_mode=service.ipc,
            swarm=self._swarm(service, base),
        )
        self._check_grants(container, base)
        self._secrets_stay_inside(container, base)
        return container

    def _image(
        self, service_name: str, service: Service, base: Path, platform: str | None
    ) -> tuple[str, BuildSpec | None]:
        """The image the service runs: its `image:`, or the tag of its `build:`."""
        image = self._optional(service.image, (*base, "image"))
        if image is not None:
            try:
                check_image(image)
            except ValueError as exc:
                self.issues.append(self._issue((*base, "image"), str(exc)))
        if service.build is None:
            assert image is not None  # the Service model asks for one of image and build
            return image, None
        build = self._build(service.build, (*base, "build"), platform, image)
        if build is None:  # the issue is recorded
            return image or "", None
        return build_tag(self.name, service_name, build), build

    def _build(
        self, given: str | Build, path: Path, platform: str | None, image: str | None
    ) -> BuildSpec | None:
        """The service's `build:`, its context read from the installation's folder."""
        build = given if isinstance(given, Build) else Build(context=given)
        at = path if isinstance(given, str) else (*path, "context")
        context = self._text(build.context, at)
        folder = f"{self.files.folder.parent.name}/{self.files.folder.name}/"
        if is_remote(context):
            self.issues.append(
                self._issue(
                    at,
                    f"{excerpt(context)} is a remote build context, which Nebula does not "
                    f"fetch; put the sources in a folder of {folder} and give its path",
                )
            )
            return None
        try:
            entries = self.files.read(read_context, context)
        except ValueError as exc:
            self.issues.append(self._issue(at, str(exc)))
            return None
        dockerfile = self._text(build.dockerfile, (*path, "dockerfile"))
        name = posixpath.normpath(dockerfile)
        if not any(e.path == name and e.content is not None for e in entries):
            self.issues.append(
                self._issue(
                    at if isinstance(given, str) else (*path, "dockerfile"),
                    f"no Dockerfile {excerpt(dockerfile)} in the build context "
                    f"{excerpt(context)}; add it to that folder, or give `dockerfile:` the "
                    "path of one inside it",
                )
            )
            return None
        return BuildSpec(
            context,
            entries,
            name,
            self._build_args(build, (*path, "args")),
            self._optional(build.target, (*path, "target")),
            platform,
            image,
        )

    def _build_args(self, build: Build, path: Path) -> tuple[tuple[str, str], ...]:
        items: list[tuple[str, str | None, Path]]
        if isinstance(build.args, list):
            items = []
            for i, entry in enumerate(build.args):
                key, sep, value = entry.partition("=")
                items.append((key, value if sep else None, (*path, i)))
        else:
            items = [(key, value, (*path, key)) for key, value in build.args.items()]
        args = {}
        for key, raw, at in items:
            if raw is None:
                self.issues.append(self._issue(at, f"{key} has no value; write {key}=VALUE"))
                continue
            args[key] = self._text(raw, at)
            if MASK in args[key]:
                self.issues.append(
                    self._issue(
                        at,
                        "a secret cannot be a build argument: the image keeps its build "
                        "arguments in its history; pass the secret as environment instead",
                    )
                )
        return tuple(sorted(args.items()))

    def _check_grants(self, container: ContainerSpec, base: Path) -> None:
        """Each power over the host the service uses must be granted by the installation."""
        allowed = self.source.spec.allow
        for grant in container.grants:
            if grant in allowed:
                continue
            path = (*base, _GRANT_KEYS[grant])
            what = f"service {container.service!r} uses `{_GRANT_KEYS[grant]}`"
            if self.app_doc is not self.source.doc:  # a catalog package: granted where installed
                what += f" ({self.app_doc.file}:{self.app_doc.mark_for(path).line})"
                path = ("allow",) if "allow" in self.source.doc.data else ("package",)
            self.issues.append(
                self.source.doc.issue(
                    path,
                    f"{what}, a power over the host Nebula gives only when granted; add "
                    f"`allow: [{grant}]` to {self.source.doc.file} to grant it",
                )
            )

    def _sysctls(self, service: Service, base: Path) -> tuple[tuple[str, str], ...]:
        path: Path = (*base, "sysctls")
        if isinstance(service.sysctls, dict):
            pairs = [(k, v, (*path, k)) for k, v in service.sysctls.items()]
        else:
            pairs = [(*e.partition("=")[::2], (*path, i)) for i, e in enumerate(service.sysctls)]
        for key, value, at in pairs:
            if not key or not value:
                self.issues.append(self._issue(at, f"{excerpt(key)}: expected NAME=VALUE"))
        return tuple(sorted((key, self._text(value, at)) for key, value, at in pairs if value))

    def _secrets_stay_inside(self, container: ContainerSpec, base: Path) -> None:
        """Secrets reach a container as environment, command, entrypoint or healthcheck only:
        elsewhere (image, ports, volumes, labels, hostname, …) Docker would show them."""
        for key, value in container.summary().items():
            if key not in _SECRETS_GO_TO and MASK in str(value):
                self.issues.append(
                    self._issue(
                        (*base, key),
                        f"a secret cannot be used in {key}: pass it as environment "
                        "(or in command, entrypoint, healthcheck)",
                    )
                )

    def _optional(self, value: str | None, path: Path) -> str | None:
        return None if value is None else self._text(value, path)

    def _parsed(
        self, value: int | float | str | None, path: Path, parse: Callable[[str], _Parsed]
    ) -> _Parsed | None:
        """`value` interpolated and parsed, or None (absent, or wrong: the issue is recorded)."""
        if value is None:
            return None
        try:
            return parse(self._text(value, path) if isinstance(value, str) else str(value))
        except ValueError as exc:
            self.issues.append(self._issue(path, str(exc)))
            return None

    def _each(
        self, values: str | Sequence[int | str], path: Path, parse: Callable[[str], _Parsed]
    ) -> tuple[_Parsed, ...]:
        """Each entry of a list (or a lone string, as compose allows) parsed; wrong ones are
        recorded as issues and left out."""
        entries = (
            [(values, path)]
            if isinstance(values, str)
            else [(value, (*path, i)) for i, value in enumerate(values)]
        )
        parsed = (self._parsed(value, at, parse) for value, at in entries)
        return tuple(value for value in parsed if value is not None)

    def _limit(
        self,
        legacy: int | float | str | None,
        limit: int | float | str | None,
        base: Path,
        keys: tuple[str, str],
        parse: Callable[[str], _Parsed],
    ) -> _Parsed | None:
        """A limit given as the service's own key (`mem_limit`) or in `deploy.resources.limits`
        (`memory`); compose refuses both with different values, and so does Nebula."""
        old = self._parsed(legacy, (*base, keys[0]), parse)
        new = self._parsed(limit, (*base, "deploy", "resources", "limits", keys[1]), parse)
        if old is not None and new is not None and old != new:
            self.issues.append(
                self._issue(
                    (*base, keys[0]),
                    f"{keys[0]} differs from deploy.resources.limits.{keys[1]}; give one",
                )
            )
        return new if new is not None else old

    def _swarm(self, service: Service, base: Path) -> SwarmDeploy | None:
        """The Swarm-only keys of `deploy:`, or None when none is given (`checks` refuses
        them on a node that is not a swarm)."""
        deploy = service.deploy
        if deploy is None:
            return None
        path: Path = (*base, "deploy", "resources", "reservations")
        update, restart = deploy.update_config, deploy.restart_policy
        swarm = SwarmDeploy(
            replicas=deploy.replicas,
            update_config=UpdateConfig(
                update.parallelism,
                update.delay,
                update.order,
                update.failure_action,
                update.monitor,
            )
            if update
            else None,
            restart_policy=RestartPolicy(
                restart.condition, restart.delay, restart.max_attempts, restart.window
            )
            if restart
            else None,
            cpu_reservation=self._parsed(
                deploy.resources.reservations.cpus, (*path, "cpus"), parse_cpus
            ),
            memory_reservation=self._parsed(
                deploy.resources.reservations.memory, (*path, "memory"), parse_bytes
            ),
        )
        return None if swarm == SwarmDeploy() else swarm

    def _extra_hosts(self, service: Service, base: Path) -> tuple[str, ...]:
        path: Path = (*base, "extra_hosts")
        if isinstance(service.extra_hosts, list):
            entries = [(e, (*path, i)) for i, e in enumerate(service.extra_hosts)]
        else:
            entries = [
                (f"{host}={address}", (*path, host))
                for host, given in service.extra_hosts.items()
                for address in ([given] if isinstance(given, str) else given)
            ]
        return tuple(
            host for entry, at in entries if (host := self._parsed(entry, at, parse_extra_host))
        )

    def _logging(self, service: Service, base: Path) -> LogConfig | None:
        if service.logging is None:
            return None
        path: Path = (*base, "logging")
        options = service.logging.options.items()
        return LogConfig(
            self._optional(service.logging.driver, (*path, "driver")) or "json-file",
            tuple(sorted((k, self._text(v, (*path, "options", k))) for k, v in options)),
        )

    def _ports(self, service: Service, base: Path) -> list[PortBinding]:
        """Published ports, interpolated (short or long syntax) and parsed."""
        ports: list[PortBinding] = []
        for i, port in enumerate(service.ports):
            path = (*base, "ports", i)
            raw: int | str | PortMapping = port
            if isinstance(port, str):
                raw = self._text(port, path)
            elif isinstance(port, PortMapping):
                raw = self._fields(port, path)
            try:
                parsed = parse_ports(raw, self.config.defaults.bind_address)
                if isinstance(port, PortMapping) and port.mode is not None:
                    parsed = [dataclasses.replace(p, mode=port.mode) for p in parsed]
                ports += parsed
            except ValueError as exc:
                self.issues.append(self._issue((*base, "ports", i), str(exc)))
        return ports

    def _fields(self, value: _Model, path: Path) -> _Model:
        """A long-form port or volume with each text field interpolated, as compose does."""
        texts = {
            key: self._text(field, (*path, key))
            for key, field in value.model_dump(exclude_none=True).items()
            if isinstance(field, str)
        }
        return value.model_copy(update=texts)

    def _command(self, value: str | list[str] | None, path: Path) -> tuple[str, ...] | None:
        if value is None:
            return None
        if isinstance(value, str):
            try:
                return split_command(self._text(value, path))
            except ValueError as exc:
                self.issues.append(self._issue(path, f"cannot split command: {exc}"))
                return None
        return tuple(self._text(part, (*path, i)) for i, part in enumerate(value))

    def _environment(self, service: Service, base: Path) -> tuple[tuple[str, str], ...]:
        """`env_file:` entries, then `environment:`, which wins (as compose)."""
        env = self._env_files(service, base)
        items: Iterable[tuple[str, str | None, Path]]
        if isinstance(service.environment, list):
            pairs = []
            for i, entry in enumerate(service.environment):
                key, sep, value = entry.partition("=")
                pairs.append((key, value if sep else None, (*base, "environment", i)))
            items = pairs
        else:
            items = [(k, v, (*base, "environment", k)) for k, v in service.environment.items()]
        for key, raw, path in items:
            if raw is None:
                self.issues.append(self._issue(path, f"{key} has no value; write {key}=VALUE"))
                continue
            env[key] = self._text(raw, path)
        return tuple(sorted(env.items()))

    def _mounts(
        self, service: Service, compose: Compose, base: Path, volumes: dict[str, VolumeSpec]
    ) -> tuple[list[Mount], list[RepoFile | RepoFolder]]:
        """The service's volumes (named volumes are added to `volumes`) and the files it
        takes from the installation's folder (`configs:`, relative bind mounts)."""
        mounts: list[Mount] = []
        files = self._configs(service, compose, base)
        for i, volume in enumerate(service.volumes):
            path = (*base, "volumes", i)
            raw_mount = (
                self._text(volume, path) if isinstance(volume, str) else self._fields(volume, path)
            )
            try:
                mount = parse_mount(raw_mount)
            except ValueError as exc:
                self.issues.append(self._issue((*base, "volumes", i), str(exc)))
                continue
            if mount.type == "bind" and not mount.source.startswith("/"):
                writable = (
                    raw_mount.endswith(":rw")
                    if isinstance(raw_mount, str)
                    else "read_only" in raw_mount.model_fields_set and not raw_mount.read_only
                )
                if writable:  # it would be mounted read-only: say so rather than surprise
                    self.issues.append(
                        self._issue(
                            path,
                            "a file from the installation's folder is always mounted read-only; "
                            "leave out `rw`, or keep data the app writes in a named volume",
                        )
                    )
                    continue
                files += self._repo_files(mount.source, mount.target, 0o444, path, bound=True)
                continue
            if mount.type == "volume":
                decl = compose.volumes.get(mount.source)
                external = decl is not None and decl.external
                docker_name = mount.source if external else f"{self.name}_{mount.source}"
                if decl is not None and decl.name:
                    docker_name = self._text(decl.name, ("compose", "volumes", mount.source))
                spec = VolumeSpec(
                    self.name,
                    docker_name,
                    (decl.driver if decl else None) or "local",
                    tuple(sorted(decl.driver_opts.items())) if decl else (),
                )
                if not external:  # an external volume is used, never created nor claimed
                    volumes.setdefault(mount.source, spec)
                mount = type(mount)(mount.type, spec.name, mount.target, mount.read_only)
            mounts.append(mount)
        return mounts, files

    def _configs(
        self, service: Service, compose: Compose, base: Path
    ) -> list[RepoFile | RepoFolder]:
        """The service's `configs:`: files of the installation's folder, read-only."""
        files: list[RepoFile | RepoFolder] = []
        for i, given in enumerate(service.configs):
            path: Path = (*base, "configs", i)
            entry = given if isinstance(given, ServiceConfig) else ServiceConfig(source=given)
            declared = compose.configs.get(entry.source)
            if declared is None:
                hint = _did_you_mean(entry.source, list(compose.configs))
                self.issues.append(
                    self._issue(
                        path,
                        f"config {excerpt(entry.source)} is not declared under compose.configs"
                        f"{hint}",
                    )
                )
                continue
            name = self._text(declared.file, ("compose", "configs", entry.source, "file"))
            target = self._optional(entry.target, (*path, "target")) or f"/{entry.source}"
            files += self._repo_files(name, target, entry.mode, path)
        return files

    def _secret_files(
        self, service: Service, compose: Compose, base: Path
    ) -> tuple[SecretFile, ...]:
        """The service's `secrets:`: vault secrets (or variables holding one) served as files.
        Their owner defaults to the service's numeric `user:`, so a non-root app can read them."""
        user, _, group = (self._optional(service.user, (*base, "user")) or "").partition(":")
        uid, gid = (part if part.isdecimal() else "0" for part in (user, group))
        files = []
        for i, given in enumerate(service.secrets):
            path: Path = (*base, "secrets", i)
            entry = given if isinstance(given, ServiceSecret) else ServiceSecret(source=given)
            declared = compose.secrets.get(entry.source)
            if declared is None:
                hint = _did_you_mean(entry.source, list(compose.secrets))
                self.issues.append(
                    self._issue(
                        path,
                        f"secret {excerpt(entry.source)} is not declared under compose.secrets"
                        f"{hint}",
                    )
                )
                continue
            where: Path = ("compose", "secrets", entry.source)
            if declared.environment is not None:
                value = self.values.get(declared.environment)
                if value is None:
                    self.issues.append(
                        self._issue(
                            (*where, "environment"),
                            f"{excerpt(declared.environment)} is not a variable of the "
                            f"installation{_did_you_mean(declared.environment, self.values)}",
                        )
                    )
                    continue
            else:
                name = self._optional(declared.name, (*where, "name")) or entry.source
                value = self._text(f"${{secret:{name}}}", where)
            target = self._optional(entry.target, (*path, "target")) or entry.source
            owner = [
                self._parsed(given or default, (*path, key), _user_id)
                for key, given, default in (("uid", entry.uid, uid), ("gid", entry.gid, gid))
            ]
            files.append(
                SecretFile(
                    source=entry.source,
                    target=target if target.startswith("/") else f"/run/secrets/{target}",
                    uid=owner[0] or 0,
                    gid=owner[1] or 0,
                    mode=entry.mode,
                    value=value,
                )
            )
        return tuple(files)

    def _repo_files(
        self, name: str, target: str, mode: int, path: Path, *, bound: bool = False
    ) -> list[RepoFile | RepoFolder]:
        """The file `name` of the installation's folder (or, `bound` by a relative bind mount,
        the file or folder), to mount at `target` (none when it cannot be read: the issue is
        recorded)."""
        if not target.startswith("/"):
            self.issues.append(
                self._issue(path, f"target {excerpt(target)} must be an absolute path")
            )
            return []
        try:
            tree = self.files.read(read_repo_tree, name) if bound else None
            if tree is not None:
                return [RepoFolder(name, target, tree)]
            return [RepoFile(name, target, mode, self.files.read(read_repo_file, name))]
        except MissingFileError as exc:
            hint = _named_volume_hint(name, target) if bound else ""
            self.issues.append(self._issue(path, f"{exc}{hint}"))
        except ValueError as exc:
            self.issues.append(self._issue(path, str(exc)))
        return []

    def _env_files(self, service: Service, base: Path) -> dict[str, str]:
        """The variables of the service's env files, in order (a later file wins)."""
        files = [service.env_file] if isinstance(service.env_file, str) else service.env_file
        env: dict[str, str] = {}
        for i, given in enumerate(files):
            path: Path = (*base, "env_file", *([i] if isinstance(service.env_file, list) else []))
            entry = given if isinstance(given, EnvFile) else EnvFile(path=given)
            name = self._text(entry.path, path)
            try:
                data = self.files.read(read_repo_file, name)
            except ValueError as exc:
                if entry.required or not isinstance(exc, MissingFileError):
                    self.issues.append(self._issue(path, str(exc)))
                continue
            try:
                entries = parse_env_file(data.decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                self.issues.append(self._issue(path, f"{excerpt(name)}: {exc}"))
                continue
            for var in entries:
                if var.value is None:
                    self.issues.append(
                        self._issue(
                            path,
                            f"{excerpt(name)} line {var.line}: {var.key} has no value; "
                            f"write {var.key}=VALUE",
                        )
                    )
                else:
                    env[var.key] = var.value if var.literal else self._text(var.value, path, env)
        return env

    def _labels(self, service: Service, base: Path) -> tuple[tuple[str, str], ...]:
        if isinstance(service.labels, list):
            pairs = [entry.partition("=")[::2] for entry in service.labels]
        else:
            pairs = list(service.labels.items())
        labels = {}
        for key, value in pairs:
            if key.startswith(RESERVED_LABEL_PREFIX):
                self.issues.append(
                    self._issue(
                        (*base, "labels"),
                        f"label {excerpt(key)}: {RESERVED_LABEL_PREFIX}* is reserved",
                    )
                )
            labels[key] = self._text(value, (*base, "labels"))
        return tuple(sorted(labels.items()))

    def _attachments(
        self, service_name: str, service: Service, networks: dict[str, NetworkSpec], base: Path
    ) -> tuple[tuple[str, tuple[str, ...]], ...]:
        wanted: dict[str, list[str]]
        if isinstance(service.networks, list):
            wanted = {name: [] for name in service.networks}
        else:
            wanted = {k: (v.aliases if v else []) for k, v in service.networks.items()}
        if not wanted:
            wanted = {DEFAULT_NETWORK: []}
        attached = []
        for net_name, aliases in wanted.items():
            if net_name not in networks:
                hint = _did_you_mean(net_name, list(networks))
                self.issues.append(
                    self._issue(
                        (*base, "networks"),
                        f"network {excerpt(net_name)} is not declared under compose.networks{hint}",
                    )
                )
                continue
            # a compose `container_name` is one more alias: the container is named by Nebula
            named = self._optional(service.container_name, (*base, "container_name"))
            names = [service_name, *([named] if named else []), *aliases]
            attached.append((networks[net_name].name, tuple(dict.fromkeys(names))))
        return tuple(attached)

    def _check_container_names(self, compose: Compose) -> None:
        """Two services may not share a `container_name`: as compose, one name, one container."""
        first: dict[str, str] = {}
        for name, service in compose.services.items():
            if service.container_name is None:
                continue
            other = first.setdefault(service.container_name, name)
            if other != name:
                self.issues.append(
                    self._issue(
                        ("compose", "services", name, "container_name"),
                        f"service {other!r} has this container_name too; give each its own",
                    )
                )

    def _check_dependencies(self, compose: Compose) -> None:
        services = compose.services
        graph = {name: list(s.dependencies()) for name, s in services.items() if not s.profiles}
        for name, deps in graph.items():
            for dep in deps:
                if dep in services and dep not in graph:
                    self.issues.append(
                        self._issue(
                            ("compose", "services", name, "depends_on"),
                            f"service {excerpt(dep)} has `profiles:`, so it is not started "
                            "(as compose, without a profile asked for); remove its `profiles:`",
                        )
                    )
                elif dep not in graph:
                    hint = _did_you_mean(dep, list(graph))
                    self.issues.append(
                        self._issue(
                            ("compose", "services", name, "depends_on"),
                            f"no service {excerpt(dep)}{hint}",
                        )
                    )
        cycle = find_cycle(graph)
        if cycle:
            self.issues.append(
                self._issue(
                    ("compose", "services", cycle[0], "depends_on"),
                    "dependency cycle: " + " → ".join([*cycle, cycle[0]]),
                )
            )


def _named_volume_hint(source: str, target: str) -> str:
    """For a missing relative bind that looks like a data folder (`./data`, no file suffix):
    where such data belongs instead."""
    name = pathlib.PurePosixPath(source).name
    if pathlib.PurePosixPath(name).suffix:
        return ""
    volume = name if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) else "data"
    return f"; keep data the app writes in a named volume (`{volume}:{target}`)"


def _device_text(device: DeviceMapping) -> str:
    """The long device syntax written short, to be interpolated and parsed as one."""
    return f"{device.source}:{device.target or device.source}:{device.permissions}"


def find_cycle(graph: dict[str, list[str]]) -> list[str]:
    """One cycle of `graph` (node → nodes it depends on), or an empty list."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for dep in graph.get(node, []):
            if state.get(dep) == 1:
                return stack[stack.index(dep) :]
            if dep in graph and dep not in state:
                found = visit(dep)
                if found:
                    return found
        state[node] = 2
        stack.pop()
        return []

    for node in graph:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def _used_variables(app: AppDefinition) -> set[str]:
    used: set[str] = set()
    for text in _strings(app.compose.model_dump()):
        used.update(_names(text))
    for text in _strings([c.model_dump() for c in app.health_checks]):
        used.update(_names(text))
    for text in _strings(app.hooks.model_dump()):
        used.update(_names(text))
    return used


def _names(text: str) -> set[str]:
    try:
        return {name for name, _ in references(text)}
    except InterpolationError:
        return set()


def _strings(data: Any) -> Iterable[str]:
    if isinstance(data, str):
        yield data
    elif isinstance(data, dict):
        for value in data.values():
            yield from _strings(value)
    elif isinstance(data, list):
        for value in data:
            yield from _strings(value)


def _clashes(desired: Sequence[DesiredInstallation]) -> list[ConfigIssue]:
    """Two installations whose container names collide (`a-b` + `c` vs `a` + `b-c`)."""
    seen: dict[str, str] = {}
    issues = []
    for inst in desired:
        for container in inst.containers:
            other = seen.setdefault(container.name, inst.source)
            if other != inst.source:
                issues.append(
                    ConfigIssue(
                        inst.source,
                        1,
                        1,
                        "name",
                        f"container name {container.name!r} is also used by {other}",
                    )
                )
    return issues


def _user_id(text: str) -> int:
    """A numeric user or group id (a secret's owner); a name cannot be looked up on the host."""
    if not text.isdecimal():
        raise ValueError(
            f"{excerpt(text)} is not a numeric id: give the owner of the secret's file as a "
            'number (`uid: "1000"`)'
        )
    return int(text)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class _SecretRefs(Mapping[str, str]):
    """Secret name -> stand-in, remembering which names were looked up (the ones used)."""

    def __init__(self, stand_ins: Mapping[str, str]) -> None:
        self._stand_ins = stand_ins
        self._used: set[str] = set()

    def __getitem__(self, name: str) -> str:
        value = self._stand_ins[name]
        self._used.add(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._stand_ins)

    def __len__(self) -> int:
        return len(self._stand_ins)

    def used(self) -> tuple[tuple[str, str], ...]:
        """(name, fingerprint) of each secret used, by name."""
        return tuple((n, self._stand_ins[n][len(MASK) :]) for n in sorted(self._used))


class _AnySecret(dict[str, str]):
    """Every secret name exists, with a blank fingerprint: for checks made without a vault."""

    def __missing__(self, name: str) -> str:
        return stand_in("0" * 12)
