"""Commands and files on a host over SSH (paramiko): runbooks' `ssh` action on a node, and what
`nebula node add` does on the host it bootstraps.

Logging in (host keys verified, keys only) is `sshlogin`'s. Errors name the host, user, address
and key file, never key material.
"""

from __future__ import annotations

import time

import paramiko

from nebula.errors import ProviderError
from nebula.providers.sshlogin import SshTarget, connect
from nebula.spec.config import Node

KEEP = 64 * 1024  # bytes of output kept: the last ones, where a failure says why


def node_target(node: Node) -> SshTarget:
    """How to reach a node of `nebula.yaml` by its `ssh:` settings."""
    ssh = node.ssh
    return SshTarget(
        f"node {node.name}", str(node.address), ssh.port, ssh.user, ssh.key_file, ssh.known_hosts
    )


def run_command(node: Node, command: str, timeout: float) -> tuple[int, str]:
    """Run `command` on `node` with its user's shell; its exit code and its output (stdout
    and stderr as they came, the last `KEEP` bytes, trimmed). `ProviderError` when it could not
    run or did not end within `timeout` seconds (connecting included)."""
    deadline = time.monotonic() + timeout
    with Remote(node_target(node), timeout) as remote:
        return remote.run(command, timeout, deadline=deadline)


class Remote:
    """One SSH connection to a host: commands run on it and files written to it (SFTP)."""

    def __init__(self, target: SshTarget, timeout: float) -> None:
        self.target = target
        self._client = connect(target, timeout)

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def run(
        self, command: str, timeout: float, *, deadline: float | None = None
    ) -> tuple[int, str]:
        """`command` with the user's shell: its exit code and output (stdout and stderr as
        they came, the last `KEEP` bytes, trimmed); `ProviderError` when it did not end within
        `timeout` seconds (or by `deadline`, a `time.monotonic()`, when given)."""
        deadline = deadline or time.monotonic() + timeout
        transport = self._client.get_transport()
        assert transport is not None  # connected
        output = b""
        try:
            channel = transport.open_session(timeout=_left(deadline))
            channel.set_combine_stderr(True)
            channel.exec_command(command)
            while chunk := _recv(channel, deadline):
                output = (output + chunk)[-KEEP:]
            if not channel.status_event.wait(_left(deadline)):
                raise TimeoutError
        except TimeoutError:
            printed = _text(output)[-500:]
            said = f"; it printed: {printed}" if printed else ""
            raise ProviderError(self.target.where, f"timed out after {timeout:g}s{said}") from None
        except paramiko.SSHException as exc:
            raise ProviderError(self.target.where, f"the command did not run: {exc}") from None
        return channel.recv_exit_status(), _text(output)

    def put(self, data: bytes, path: str, mode: int) -> None:
        """Write `data` to `path` on the host with `mode`, set before anything is written (a
        file of secrets is never readable by others, even for a moment)."""
        try:
            with self._client.open_sftp() as sftp, sftp.open(path, "wb") as remote:
                remote.chmod(mode)
                remote.set_pipelined(True)
                remote.write(data)
        except (OSError, paramiko.SSHException) as exc:
            cause = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise ProviderError(self.target.where, f"cannot write {path}: {cause}") from None


def _recv(channel: paramiko.Channel, deadline: float) -> bytes:
    """The next output; empty at its end. `TimeoutError` once the deadline passes."""
    channel.settimeout(_left(deadline))
    return channel.recv(32768)


def _text(output: bytes) -> str:
    return output.decode(errors="replace").strip()


def _left(deadline: float) -> float:
    return max(0.01, deadline - time.monotonic())
