"""`nebula node add`: make a host over SSH a node running its own nebulad.

The steps, each recorded as it is done: log in (the host key verified: known_hosts or the
fingerprint given); check the host (Docker answering, Python >= 3.11, systemd) and that nothing
of a former install is in the way; upload the wheel of this Nebula over SFTP and install it in
a venv that reuses the host's Python packages (`--system-site-packages`); write the node's
settings (source, branch, node name, database URL; mode 0600) and its service token, which the
operator's daemon creates; install the systemd unit (`nebulad/nebulad.service`, its paths made
this install's) and start it; wait until the node's first heartbeat shows in the operator's
daemon's `GET /nodes`.

A step that fails undoes what was done, newest first (the unit stopped and removed, the files
and folders made removed, the token revoked); whatever cannot be undone is named in the error,
so nothing is left on the host unsaid. Nothing is changed before the checks pass.
"""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from nebula.errors import NebulaError, ProviderError
from nebula.paths import nebulad_unit_file

if TYPE_CHECKING:
    from nebula.providers.ssh import Remote

UNIT = "nebulad.service"
MIN_PYTHON = (3, 11)
COMMAND_TIMEOUT = 600.0  # seconds one command on the host may take (pip install)


class BootstrapError(NebulaError):
    """`node add` failed: what failed, and what was undone or is left on the host."""


@dataclass(frozen=True)
class NodeSetup:
    """What `node add` installs, and where. `root` prefixes every path on the host ("/" for
    a real install; a folder for a test or a chroot)."""

    name: str
    source: str
    branch: str
    database_url: str
    root: str = "/"

    def path(self, *parts: str) -> str:
        return str(Path(self.root, *parts))

    @property
    def prefix(self) -> str:
        return self.path("opt", "nebula")

    @property
    def etc(self) -> str:
        return self.path("etc", "nebula")

    @property
    def unit_file(self) -> str:
        return self.path("etc", "systemd", "system", UNIT)

    @property
    def data_dir(self) -> str:
        return self.path("var", "lib", "nebula")


@dataclass
class Cluster:
    """What the operator's daemon does for a bootstrap: a node's service token (its id and
    the token), revoking it, and the nodes as `GET /nodes` lists them."""

    create_token: Callable[[str], tuple[str, str]]
    revoke_token: Callable[[str], None]
    nodes: Callable[[], list[dict[str, object]]]


@dataclass
class _Undo:
    what: str  # what was done, as the report says it
    undo: Callable[[], object]


