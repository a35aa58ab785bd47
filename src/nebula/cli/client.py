"""The CLI's client of nebulad's API (see `nebula.daemon.api`), over httpx.

Where the daemon is, first match wins:
- `--daemon URL` / `NEBULA_DAEMON` (e.g. `http://node1:7733`): TCP, with `NEBULA_TOKEN` (an
  API key, a service token) sent as the bearer token, else the access token of `nebula login
  URL` (see `cli.credentials`), refreshed when it expires. A token is never taken from the
  command line, where `ps` would show it;
- `--socket PATH` / `NEBULA_SOCKET`: that unix socket;
- `--context NAME` / `NEBULA_CONTEXT`, else the current context of `nebula context use`: its
  URL (as `--daemon`) or socket (see `cli.contexts`);
- else the default socket, `nebulad.sock` in the user's data dir (`default_socket_path`).

Methods return the API's JSON as plain data. Every failure is a `NebulaError`:
`DaemonUnavailableError` when nothing answers, `DaemonError` (with the HTTP status) when the
daemon refused or failed the request.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from nebula.daemon.server import default_socket_path
from nebula.errors import NebulaError

TIMEOUT = httpx.Timeout(30.0, connect=5.0)
STREAM_TIMEOUT = httpx.Timeout(60.0, connect=5.0)  # the stream's heartbeat comes every 15 s


class DaemonUnavailableError(NebulaError):
    """No nebulad answers where the CLI looked."""


class DaemonError(NebulaError):
    """nebulad answered with an error: `status` is the HTTP status, the message its reason."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class StreamItem:
    """One item of the event stream: an event (`kind` and `data`), or a comment (`kind` None)."""

    kind: str | None
    data: dict[str, Any]


def resolve_socket(socket_path: str | Path | None) -> Path:
    if socket_path:
        return Path(socket_path).expanduser().absolute()
    env = os.environ.get("NEBULA_SOCKET")
    return Path(env).expanduser().absolute() if env else default_socket_path()


