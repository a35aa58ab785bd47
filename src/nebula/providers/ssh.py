"""Run one command on a node over SSH (paramiko): runbooks' `ssh` action.

The node's host key must already be in its `known_hosts` file: an unknown key is refused with
its fingerprint (never added on first use), a changed one too. Login is by key only, from the
node's `key_file` or the ssh agent. Errors name the node, user, address and key file, never key
material; paramiko's own log lines carry no secrets either (key fingerprints at most).
"""

from __future__ import annotations

import os
import time

import paramiko

from nebula.errors import ProviderError
from nebula.spec.config import Node

KEEP = 64 * 1024  # bytes of output kept: the last ones, where a failure says why


class _Refuse(paramiko.MissingHostKeyPolicy):
    """An unknown host key ends the connection, naming the key so a person can check it."""

    def __init__(self, node: Node, known_hosts: str) -> None:
        self.node = node
        self.known_hosts = known_hosts

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        ssh = self.node.ssh
        missing = "" if os.path.exists(self.known_hosts) else " (the file does not exist)"
        raise ProviderError(
            _where(self.node),
            f"host key {key.get_name()} {key.fingerprint} is unknown: it is not in "
            f"{self.known_hosts}{missing}. Nothing was run. If that is the node's key (check with "
            f"`ssh-keygen -lf /etc/ssh/ssh_host_{_short(key)}_key.pub` on it), add it: "
            f"ssh-keyscan -p {ssh.port} -t {_short(key)} {self.node.address} >> {self.known_hosts}",
            temporary=False,
        )


def run_command(node: Node, command: str, timeout: float) -> tuple[int, str]:
    """Run `command` on `node` with its user's shell; its exit code and its output (stdout
    and stderr as they came, the last `KEEP` bytes, trimmed). `ProviderError` when it could not
    run or did not end within `timeout` seconds (connecting included)."""
    deadline = time.monotonic() + timeout
    known_hosts = os.path.expanduser(node.ssh.known_hosts)
    client = paramiko.SSHClient()
    try:
        if os.path.exists(known_hosts):
            client.load_system_host_keys(known_hosts)
        client.set_missing_host_key_policy(_Refuse(node, known_hosts))
        _connect(client, node, known_hosts, timeout)
        return _execute(client, node, command, deadline, timeout)
    finally:
        client.close()


def _key(node: Node) -> paramiko.PKey | None:
    """The node's key_file, read; None to log in with the ssh agent's keys."""
    key_file = node.ssh.key_file
    if key_file is None:
        if not os.environ.get("SSH_AUTH_SOCK"):
            raise ProviderError(
                _where(node),
                "no key_file is set and no ssh agent runs for nebulad (SSH_AUTH_SOCK is unset): "
                "set the node's ssh.key_file",
                temporary=False,
            )
        return None
    try:
        return paramiko.PKey.from_path(os.path.expanduser(key_file))
    except OSError as exc:
        cause = exc.strerror
    except TypeError:  # what cryptography raises for a key that needs a passphrase
        cause = (
            "it is encrypted: add it to the ssh agent and leave key_file unset, or give an "
            "unencrypted key readable only by nebulad's user"
        )
    except (ValueError, paramiko.SSHException):
        cause = "not a private key (OpenSSH or PEM; ed25519, ecdsa or rsa)"
    raise ProviderError(_where(node), f"key_file {key_file}: {cause}", temporary=False)


def _connect(client: paramiko.SSHClient, node: Node, known_hosts: str, timeout: float) -> None:
    ssh = node.ssh
    key = _key(node)
    try:
        client.connect(
            str(node.address),
            port=ssh.port,
            username=ssh.user,
            pkey=key,
            allow_agent=key is None,
            look_for_keys=False,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            channel_timeout=timeout,
        )
    except paramiko.BadHostKeyException as exc:
        raise ProviderError(
            _where(node),
            f"host key {exc.key.get_name()} {exc.key.fingerprint} is not the one {known_hosts} "
            f"holds ({exc.expected_key.fingerprint}): refused, nothing was run. If the node was "
            "reinstalled, replace its line there after checking the new key",
            temporary=False,
        ) from None
    except paramiko.AuthenticationException:
        by = f"key_file {ssh.key_file}" if key else "the ssh agent's keys (no key_file)"
        raise ProviderError(
            _where(node),
            f"login as {ssh.user} refused with {by}: put the public key in that user's "
            "~/.ssh/authorized_keys on the node, or set the node's ssh.user/key_file",
            temporary=False,
        ) from None
    except TimeoutError:
        raise ProviderError(_where(node), f"timed out after {timeout:g}s connecting") from None
    except (paramiko.SSHException, OSError) as exc:
        cause = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise ProviderError(_where(node), f"cannot connect: {cause}") from None


def _execute(
    client: paramiko.SSHClient, node: Node, command: str, deadline: float, timeout: float
) -> tuple[int, str]:
    transport = client.get_transport()
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
        raise ProviderError(_where(node), f"timed out after {timeout:g}s{said}") from None
    except paramiko.SSHException as exc:
        raise ProviderError(_where(node), f"the command did not run: {exc}") from None
    return channel.recv_exit_status(), _text(output)


def _recv(channel: paramiko.Channel, deadline: float) -> bytes:
    """The next output; empty at its end. `TimeoutError` once the deadline passes."""
    channel.settimeout(_left(deadline))
    return channel.recv(32768)


def _text(output: bytes) -> str:
    return output.decode(errors="replace").strip()


def _left(deadline: float) -> float:
    return max(0.01, deadline - time.monotonic())


def _where(node: Node) -> str:
    return f"node {node.name} ({node.ssh.user}@{node.address}:{node.ssh.port})"


def _short(key: paramiko.PKey) -> str:
    """The key's type as ssh-keyscan and the host key files name it: ed25519, ecdsa, rsa."""
    name = key.get_name()
    return "ecdsa" if name.startswith("ecdsa") else name.removeprefix("ssh-")
