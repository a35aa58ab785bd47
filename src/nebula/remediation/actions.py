"""The runbook actions, by name: each takes its rendered, validated params and the run.

Actions are thin: they reach Docker, the notifier and the incidents through `Services`, which
nebulad builds (the restart cap and the reconciler's lock live there, not in each runbook).
"""

from __future__ import annotations

import ctypes
import logging
import signal
import socket
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from nebula.engine import backup
from nebula.errors import NebulaError, ProviderError
from nebula.remediation.executor import Action, ActionError, ActionResult, RunContext

log = logging.getLogger("nebulad.runbooks")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING}
_LEVELS |= {"warning": logging.WARNING, "error": logging.ERROR}
_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


class AgentRun(Protocol):
    """What running an agent gives back (the AI runtime's execution, once it ended)."""

    status: str  # completed | failed | blocked | timed_out | waiting_approval | ...
    output: str | None
    execution_id: str


@dataclass
class Services:
    """The runtime the actions act through (nebulad's; tests build their own)."""

    docker: Any  # DockerProvider
    notify: Callable[[list[str], str, str], list[Any]]  # channels, title, body -> deliveries
    incidents: Any  # remediation.incidents.Incidents, or None
    # container name, runbook -> why it may not be restarted now (the cap), or None
    restart_allowed: Callable[[str, Any], str | None]
    recreate: Callable[[str], None]  # container -> recreated from the repo's spec by a sync
    busy: Callable[[str], bool]  # container -> the sync is changing it now
    ssh: Callable[[str, str, float], tuple[int, str]] | None = None  # node, command, timeout
    secret: Callable[[str], str] | None = None  # a vault secret's value, by name
    # agent, task, incident id -> the agent's run, once it ended; None: no AI runtime here
    agent: Callable[[str, str, str | None], AgentRun] | None = None


def log_action(params: Any, run: RunContext) -> ActionResult:
    log.log(_LEVELS.get(params.level, logging.INFO), "%s", params.message)
    return ActionResult(True, params.message)


def docker_action(params: Any, run: RunContext) -> ActionResult:
    services: Services = run.services
    if params.command == "usage":
        return _usage(services, params.lines)
    container = params.container
    _wait_for_the_sync(services, container, run)
    docker = services.docker
    try:
        if params.command in ("restart", "start", "recreate"):
            name = str(docker.inspect(container)["Name"]).lstrip("/")  # an id counts as its name
            refused = services.restart_allowed(name, run.runbook)
            if refused:
                raise ActionError(refused)
        if params.command == "restart":
            docker.restart_container(container)
        elif params.command == "stop":
            docker.stop_container(container)
        elif params.command == "start":
            docker.start_container(container, container)
        elif params.command == "recreate":
            services.recreate(container)
        elif params.command == "logs":
            text = docker.logs(container, lines=params.lines)
            return ActionResult(True, text, {"logs": text})
        elif params.command == "exec":
            command = (
                tuple(params.cmd) if isinstance(params.cmd, list) else ("sh", "-c", params.cmd)
            )
            code, output = docker.exec_run(container, command, run.remaining())
            return ActionResult(code == 0, output, {"exit_code": code})
    except ProviderError as exc:
        raise ActionError(str(exc)) from None
    return ActionResult(True, f"{params.command} {container}")


def _usage(services: Services, limit: int) -> ActionResult:
    """What takes Docker's disk: reported, never deleted."""
    try:
        volumes, images = services.docker.usage(limit)
    except ProviderError as exc:
        raise ActionError(str(exc)) from None
    lines = ["volumes Nebula manages:"] + [f"  {n}  {_size(b)}" for n, b in volumes]
    lines += ["unused images:"] + [f"  {n}  {_size(b)}" for n, b in images]
    shown = {"volumes": dict(volumes), "images": dict(images)}
    return ActionResult(True, "\n".join(lines), shown)


