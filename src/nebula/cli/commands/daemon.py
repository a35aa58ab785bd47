"""Commands that act through a running nebulad: `nebula sync now|status|history`, `suspend`,
`resume`, `rollback`, `approve`; and `nebula hooks install`, which makes a bare repo tell the
local nebulad about each push.

They speak to the daemon's API (see `nebula.cli.client` for how it is found). When no daemon
runs they say so plainly and exit 1; `nebula apply` works without one.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nebula.cli.options import Output
from nebula.cli.output import (
    EXIT_FAILED,
    EXIT_INVALID,
    OutputFormat,
    abort,
    console,
    err_console,
    handle_errors,
    print_json,
    print_list,
)

if TYPE_CHECKING:
    from nebula.cli.client import DaemonClient

Socket = Annotated[
    Path | None,
    typer.Option(
        "--socket",
        envvar="NEBULA_SOCKET",
        help="nebulad's unix socket. Default: nebulad.sock in the user's data dir.",
        show_default=False,
    ),
]
DaemonUrl = Annotated[
    str | None,
    typer.Option(
        "--daemon",
        envvar="NEBULA_DAEMON",
        help="nebulad's TCP API, e.g. http://node1:7733 (the token comes from NEBULA_TOKEN). "
        "Default: the unix socket.",
        show_default=False,
    ),
]

# Final states of a sync, and whether `sync now --wait` exits 0 for them.
_FINAL_OK = {"succeeded": True, "skipped": True, "failed": False, "held": False}
_STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "held": "yellow",
    "running": "cyan",
    "superseded": "dim",
    "skipped": "dim",
}

sync_app = typer.Typer(
    help="Sync the config repo through nebulad: now, status, history.", no_args_is_help=True
)
hooks_app = typer.Typer(help="Git hooks that tell nebulad about new commits.", no_args_is_help=True)


def _client(socket: Path | None, daemon: str | None) -> DaemonClient:
    from nebula.cli.client import DaemonClient

    return DaemonClient(socket, daemon)


def _acknowledge(output: OutputFormat, answer: dict[str, Any], message: str) -> None:
    """nebulad took the request: its answer as JSON, or `message` for people."""
    if output is OutputFormat.json:
        print_json({"ok": True, **answer})
    else:
        console().print(message)


@sync_app.command("now")
def sync_now(
    wait: Annotated[
        bool,
        typer.Option("--wait", "-w", help="Follow the sync to its end; exit 1 if it fails."),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="With --wait: give up after this many seconds.")
    ] = 600.0,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Ask nebulad to fetch the config repo and sync now."""
    quiet = output is OutputFormat.json
    with handle_errors(output), _client(socket, daemon) as client:
        if not wait:
            answer = client.request_sync("manual")
            _acknowledge(output, answer, "Sync requested: follow it with `nebula sync status`.")
            return
        record = wait_for_sync(client, timeout, quiet)
    ok = _FINAL_OK.get(record["status"], False)
    if quiet:
        print_json(record)
    else:
        render_sync(record)
    if not ok:
        raise typer.Exit(EXIT_FAILED)


def wait_for_sync(client: DaemonClient, timeout: float, quiet: bool) -> dict[str, Any]:
    """Request a sync and follow the event stream until the sync that serves it ends.

    The stream is opened first, so no event is missed. The sync that serves the request is
    the first one recorded after the newest sync known before asking (a request made during
    a sync is served by the next one; one superseded by a newer commit hands over to it).
    Every event and heartbeat is a cue to look at the recorded syncs, so the answer does not
    depend on which events the daemon sends. A failure the daemon could not record (its store
    refusing writes) comes only as an event without an id: that is the answer then.
    """
    from nebula.cli.client import DaemonError

    deadline = time.monotonic() + timeout
    stream = client.events()
    try:
        if next(stream, None) is None:  # ": subscribed": from here on every event reaches us
            raise DaemonError(0, "nebulad closed the event stream at once")
        newest = client.syncs(limit=1)
        baseline = int(newest[0]["id"]) if newest else 0
        client.request_sync("manual")
        if not quiet:
            err_console().print("Sync requested; following it…")
        for item in stream:
            if item.kind is not None and not quiet:
                _print_event(item.kind, item.data)
            if item.kind == "sync_finished" and item.data.get("id") is None:
                return {"trigger": "manual", **item.data}  # a failure the store could not record
            record = _served_after(client, baseline)
            if record is not None:
                return record
            if time.monotonic() > deadline:
                raise DaemonError(0, f"the sync did not finish within {timeout:g} s")
    finally:
        stream.close()
    record = _served_after(client, baseline)
    if record is not None:
        return record
    raise DaemonError(0, "nebulad closed the event stream before the sync finished")