@dataclass
class Bootstrap:
    """One `node add` run on a logged-in host (`remote`: `providers.ssh.Remote`)."""

    setup: NodeSetup
    remote: Remote
    cluster: Cluster
    report: Callable[[str], None]
    done: list[_Undo] = field(default_factory=list)

    def run(self, wheel: Path, heartbeat_timeout: float) -> None:
        try:
            self._check()
            self._install(wheel)
            self._configure()
            self._start()
            self._wait_for_heartbeat(heartbeat_timeout)
        except NebulaError as exc:
            left = self._undo()
            after = "; ".join(left) if left else "the host is as it was"
            raise BootstrapError(f"node {self.setup.name}: {exc}. Undone: {after}") from None

    # -- the steps -------------------------------------------------------------------------

    def _check(self) -> None:
        setup = self.setup
        docker = self._run("docker version --format '{{.Server.Version}}'", "Docker")
        self.report(f"Docker Engine {docker} answers")
        python = self._run(
            "python3 -c 'import sys; print(\"%d.%d.%d\" % sys.version_info[:3])'", "Python"
        )
        if tuple(int(p) for p in python.split(".")[:2]) < MIN_PYTHON:
            raise BootstrapError(f"Python {python} is too old: nebulad needs 3.11 or newer")
        self.report(f"Python {python}")
        self._run("systemctl --version", "systemd (systemctl)")
        self.report("systemd present")
        found = [p for p in (setup.prefix, setup.etc, setup.unit_file) if self._exists(p)]
        if found:
            raise BootstrapError(
                f"{', '.join(found)} exist on the host already (a former install?): remove "
                "them, or stop that node's nebulad first; nothing was changed"
            )

    def _install(self, wheel: Path) -> None:
        setup = self.setup
        self._mkdir(setup.prefix)
        remote_wheel = f"{setup.prefix}/{wheel.name}"
        self.remote.put(wheel.read_bytes(), remote_wheel, 0o644)
        self.report(f"uploaded {wheel.name}")
        venv = f"{setup.prefix}/venv"
        self._run(f"python3 -m venv --system-site-packages {shlex.quote(venv)}", "a venv")
        pip = f"{shlex.quote(venv)}/bin/python -m pip install --disable-pip-version-check -q"
        self._run(f"{pip} {shlex.quote(remote_wheel)}", f"installing {wheel.name}")
        self.report(f"installed Nebula in {venv}")

    def _configure(self) -> None:
        setup = self.setup
        token_id, token = self.cluster.create_token(setup.name)
        self.done.append(
            _Undo(f"service token {token_id}", lambda: self.cluster.revoke_token(token_id))
        )
        self.report(f"service token {token_id} created for node {setup.name}")
        self._mkdir(setup.etc, mode=0o700)
        settings = "".join(
            f"NEBULA_{key}={value}\n"
            for key, value in (
                ("SOURCE", setup.source),
                ("BRANCH", setup.branch),
                ("NODE", setup.name),
                ("DATABASE_URL", setup.database_url),
            )
        )
        self._put(f"{setup.etc}/nebulad.env", settings.encode(), 0o600)
        self._put(f"{setup.etc}/node.token", f"{token}\n".encode(), 0o600)
        self.report(f"settings written to {setup.etc}/nebulad.env (mode 0600)")

    def _start(self) -> None:
        setup = self.setup
        self._mkdir(str(Path(setup.unit_file).parent))
        self._put(setup.unit_file, unit_text(setup).encode(), 0o644)
        self._mkdir(setup.data_dir, 0o700)  # the node's state: removed again on failure
        self._run("systemctl daemon-reload", "systemctl daemon-reload")
        self._run(f"systemctl enable --now {UNIT}", f"starting {UNIT}")
        self.done.append(
            _Undo(f"{UNIT} started", lambda: self._run(f"systemctl disable --now {UNIT}", UNIT))
        )
        self.report(f"{UNIT} enabled and started")

    def _wait_for_heartbeat(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for node in self.cluster.nodes():
                if node.get("name") == self.setup.name and node.get("state") == "up":
                    self.report(f"node {self.setup.name} sends heartbeats")
                    return
            code, state = self.remote.run(f"systemctl is-active {UNIT}", 30.0)
            if code != 0 and state.strip() not in ("activating", "reloading"):
                raise BootstrapError(f"{UNIT} did not start (systemctl is-active: {state})")
            if time.monotonic() > deadline:
                raise BootstrapError(
                    f"no heartbeat from node {self.setup.name} within {timeout:g}s: is "
                    f"database_url right as the node reaches it? (journalctl -u {UNIT} on it)"
                )
            time.sleep(1.0)

    # -- helpers ---------------------------------------------------------------------------

    def _run(self, command: str, what: str) -> str:
        try:
            code, output = self.remote.run(command, COMMAND_TIMEOUT)
        except ProviderError as exc:
            raise BootstrapError(f"{what}: {exc.cause}") from None
        if code != 0:
            raise BootstrapError(f"{what}: `{command}` failed ({code}): {output[-500:]}")
        return output

    def _exists(self, path: str) -> bool:
        code, _ = self.remote.run(f"test -e {shlex.quote(path)}", 30.0)
        return code == 0

    def _mkdir(self, path: str, mode: int = 0o755) -> None:
        """Make `path` (and its parents); the undo removes the topmost folder it made."""
        missing = path
        while not self._exists(str(Path(missing).parent)):
            missing = str(Path(missing).parent)
        if self._exists(missing):
            return
        self._run(f"mkdir -p -m {mode:o} {shlex.quote(path)}", f"creating {path}")
        self.done.append(
            _Undo(f"{missing} created", lambda: self._run(f"rm -rf {shlex.quote(missing)}", "rm"))
        )

    def _put(self, path: str, data: bytes, mode: int) -> None:
        self.remote.put(data, path, mode)
        self.done.append(
            _Undo(f"{path} written", lambda: self._run(f"rm -f {shlex.quote(path)}", "rm"))
        )

    def _undo(self) -> list[str]:
        """Undo what was done, newest first; what could not be undone, said exactly."""
        left = []
        for step in reversed(self.done):
            try:
                step.undo()
                self.report(f"undone: {step.what}")
            except NebulaError as exc:
                left.append(f"{step.what} is left ({exc})")
        self.done.clear()
        return left


def unit_text(setup: NodeSetup) -> str:
    """`nebulad/nebulad.service` with this install's paths."""
    ours = {
        "EnvironmentFile": f"{setup.etc}/nebulad.env",
        "ExecStart": f"{setup.prefix}/venv/bin/nebulad --data-dir {setup.data_dir}",
    }
    lines = []
    for line in nebulad_unit_file().read_text().splitlines():
        key = line.partition("=")[0]
        lines.append(f"{key}={ours[key]}" if key in ours else line)
    return "\n".join(lines) + "\n"


def build_wheel(into: Path) -> Path:
    """A wheel of the running Nebula, built from its source checkout with pip (`pip wheel
    --no-deps`); `BootstrapError` when it was installed from a wheel (give it with --wheel).
    With the build backend (hatchling) installed beside Nebula it builds with it, offline;
    else pip fetches it into an isolated build environment."""
    project = Path(__file__).resolve().parents[3]
    if not (project / "pyproject.toml").is_file():
        raise BootstrapError(
            "this Nebula was not installed from a source checkout: give its wheel with --wheel"
        )
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q"]
    if importlib.util.find_spec("hatchling") is not None:
        command.append("--no-build-isolation")
    done = subprocess.run(
        [*command, "-w", str(into), str(project)], capture_output=True, text=True, check=False
    )
    wheels = sorted(into.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        raise BootstrapError(f"building the wheel of {project} failed: {done.stderr[-800:]}")
    return wheels[0]


def masked_url(url: str) -> str:
    """A database URL with its password hidden, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":••••@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def add_node(
    setup: NodeSetup,
    ssh: str,
    cluster: Cluster,
    report: Callable[[str], None],
    *,
    key_file: str | None = None,
    known_hosts: str = "~/.ssh/known_hosts",
    host_key: str | None = None,
    wheel: Path | None = None,
    heartbeat_timeout: float = 120.0,
) -> None:
    """Bootstrap `setup.name` on the host `ssh` (`user@host[:port]`) names, logging in with
    `key_file` (else the ssh agent), its host key in `known_hosts` or `host_key` (see the
    module's docstring)."""
    from nebula.providers.ssh import Remote
    from nebula.providers.sshlogin import SshTarget

    login = urlsplit(f"ssh://{ssh}")
    if not login.username or not login.hostname:
        raise BootstrapError(f"--ssh {ssh!r}: give user@host or user@host:port")
    target = SshTarget(
        f"host of node {setup.name}",
        login.hostname,
        login.port or 22,
        login.username,
        key_file,
        known_hosts,
        host_key,
    )
    names = [n.get("name") for n in cluster.nodes()]
    if setup.name not in names:
        listed = ", ".join(str(n) for n in names)
        raise BootstrapError(
            f"no node {setup.name!r} in nebula.yaml's nodes ({listed}): add it there (its "
            "address and labels), commit and push, then run node add again"
        )
    with tempfile.TemporaryDirectory(prefix="nebula-wheel-") as folder:
        wheel = wheel or build_wheel(Path(folder))
        with Remote(target, 30.0) as remote:
            report(f"logged in to {target.where}; host key verified")
            Bootstrap(setup, remote, cluster, report).run(wheel, heartbeat_timeout)
