"""Who is on the other end of the unix socket: the kernel's peer credentials (SO_PEERCRED).

`daemon.server` reads them once per connection and hands them to the app in
`scope["nebula.peer"]`; `daemon.api` lets in only the daemon's own uid and root. Where the
platform has no SO_PEERCRED the peer is unknown (None) and refused: the check fails closed.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass

PEER_KEY = "nebula.peer"
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int

    def trusted(self) -> bool:
        """The daemon's own user, or root: whoever could read the daemon's data dir anyway."""
        return self.uid in (os.geteuid(), 0)


def peer_credentials(sock: socket.socket | None) -> Peer | None:
    option = getattr(socket, "SO_PEERCRED", None)
    if sock is None or option is None or sock.family != socket.AF_UNIX:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, option, _UCRED.size)
    except OSError:
        return None
    pid, uid, gid = _UCRED.unpack(raw)
    return Peer(pid, uid, gid)