def _served_after(client: DaemonClient, baseline: int) -> dict[str, Any] | None:
    """The first sync after `baseline` that ended (superseded ones hand over), else None."""
    later = sorted((r for r in client.syncs(limit=20) if int(r["id"]) > baseline), key=_id)
    for record in later:
        if record["status"] == "superseded":
            continue
        return record if record["status"] in _FINAL_OK else None
    return None


def _id(record: dict[str, Any]) -> int:
    return int(record["id"])


def _print_event(kind: str, data: dict[str, Any]) -> None:
    if kind == "heartbeat":
        return
    if kind == "progress" and data.get("installation"):
        err_console().print(f"[cyan]{data['installation']}[/] ", end="")
        err_console().print(str(data.get("message") or ""), markup=False)
        return
    parts = []
    for key in ("id", "commit", "status", "trigger", "installation", "message", "summary"):
        value = data.get(key)
        if value in (None, "", [], {}):
            continue
        if key == "commit" and isinstance(value, str):
            value = value[:12]
        if key == "summary" and isinstance(value, dict):
            value = _summary(value)
        parts.append(f"{key}={value}")
    err_console().print(f"[bold]{kind.replace('_', ' ')}[/] ", end="")
    err_console().print(" ".join(parts), markup=False)
    for error in data.get("errors") or []:
        err_console().print(f"  {error}", markup=False)


@sync_app.command("status")
def sync_status(
    socket: Socket = None, daemon: DaemonUrl = None, output: Output = OutputFormat.table
) -> None:
    """The last sync: commit, author, status, errors with file:line, plan, duration."""
    with handle_errors(output), _client(socket, daemon) as client:
        state = client.status()
    last = state.get("last_sync")
    if output is OutputFormat.json:
        print_json(last)
        return
    where = _escape(str(state.get("source", "?")))
    branch = _escape(str(state.get("branch") or ""))
    node = _escape(str(state.get("node", "?")))
    console().print(
        f"nebulad on [bold]{node}[/] follows {where}" + (f" ({branch})" if branch else ""),
        highlight=False,
    )
    if state.get("suspended"):
        console().print("[yellow]suspended[/]: observing only; `nebula resume` applies again.")
    if state.get("pinned_commit"):
        pinned = str(state["pinned_commit"])[:12]
        console().print(f"[yellow]pinned[/] to {pinned} by rollback until `nebula resume`.")
    for part, problem in sorted((state.get("faults") or {}).items()):
        console().print(
            f"[red]fault[/] in {_escape(part)}: {_escape(str(problem))}", highlight=False
        )
    console().print()
    if last is None:
        console().print("No sync yet.")
        return
    render_sync(last)


def render_sync(record: dict[str, Any]) -> None:
    status = str(record.get("status"))
    style = _STATUS_STYLE.get(status, "white")
    took = _duration(record.get("duration_ms"))
    trigger = _escape(str(record.get("trigger")))
    head = f"sync {record.get('id')}  [{style}]{status}[/]  ({trigger}"
    console().print(head + (f", {took})" if took else ")"))
    rows: list[tuple[str, str]] = []
    if record.get("commit"):
        line = str(record["commit"])[:12]
        message = (record.get("message") or "").strip().splitlines()
        if message:
            line += f"  {message[0]}"
        rows.append(("commit", line))
    if record.get("author"):
        rows.append(("author", str(record["author"])))
    if record.get("started_at"):
        rows.append(("started", _when(record["started_at"])))
    if record.get("summary"):
        rows.append(("plan", _summary(record["summary"])))
    for label, value in rows:
        console().print(f"  {label:<8} ", end="")
        console().print(value, markup=False)
    errors = record.get("errors") or []
    if errors:
        console().print(f"  [red]{len(errors)} error{'s' * (len(errors) != 1)}[/]:")
        for error in errors:
            console().print(f"    {error}", markup=False)
    if status == "held":
        console().print(
            f"  [yellow]held[/]: it deletes more than the prune limit allows. Approve it with "
            f"`nebula approve {record.get('id')}`, or push a newer commit."
        )