def _size(size: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _wait_for_the_sync(services: Services, container: str, run: RunContext) -> None:
    """A container the sync is changing is left to it: the action waits until it is done."""
    while services.busy(container):
        if run.remaining() <= 0 or run.stop.wait(0.5):
            raise ActionError(f"{container} is being changed by the sync; left to it")


def wait_action(params: Any, run: RunContext) -> ActionResult:
    """Wait `duration` (a step timeout shorter than that fails the step, as it should)."""
    if run.stop.wait(params.duration):
        raise ActionError("nebulad stopped")
    return ActionResult(True, f"waited {params.duration:g}s")


def health_check_action(params: Any, run: RunContext) -> ActionResult:
    timeout = min(params.timeout, run.remaining()) or 0.1
    if params.url:
        try:
            response = httpx.get(params.url, timeout=timeout, follow_redirects=False)
        except httpx.HTTPError as exc:
            return ActionResult(False, f"{params.url}: {exc or type(exc).__name__}")
        ok = response.status_code == params.expected_status
        detail = f"{params.url}: {response.status_code} (expected {params.expected_status})"
        return ActionResult(ok, detail, {"status": response.status_code})
    try:
        with socket.create_connection((params.host, params.port), timeout=timeout):
            return ActionResult(True, f"{params.host}:{params.port} accepts connections")
    except OSError as exc:
        return ActionResult(False, f"{params.host}:{params.port}: {exc.strerror or exc}")


def http_action(params: Any, run: RunContext) -> ActionResult:
    try:
        response = httpx.request(
            params.method,
            params.url,
            headers=params.headers,
            content=params.body,
            timeout=min(params.timeout, run.remaining()) or 0.1,
        )
    except httpx.HTTPError as exc:
        raise ActionError(f"{params.url}: {exc or type(exc).__name__}") from None
    expected = params.expected_status
    ok = response.is_success if expected is None else response.status_code == expected
    body = response.text[:2000]
    return ActionResult(ok, f"{response.status_code} {body}", {"status": response.status_code})


def _die_with_nebulad() -> None:
    """In the shell, before it runs the command: killed when nebulad dies. A step cut short by
    a SIGKILL runs again when its run resumes; left running, it would also finish on its own."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def shell_action(params: Any, run: RunContext) -> ActionResult:
    timeout = min(params.timeout, run.remaining())
    try:
        done = subprocess.run(
            ["sh", "-c", params.command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            preexec_fn=_die_with_nebulad,  # one system call in the child: safe beside threads
        )
    except subprocess.TimeoutExpired:
        raise ActionError(f"timed out after {timeout:g}s") from None
    output = (done.stdout + done.stderr).strip()
    return ActionResult(done.returncode == 0, output, {"exit_code": done.returncode})


def ssh_action(params: Any, run: RunContext) -> ActionResult:
    services: Services = run.services
    if services.ssh is None:
        raise ActionError("ssh is not available on this node")
    timeout = min(params.timeout, run.remaining())
    try:
        code, output = services.ssh(params.node, params.command, timeout)
    except NebulaError as exc:
        raise ActionError(str(exc)) from None
    return ActionResult(code == 0, output, {"exit_code": code})


def notify_action(params: Any, run: RunContext) -> ActionResult:
    services: Services = run.services
    channels = params.targets
    deliveries = services.notify(channels, params.title or "Nebula", params.message)
    failed = [d for d in deliveries if not d.ok]
    lines = [f"{d.channel}: {'sent' if d.ok else d.error}" for d in deliveries]
    return ActionResult(not failed, "; ".join(lines), {"sent": len(deliveries) - len(failed)})


def incident_action(params: Any, run: RunContext) -> ActionResult:
    services: Services = run.services
    incident = run.context.get("incident") or {}
    if services.incidents is None or not incident.get("id"):
        raise ActionError("this execution has no incident")
    incident_id = incident["id"]
    if params.severity:
        services.incidents.set_severity(incident_id, params.severity, "runbook")
    if params.annotate:
        services.incidents.note(incident_id, "note", params.annotate)
    if params.resolve:
        services.incidents.resolve(
            incident_id, "runbook", params.resolution or "resolved by runbook"
        )
    return ActionResult(True, "incident updated")


def agent_action(params: Any, run: RunContext) -> ActionResult:
    """An agent runs the task; its answer is the step's output and goes on the incident's
    timeline. A run that did not complete fails the step (its execution says why)."""
    services: Services = run.services
    if services.agent is None:
        raise ActionError("agents are not available here: nebulad runs them (no AI runtime)")
    incident_id = (run.context.get("incident") or {}).get("id")
    timeout = min(params.timeout or run.remaining(), run.remaining())
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"agent-{params.agent}")
    try:
        done = pool.submit(services.agent, params.agent, params.task, incident_id)
        result = done.result(timeout=timeout)
    except FutureTimeout:  # the agent's own time limit ends its run, recorded as such
        raise ActionError(f"agent {params.agent} gave no answer within {timeout:g}s") from None
    except NebulaError as exc:  # an unknown agent, an unreachable model
        raise ActionError(f"agent {params.agent}: {exc}") from None
    finally:
        pool.shutdown(wait=False)
    output = result.output or ""
    ok = result.status == "completed"
    summary = output if ok else f"agent {params.agent} ended {result.status}"
    summary += f": {output}" if output and not ok else ""
    if services.incidents is not None and incident_id:
        detail = {"agent": params.agent, "execution": result.execution_id, "status": result.status}
        services.incidents.note(incident_id, "agent", summary, detail, f"agent {params.agent}")
    outputs = {"execution": result.execution_id, "status": result.status}
    return ActionResult(ok, summary, outputs)


def backup_action(params: Any, run: RunContext) -> ActionResult:
    services: Services = run.services
    try:
        done = backup.backup(
            services.docker,
            params.repository,
            _password(services, params.secret_name),
            params.installation,
            volumes=params.volumes,
            hold=params.stop,
            tags=params.tags,
            keep=_retention(params.forget),
            timeout=run.remaining(),
        )
    except NebulaError as exc:
        raise ActionError(str(exc)) from None
    return ActionResult(True, done.summary(), {"snapshots": done.snapshots})


def restore_action(params: Any, run: RunContext) -> ActionResult:
    services: Services = run.services
    try:
        done = backup.restore(
            services.docker,
            params.repository,
            _password(services, params.secret_name),
            params.installation,
            snapshot=params.snapshot,
            volumes=params.volumes,
            timeout=run.remaining(),
        )
    except NebulaError as exc:
        raise ActionError(str(exc)) from None
    return ActionResult(True, done.summary(), {"snapshots": done.snapshots})


def _password(services: Services, name: str) -> str:
    if services.secret is None:
        raise ActionError("the vault is not open yet: no commit has been applied")
    return services.secret(name)


def _retention(forget: Any) -> backup.Retention | None:
    """The params' `forget:` as restic's retention (None: keep every snapshot)."""
    if forget is None:
        return None
    return backup.Retention(
        forget.keep_last, forget.keep_daily, forget.keep_weekly, forget.keep_monthly
    )


ACTIONS: dict[str, Action] = {
    "log": log_action,
    "docker": docker_action,
    "wait": wait_action,
    "health_check": health_check_action,
    "http": http_action,
    "shell": shell_action,
    "ssh": ssh_action,
    "notify": notify_action,
    "incident": incident_action,
    "agent": agent_action,
    "backup": backup_action,
    "restore": restore_action,
}
