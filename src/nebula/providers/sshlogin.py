"""Logging in over SSH with paramiko, the host verified first: what every SSH user shares (a
runbook's command on a node, a Docker Engine reached over `ssh://`, `nebula node add`).

The host's key must be in the target's `known_hosts` file, or match the SHA256 fingerprint
given for it: an unknown key is refused with its fingerprint (never added on first use), a
changed one too. Login is by key only, from `key_file` or the ssh agent. Errors name the target,
user, address and key file, never key material; paramiko's own log lines carry no secrets either
(key fingerprints at most).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import paramiko

from nebula.errors import ProviderError


@dataclass(frozen=True)
class SshTarget:
    """Where to log in, as whom, and how the host is recognised."""

    what: str  # who the host is to the user, for messages: "node lab", "Docker Engine"
    host: str
    port: int = 22
    user: str = "root"
    key_file: str | None = None  # unset: the ssh agent's keys
    known_hosts: str = "~/.ssh/known_hosts"
    host_key: str | None = None  # "SHA256:...": accepted instead of known_hosts

    @property
    def where(self) -> str:
        return f"{self.what} ({self.user}@{self.host}:{self.port})"


class _Refuse(paramiko.MissingHostKeyPolicy):
    """A key that is neither known nor the fingerprint given ends the connection, naming the
    key so a person can check it."""

    def __init__(self, target: SshTarget, known_hosts: str) -> None:
        self.target = target
        self.known_hosts = known_hosts

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        target = self.target
        if target.host_key is not None:
            if key.fingerprint == target.host_key:
                return
            raise ProviderError(
                target.where,
                f"host key {key.get_name()} {key.fingerprint} is not the fingerprint given "
                f"({target.host_key}): refused, nothing was done. Check the host's key with "
                f"`ssh-keygen -lf /etc/ssh/ssh_host_{_short(key)}_key.pub` on it",
                temporary=False,
            )
        missing = "" if os.path.exists(self.known_hosts) else " (the file does not exist)"
        raise ProviderError(
            target.where,
            f"host key {key.get_name()} {key.fingerprint} is unknown: it is not in "
            f"{self.known_hosts}{missing}. Nothing was done. If that is the host's key (check "
            f"with `ssh-keygen -lf /etc/ssh/ssh_host_{_short(key)}_key.pub` on it), add it: "
            f"ssh-keyscan -p {target.port} -t {_short(key)} {target.host} >> {self.known_hosts}",
            temporary=False,
        )


def prepared(target: SshTarget) -> paramiko.SSHClient:
    """A client that knows the target's host keys and refuses any other; not connected."""
    known_hosts = os.path.expanduser(target.known_hosts)
    client = paramiko.SSHClient()
    if target.host_key is None and os.path.exists(known_hosts):
        client.load_system_host_keys(known_hosts)
    client.set_missing_host_key_policy(_Refuse(target, known_hosts))
    return client


def login(client: paramiko.SSHClient, target: SshTarget, timeout: float) -> None:
    """Connect `client` (from `prepared`) and log in; `ProviderError` saying why not."""
    key = _key(target)
    try:
        client.connect(
            target.host,
            port=target.port,
            username=target.user,
            pkey=key,
            allow_agent=key is None,
            look_for_keys=False,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            channel_timeout=timeout,
        )
    except paramiko.BadHostKeyException as exc:
        known_hosts = os.path.expanduser(target.known_hosts)
        raise ProviderError(
            target.where,
            f"host key {exc.key.get_name()} {exc.key.fingerprint} is not the one {known_hosts} "
            f"holds ({exc.expected_key.fingerprint}): refused, nothing was done. If the host was "
            "reinstalled, replace its line there after checking the new key",
            temporary=False,
        ) from None
    except paramiko.AuthenticationException:
        by = f"key_file {target.key_file}" if key else "the ssh agent's keys (no key_file)"
        raise ProviderError(
            target.where,
            f"login as {target.user} refused with {by}: put the public key in that user's "
            "~/.ssh/authorized_keys on the host, or set another user or key_file",
            temporary=False,
        ) from None
    except TimeoutError:
        raise ProviderError(target.where, f"timed out after {timeout:g}s connecting") from None
    except (paramiko.SSHException, OSError) as exc:
        cause = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise ProviderError(target.where, f"cannot connect: {cause}") from None


def connect(target: SshTarget, timeout: float) -> paramiko.SSHClient:
    """A client logged in to `target`; the caller closes it."""
    client = prepared(target)
    try:
        login(client, target, timeout)
    except BaseException:
        client.close()
        raise
    return client


def _key(target: SshTarget) -> paramiko.PKey | None:
    """The target's key_file, read; None to log in with the ssh agent's keys."""
    key_file = target.key_file
    if key_file is None:
        if not os.environ.get("SSH_AUTH_SOCK"):
            raise ProviderError(
                target.where,
                "no key_file is set and no ssh agent runs (SSH_AUTH_SOCK is unset): "
                "give a key_file",
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
            "unencrypted key readable only by its user"
        )
    except (ValueError, paramiko.SSHException):
        cause = "not a private key (OpenSSH or PEM; ed25519, ecdsa or rsa)"
    raise ProviderError(target.where, f"key_file {key_file}: {cause}", temporary=False)


def _short(key: paramiko.PKey) -> str:
    """The key's type as ssh-keyscan and the host key files name it: ed25519, ecdsa, rsa."""
    name = key.get_name()
    return "ecdsa" if name.startswith("ecdsa") else name.removeprefix("ssh-")