@sync_app.command("history")
def sync_history(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="How many.")] = 20,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """The latest syncs, newest first."""
    with handle_errors(output), _client(socket, daemon) as client:
        records = client.syncs(limit=limit)
    print_list(
        output,
        records,
        ("id", "started", "commit", "author", "trigger", "status", "took", "result"),
        (_history_row(r) for r in records),
        "No sync yet.",
    )


def _history_row(r: dict[str, Any]) -> tuple[str, ...]:
    status = str(r.get("status"))
    errors = r.get("errors") or []
    if errors:
        result = f"{len(errors)} error{'s' * (len(errors) != 1)}: {errors[0]}"
    else:
        result = _summary(r["summary"], brief=True) if r.get("summary") else ""
    return (
        str(r.get("id")),
        _when(r["started_at"], seconds=False) if r.get("started_at") else "",
        str(r.get("commit") or "")[:12],
        str(r.get("author") or ""),
        str(r.get("trigger") or ""),
        f"[{_STATUS_STYLE.get(status, 'white')}]{status}[/]",
        _duration(r.get("duration_ms")),
        _escape(result),
    )


def suspend(
    socket: Socket = None, daemon: DaemonUrl = None, output: Output = OutputFormat.table
) -> None:
    """Stop applying commits; nebulad keeps observing. Undo with `nebula resume`."""
    with handle_errors(output), _client(socket, daemon) as client:
        answer = client.suspend()
    _acknowledge(
        output, answer, "Suspended: nebulad observes but applies nothing until `nebula resume`."
    )


def resume(
    socket: Socket = None, daemon: DaemonUrl = None, output: Output = OutputFormat.table
) -> None:
    """Apply again, following the branch (drops a rollback pin)."""
    with handle_errors(output), _client(socket, daemon) as client:
        answer = client.resume()
    _acknowledge(output, answer, "Resumed: nebulad follows the branch again.")


