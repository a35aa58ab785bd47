"""`nebula tui`: the live dashboard (`nebula.tui`), on the daemon the other commands talk to."""

from __future__ import annotations

from nebula.cli.commands.daemon import DaemonUrl, Socket


def tui(socket: Socket = None, daemon: DaemonUrl = None) -> None:
    """A live dashboard of nebulad: installations, syncs, approvals, incidents (keys 1-5)."""
    from nebula.cli.client import DaemonClient
    from nebula.tui.app import NebulaApp

    NebulaApp(lambda: DaemonClient(socket, daemon)).run()
