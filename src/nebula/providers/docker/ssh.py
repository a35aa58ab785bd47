"""A Docker Engine reached over SSH (`ssh://user@host[:port]`), with Docker's own transport: an
HTTP connection is a channel running `docker system dial-stdio` on the host, as the docker CLI's
and the docker SDK's are.

The SDK's paramiko adapter trusts `~/.ssh/known_hosts` and `~/.ssh/config`, and multiplexes every
connection of up to nine pools over one login, past sshd's `MaxSessions` (10) once requests run
in parallel. Here each HTTP connection is its own login, like the docker CLI's `ssh` process:
the host key is checked against the node's own `known_hosts` (its `ssh:` settings) and an unknown
or changed key is refused (`sshlogin`), login is by the node's key_file or the ssh agent, and the
connections are kept alive in one pool, so a sync logs in a handful of times at most.
"""

from __future__ import annotations

import io
from contextlib import suppress
from typing import Any
from urllib.parse import urlsplit

import docker
import docker.constants
import paramiko
import urllib3
import urllib3.connection
from docker.transport.basehttpadapter import BaseHTTPAdapter

from nebula.providers.sshlogin import SshTarget, connect
from nebula.spec.config import NodeSsh

POOL_SIZE = 8  # connections kept alive; more requests at once get one each, closed after


def ssh_target(base_url: str, settings: NodeSsh | None) -> SshTarget:
    """Where `ssh://user@host:port` logs in: user and port from the URL, else the settings'."""
    settings = settings or NodeSsh()
    url = urlsplit(base_url)
    return SshTarget(
        f"Docker Engine at {base_url}",
        url.hostname or "",
        url.port or settings.port,
        url.username or settings.user,
        settings.key_file,
        settings.known_hosts,
    )


class _DialStdio(urllib3.connection.HTTPConnection):
    """One HTTP connection: its own SSH login, and a channel running `docker system
    dial-stdio`, which relays it to the host's engine."""

    def __init__(self, target: SshTarget, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._target = target
        self._timeout = timeout

    def connect(self) -> None:
        ssh = connect(self._target, self._timeout)
        try:
            transport = ssh.get_transport()
            assert transport is not None  # logged in
            channel = transport.open_session(timeout=self._timeout)
            channel.settimeout(self._timeout)
            channel.exec_command("docker system dial-stdio")
        except BaseException:
            ssh.close()
            raise
        self.sock = _ChannelSocket(ssh, channel)


class _ChannelSocket:
    """The channel as http.client and the docker SDK use a socket. Its file has `raw._sock`,
    which the SDK's `CancellableStream.close` shuts down and closes to end a stream (an event
    stream, a followed log) from another thread: the SDK's own SSH files cannot be, so it
    refuses; and `channel`, where the SDK finds an SSH response's socket (attach, exec)."""

    def __init__(self, ssh: paramiko.SSHClient, channel: paramiko.Channel) -> None:
        self._ssh = ssh
        self.channel = channel

    def __getattr__(self, name: str) -> Any:  # sendall, settimeout, fileno, ...
        return getattr(self.channel, name)

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        file = _File(_ChannelReader(self))
        file.channel = self.channel
        return file

    def shutdown(self, how: int) -> None:
        with suppress(*_GONE):
            self.channel.shutdown(how)

    def close(self) -> None:
        """The channel, then its login: a blocked read ends (EOF). The host may have closed
        either first (paramiko then raises EOFError writing the close): it is closed anyway."""
        with suppress(*_GONE):
            self.channel.close()
        self._ssh.close()


_GONE = (EOFError, OSError, paramiko.SSHException)


class _ChannelReader(io.RawIOBase):
    def __init__(self, sock: _ChannelSocket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._sock.channel.recv(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _File(io.BufferedReader):
    channel: paramiko.Channel


class _Pool(urllib3.connectionpool.HTTPConnectionPool):
    scheme = "ssh"

    def __init__(self, target: SshTarget, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout, maxsize=POOL_SIZE)
        self._target = target
        self._timeout = timeout

    def _new_conn(self) -> _DialStdio:
        return _DialStdio(self._target, self._timeout)


class _Adapter(BaseHTTPAdapter):  # type: ignore[misc]  # the SDK is untyped
    """Every request's connection from one pool, whatever its URL."""

    def __init__(self, target: SshTarget, timeout: float) -> None:
        self.pools = _Pool(target, timeout)
        super().__init__()

    def get_connection(self, url: str, proxies: Any = None) -> _Pool:
        return self.pools

    def close(self) -> None:
        self.pools.close()


def ssh_api_client(base_url: str, settings: NodeSsh | None, timeout: int) -> docker.APIClient:
    """The SDK's low-level client over verified SSH logins (`ProviderError` when refused)."""
    # Built with the SDK's shell-out adapter (which does nothing until used) and a fixed
    # version (nothing is asked), then ours is mounted in its place and the engine asked which
    # API version it speaks; a refused login raises here, as it is.
    client = docker.APIClient(
        base_url=base_url,
        version=docker.constants.MINIMUM_DOCKER_API_VERSION,
        timeout=timeout,
        use_ssh_client=True,
    )
    adapter = _Adapter(ssh_target(base_url, settings), float(timeout))
    client.mount("http+docker://ssh", adapter)
    client._custom_adapter = adapter
    client._version = client.version(api_version=False)["ApiVersion"]
    return client