def rollback(
    commit: Annotated[str, typer.Argument(help="The earlier commit (a sha or a prefix of one).")],
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Pin the homelab to an earlier commit until `nebula resume`."""
    with handle_errors(output), _client(socket, daemon) as client:
        answer = client.rollback(commit)
    sha = str(answer.get("pinned_commit") or commit)
    _acknowledge(
        output,
        answer,
        f"Pinned to {sha[:12]}: nebulad applies it and stays there until `nebula resume`.",
    )


def approve(
    sync_id: Annotated[int, typer.Argument(help="The held sync (see `nebula sync history`).")],
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Apply a sync held by the prune limit."""
    with handle_errors(output), _client(socket, daemon) as client:
        record = client.approve(sync_id)
    if output is OutputFormat.json:
        print_json(record)
        return
    console().print(f"Approved sync {sync_id}.")
    render_sync(record)


def _summary(counts: dict[str, Any], brief: bool = False) -> str:
    """`1 to create, 0 to update, 0 to delete, 4 unchanged`; brief leaves out the zeros."""
    order = ("create", "update", "delete", "noop")
    words = {"create": "to create", "update": "to update", "delete": "to delete"}
    parts = [
        f"{counts[k]} {words.get(k, 'unchanged')}"
        for k in order
        if k in counts and not (brief and not counts[k])
    ]
    parts += [f"{v} {k}" for k, v in counts.items() if k not in order]
    return ", ".join(parts) or "no changes"


def _duration(ms: Any) -> str:
    if not isinstance(ms, int | float):
        return ""
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def _when(value: Any, seconds: bool = True) -> str:
    """An ISO time from the API, in local time."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


# -- nebula hooks install -------------------------------------------------------------------

HOOK_MARKER = "# nebula post-receive hook"
PREVIOUS_HOOK = "post-receive.nebula-previous"

# Standard library only, so it runs wherever git does and starts in milliseconds. The push is
# already saved when post-receive runs: a daemon that does not answer costs one warning line.
HOOK_TEMPLATE = """#!/usr/bin/env python3
# nebula post-receive hook: tells the local nebulad that commits arrived, so it syncs now.
# Written by `nebula hooks install`; run that again to change the socket. A hook that was
# here before is kept as post-receive.nebula-previous and runs first, with the same input.
import http.client
import os
import socket
import sys

SOCKET = __SOCKET__
TIMEOUT = 3.0


class UnixConnection(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(SOCKET)


def notify():
    connection = UnixConnection("nebulad", timeout=TIMEOUT)
    try:
        connection.request(
            "POST", "/api/v1/sync", b'{"trigger": "hook"}', {"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        response.read()
    except (OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "strerror", None) or exc
        sys.stderr.write(
            "nebula: no nebulad answered on %s (%s); the push is saved, and nebulad "
            "picks it up at its next poll once it runs\\n" % (SOCKET, reason)
        )
        return
    finally:
        connection.close()
    if response.status != 202:
        sys.stderr.write("nebula: nebulad refused the sync request (HTTP %d)\\n" % response.status)


def main():
    refs = sys.stdin.buffer.read()
    code = 0
    here = os.path.dirname(os.path.abspath(__file__))
    previous = os.path.join(here, "post-receive.nebula-previous")
    if os.access(previous, os.X_OK):
        import subprocess

        sys.stdout.flush()
        code = subprocess.run([previous], input=refs).returncode
    notify()
    return code


if __name__ == "__main__":
    sys.exit(main())
"""


@hooks_app.command("install")
def hooks_install(
    bare_repo: Annotated[Path, typer.Argument(help="The bare git repo that people push to.")],
    socket: Socket = None,
    output: Output = OutputFormat.table,
) -> None:
    """Write a post-receive hook into BARE_REPO that tells the local nebulad to sync.

    The hook needs only python3. An existing post-receive hook is kept: it is renamed
    post-receive.nebula-previous and runs first. A push never fails because nebulad is down.
    """
    from nebula.cli.client import resolve_socket

    hooks = _hooks_dir(bare_repo)
    socket_path = resolve_socket(socket)
    hook = hooks / "post-receive"
    previous = hooks / PREVIOUS_HOOK
    if (hook.exists() or hook.is_symlink()) and not _is_ours(hook):
        if previous.exists() or previous.is_symlink():
            abort(
                f"{hook} exists and so does {previous.name}: merge them by hand, "
                "then run this again",
                EXIT_INVALID,
            )
        hook.rename(previous)
    script = HOOK_TEMPLATE.replace("__SOCKET__", repr(str(socket_path)))
    temporary = hooks / ".post-receive.nebula-tmp"
    temporary.write_text(script, encoding="utf-8")
    temporary.chmod(0o755)
    os.replace(temporary, hook)
    chained = previous.exists() or previous.is_symlink()
    if output is OutputFormat.json:
        print_json(
            {
                "ok": True,
                "hook": str(hook),
                "socket": str(socket_path),
                "previous": str(previous) if chained else None,
            }
        )
        return
    console().print(f"Installed {hook}: each push asks nebulad ({socket_path}) to sync.")
    if chained:
        console().print(f"The hook that was there runs first, as {previous.name}.")


def _hooks_dir(repo: Path) -> Path:
    """The hooks folder of a bare repo; a polite refusal for anything else."""
    if not repo.is_dir():
        abort(f"{repo} is not a folder: give the bare repo that people push to", EXIT_INVALID)
    try:
        bare = _git(repo, "rev-parse", "--is-bare-repository")
        hooks = _git(repo, "rev-parse", "--git-path", "hooks") if bare == "true" else ""
    except FileNotFoundError:
        abort("git is not installed: install it, then run this again")
    if bare != "true":
        abort(
            f"{repo} is not a bare git repository: give the repo people push to "
            "(made with `git init --bare`), not a clone with a working tree",
            EXIT_INVALID,
        )
    path = Path(hooks)
    path = path if path.is_absolute() else repo / path
    path.mkdir(parents=True, exist_ok=True)
    return path.absolute()


def _git(repo: Path, *args: str) -> str:
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    result = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else ""


def _is_ours(hook: Path) -> bool:
    try:
        return HOOK_MARKER in hook.read_text(encoding="utf-8", errors="replace")[:400]
    except OSError:
        return False