class DaemonClient:
    def __init__(self, socket_path: str | Path | None = None, url: str | None = None) -> None:
        url = url or os.environ.get("NEBULA_DAEMON") or None
        if not (url or socket_path or os.environ.get("NEBULA_SOCKET")):
            from nebula.cli.contexts import selected

            context = selected()
            if context is not None:
                url, socket_path = context.url, context.socket
        headers = {"Accept": "application/json"}
        if url:
            self.where = f"at {url}"
            self.socket: Path | None = None
            token = os.environ.get("NEBULA_TOKEN")
            self._login_url: str | None = None
            if not token:
                from nebula.cli import credentials

                token = credentials.access_token(url)
                self._login_url = url if token else None
            if token:
                headers["Authorization"] = f"Bearer {token}"
            self._client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=TIMEOUT)
        else:
            self._login_url = None
            self.socket = resolve_socket(socket_path)
            self.where = f"(socket {self.socket})"
            transport = httpx.HTTPTransport(uds=str(self.socket), verify=False)  # no TLS here
            self._client = httpx.Client(
                base_url="http://nebulad", transport=transport, headers=headers, timeout=TIMEOUT
            )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the API ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/status")

    def installations(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/installations")["installations"])

    def nodes(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/nodes")["nodes"])

    def create_service_token(self, node: str, scope: str = "read") -> tuple[str, str]:
        """A new service token for `node`: its id and the token (shown only now)."""
        body = {"name": node, "scope": scope, "service": True}
        answer = self._call("POST", "/apikeys", json=body)
        return str(answer["key"]["prefix"]), str(answer["token"])

    def revoke_key(self, key_id: str) -> None:
        self._call("DELETE", f"/apikeys/{_segment(key_id)}")

    def syncs(self, limit: int = 20) -> list[dict[str, Any]]:
        return list(self._call("GET", "/syncs", params={"limit": limit})["syncs"])

    def logs(self, name: str, service: str | None = None, tail: int = 100) -> list[dict[str, Any]]:
        """The last `tail` lines of an installation's containers (one service's), merged."""
        params: dict[str, Any] = {"tail": tail, **({"service": service} if service else {})}
        path = f"/installations/{_segment(name)}/logs"
        return list(self._call("GET", path, params=params)["lines"])

    def follow_logs(
        self, name: str, service: str | None = None, tail: int = 100
    ) -> Generator[StreamItem, None, None]:
        """As `logs`, then each new line: `log` events (and heartbeat comments) until the
        containers stop or the client is closed."""
        params: dict[str, Any] = {"tail": tail, "follow": "1"}
        if service:
            params["service"] = service
        path = f"/api/v1/installations/{_segment(name)}/logs"
        yield from self._stream("GET", path, params=params)

    def restart(self, name: str, service: str | None = None) -> list[str]:
        """Restart an installation's containers (one service's); the containers restarted."""
        body = {"service": service} if service else {}
        found = self._call("POST", f"/installations/{_segment(name)}/restart", json=body)
        return list(found["restarted"])

    def plan(self) -> dict[str, Any]:
        """What a sync of the last good commit would change now: {changes, problems}."""
        return self._call("GET", "/plan")

    def audit(
        self, actor: str | None = None, target: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The audit log's newest `limit` entries, newest first, by `actor` and on `target`."""
        params = {"actor": actor, "target": target, "limit": limit}
        found = self._call("GET", "/audit", params={k: v for k, v in params.items() if v})
        return list(found["entries"])

    def packages(self, query: str = "") -> list[dict[str, Any]]:
        """The catalog's packages matching `query`, best match first."""
        return list(self._call("GET", "/marketplace/packages", params={"q": query})["packages"])

    def package(self, name: str) -> dict[str, Any]:
        """One catalog package: versions, variables, requirements."""
        return self._call("GET", f"/marketplace/packages/{_segment(name)}")

    def install(self, request: dict[str, Any]) -> dict[str, Any]:
        """Commit a catalog package's installation (`package`, `name`?, `values`?, ...: the
        body of `POST /marketplace/install`); the commit made."""
        return self._call("POST", "/marketplace/install", json=request)

    def sync(self, sync_id: int) -> dict[str, Any]:
        return self._call("GET", f"/syncs/{sync_id}")

    def request_sync(self, trigger: str = "manual") -> dict[str, Any]:
        return self._call("POST", "/sync", json={"trigger": trigger})

    def approve(self, sync_id: int) -> dict[str, Any]:
        return self._call("POST", f"/syncs/{sync_id}/approve")

    def suspend(self) -> dict[str, Any]:
        return self._call("POST", "/suspend")

    def resume(self) -> dict[str, Any]:
        return self._call("POST", "/resume")

    def rollback(self, commit: str) -> dict[str, Any]:
        return self._call("POST", "/rollback", json={"commit": commit})

    # -- remediation (see `nebula.daemon.remediation_api`) -----------------------------------

    def incidents(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit, **({"status": status} if status else {})}
        return list(self._call("GET", "/incidents", params=params)["incidents"])

    def incident(self, incident_id: str) -> dict[str, Any]:
        return self._call("GET", f"/incidents/{_segment(incident_id)}")

    def acknowledge_incident(self, incident_id: str) -> dict[str, Any]:
        return self._call("POST", f"/incidents/{_segment(incident_id)}/acknowledge")

    def resolve_incident(self, incident_id: str, resolution: str = "") -> dict[str, Any]:
        path = f"/incidents/{_segment(incident_id)}/resolve"
        return self._call("POST", path, json={"resolution": resolution})

    def fire_alert(self, alert: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/alerts", json=alert)

    def silences(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/silences")["silences"])

    def add_silence(self, matchers: list[str], duration: str, comment: str) -> dict[str, Any]:
        body = {"matchers": matchers, "duration": duration, "comment": comment}
        return self._call("POST", "/silences", json=body)

    def remove_silence(self, silence_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/silences/{_segment(silence_id)}")

    def run_runbook(self, name: str, labels: dict[str, str], dry_run: bool) -> dict[str, Any]:
        body = {"labels": labels, "dry_run": dry_run}
        return self._call("POST", f"/runbooks/{_segment(name)}/run", json=body)

    def executions(
        self, runbook: str | None = None, incident: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        params = {"runbook": runbook, "incident": incident, "limit": limit}
        found = self._call(
            "GET", "/runbooks/executions", params={k: v for k, v in params.items() if v}
        )
        return list(found["executions"])

    def decide(self, execution_id: str, approved: bool) -> dict[str, Any]:
        verb = "approve" if approved else "reject"
        return self._call("POST", f"/runbooks/executions/{_segment(execution_id)}/{verb}")

    def workflows(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/workflows")["workflows"])

    def run_workflow(self, name: str) -> str:
        """The run's id; `DaemonError` 409 when skipped because a run is going."""
        return str(self._call("POST", f"/workflows/{_segment(name)}/run")["run"])

    def workflow_runs(self, workflow: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit, **({"workflow": workflow} if workflow else {})}
        return list(self._call("GET", "/workflows/runs", params=params)["runs"])

    def workflow_run(self, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/workflows/runs/{_segment(run_id)}")

    def cancel_workflow_run(self, run_id: str) -> None:
        self._call("POST", f"/workflows/runs/{_segment(run_id)}/cancel")

    # -- agents and functions (see `nebula.daemon.ai_api`) -----------------------------------

    def agents(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/agents")["agents"])

    def agent(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/agents/{_segment(name)}")

    def execute_agent(self, name: str, task: str) -> str:
        """Start an execution; its id."""
        path = f"/agents/{_segment(name)}/execute"
        return str(self._call("POST", path, json={"task": task})["id"])

    def stream_agent(self, name: str, task: str) -> Generator[StreamItem, None, None]:
        """Run an agent, its events as they come (the last is `end`)."""
        path = f"/api/v1/agents/{_segment(name)}/execute"
        yield from self._stream("POST", path, json={"task": task})

    def agent_history(self, name: str, limit: int = 50) -> list[dict[str, Any]]:
        path = f"/agents/{_segment(name)}/history"
        return list(self._call("GET", path, params={"limit": limit})["executions"])

    def agent_execution(self, execution_id: str) -> dict[str, Any]:
        return self._call("GET", f"/agents/executions/{_segment(execution_id)}")

    def waiting_agents(self, limit: int = 100) -> list[dict[str, Any]]:
        """Every agent's executions waiting for a person to answer a tool call, newest first."""
        params = {"status": "waiting_approval", "limit": limit}
        return list(self._call("GET", "/agents/executions", params=params)["executions"])

    def decide_agent(self, execution_id: str, approved: bool) -> dict[str, Any]:
        verb = "approve" if approved else "reject"
        return self._call("POST", f"/agents/executions/{_segment(execution_id)}/{verb}")

    def functions(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/functions")["functions"])

    def function(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/functions/{_segment(name)}")

    def invoke_function(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        path = f"/functions/{_segment(name)}/invoke"
        return self._call("POST", path, json={"arguments": arguments})

    def ai_status(self) -> dict[str, Any]:
        return self._call("GET", "/ai/status")

    # -- projects (see `nebula.daemon.projects_api`) -----------------------------------------

    def projects(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/projects")["projects"])

    def project(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/projects/{_segment(name)}")

    def deploy_project(
        self, name: str, environment: str | None = None, commit: str | None = None
    ) -> dict[str, Any]:
        """The deployment started (`pending`)."""
        body = {"environment": environment, "commit": commit}
        path = f"/projects/{_segment(name)}/deploy"
        return self._call("POST", path, json={k: v for k, v in body.items() if v})

    def rollback_project(
        self, name: str, environment: str | None = None, to: str | None = None
    ) -> dict[str, Any]:
        body = {"environment": environment, "to": to}
        path = f"/projects/{_segment(name)}/rollback"
        return self._call("POST", path, json={k: v for k, v in body.items() if v})

    def project_deployments(
        self, name: str, environment: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {
            "limit": limit,
            **({"environment": environment} if environment else {}),
        }
        path = f"/projects/{_segment(name)}/deployments"
        return list(self._call("GET", path, params=params)["deployments"])

    def project_deployment(self, name: str, deployment_id: str) -> dict[str, Any]:
        """One deployment with its build output (`logs`)."""
        return self._call(
            "GET", f"/projects/{_segment(name)}/deployments/{_segment(deployment_id)}"
        )

    def open_project(
        self, name: str, environment: str | None = None, port: int | None = None
    ) -> dict[str, Any]:
        """Install (or find) the project's IDE: {installation, url, workspace, ...}."""
        body = {"environment": environment, "port": port}
        path = f"/projects/{_segment(name)}/open"
        return self._call("POST", path, json={k: v for k, v in body.items() if v})

    def events(self) -> Generator[StreamItem, None, None]:
        """The event stream, with its comments (the first says the subscription exists)."""
        yield from self._stream("GET", "/api/v1/events")

    def _stream(self, method: str, path: str, **kwargs: Any) -> Generator[StreamItem, None, None]:
        headers = {"Accept": "text/event-stream"}
        try:
            with self._client.stream(
                method, path, headers=headers, timeout=STREAM_TIMEOUT, **kwargs
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._refusal(response)
                yield from parse_sse(response.iter_lines())
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from None

    # -- plumbing --------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._client.request(method, f"/api/v1{path}", **kwargs)
            if response.status_code == 401 and self._login_url:
                # The access token ended early (a restarted daemon, a clock skew): refresh once.
                from nebula.cli import credentials

                token = credentials.access_token(self._login_url, force_refresh=True)
                self._client.headers["Authorization"] = f"Bearer {token}"
                response = self._client.request(method, f"/api/v1{path}", **kwargs)
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from None
        if response.status_code >= 400:
            raise self._refusal(response)
        try:
            body = response.json()
        except json.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            raise DaemonError(
                response.status_code, f"nebulad {self.where} answered with something not JSON"
            )
        return body

    def _transport_error(self, exc: httpx.TransportError) -> NebulaError:
        if isinstance(exc, httpx.ConnectError):
            if self.socket is not None:
                return DaemonUnavailableError(
                    f"no nebulad is running (socket {self.socket}): start it with `nebulad` or "
                    "`nebula daemon run`; `nebula apply` still works without it"
                )
            return DaemonUnavailableError(
                f"no nebulad answers {self.where}: check the address and that nebulad listens "
                "on TCP; `nebula apply` still works without it"
            )
        if isinstance(exc, httpx.TimeoutException):
            return DaemonError(0, f"nebulad {self.where} did not answer in time")
        return DaemonError(0, f"lost the connection to nebulad {self.where}: {exc}")

    def _refusal(self, response: httpx.Response) -> DaemonError:
        try:
            message = str(response.json()["error"])
        except (json.JSONDecodeError, KeyError, TypeError):
            message = response.text.strip()[:200] or response.reason_phrase
        if response.status_code == 401:
            hint = "log in with `nebula login URL`, or set NEBULA_TOKEN to an API key"
            message = f"nebulad {self.where} refused the request ({message}): {hint}"
        return DaemonError(response.status_code, message)


def _segment(text: str) -> str:
    """`text` as one segment of a URL path: a `/` or `?` in an id never reaches another route."""
    return quote(text, safe="")


def parse_sse(lines: Iterator[str]) -> Iterator[StreamItem]:
    """Server-sent events from their lines: `event:`/`data:` fields, `:` comments."""
    kind: str | None = None
    data: list[str] = []
    for line in lines:
        if line.startswith(":"):
            yield StreamItem(None, {"comment": line[1:].strip()})
            continue
        if line == "":
            if data or kind:
                yield StreamItem(kind or "message", _decode(data))
            kind, data = None, []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            kind = value
        elif field == "data":
            data.append(value)


def _decode(data: list[str]) -> dict[str, Any]:
    text = "\n".join(data)
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {"text": text}
    return value if isinstance(value, dict) else {"value": value}
