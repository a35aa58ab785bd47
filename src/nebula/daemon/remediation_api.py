"""The API's remediation routes: incidents, alerts, silences, runbooks, workflows and their runs.

    GET    /api/v1/incidents?status=S&limit=N    {"incidents": [...]}, newest first (S: open,
                                                 acknowledged, resolved; N: 1..1000, 100)
    GET    /api/v1/incidents/{id}                the incident with its timeline, oldest first
    POST   /api/v1/incidents/{id}/acknowledge    the incident; 409 when acknowledged or resolved
    POST   /api/v1/incidents/{id}/resolve        body {"resolution"?}; 409 when resolved already
    POST   /api/v1/alerts                        body {"name", "labels"?, "annotations"?,
                                                 "status"?: firing|resolved}: {outcome, incident}
    POST   /api/v1/alerts/alertmanager           Alertmanager's webhook_config payload (version
                                                 4): {"alerts": [{outcome, incident}, ...]}
    GET    /api/v1/silences                      {"silences": [...]}: those in force
    POST   /api/v1/silences                      body {"matchers": ["installation=blog", ...],
                                                 "duration": "2h" or seconds, "comment"?}: 201
    DELETE /api/v1/silences/{id}                 {"removed": id}; 404, or 409 when it ended
    GET    /api/v1/runbooks                      {"runbooks": [...]}: those of the last sync
    POST   /api/v1/runbooks/{name}/run           body {"labels"?, "dry_run"?}: the run's end
                                                 ({status, error}), or the steps it would take
    GET    /api/v1/runbooks/executions?runbook=R&incident=I&limit=N   {"executions": [...]}
    GET    /api/v1/runbooks/executions/{id}      one run with each step's state
    POST   /api/v1/runbooks/executions/{id}/approve|reject   the step it waits on; 409 when
                                                 it waits for none
    GET    /api/v1/workflows                     {"workflows": [...]}: those of the last sync,
                                                 each with its next run and its last run
    POST   /api/v1/workflows/{name}/run          202 {"run": id}; 409 when skipped (one is
                                                 going), 400 when not `on: {manual: true}`
    GET    /api/v1/workflows/runs?workflow=W&limit=N   {"runs": [...]}, newest first (N: 50)
    GET    /api/v1/workflows/runs/{id}           one run with each finished step's state
    POST   /api/v1/workflows/runs/{id}/cancel    202 {"run": id}: it stops; 409 when not running

Reads need a viewer, the rest an operator (Alertmanager sends an API key as its bearer token:
`http_config: {authorization: {credentials: nbk_...}}`). People named on timelines and
executions are the callers as the audit log names them (`user:alice`, `apikey:ci`).
"""

from __future__ import annotations

from typing import Any, get_args

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from nebula.daemon.audit import actor_of
from nebula.daemon.auth import GuardedRoute, principal_of, route
from nebula.daemon.auth_api import JsonBody, JsonResponse
from nebula.daemon.control import ControlError, DaemonControl
from nebula.daemon.params import query_limit
from nebula.identity.principal import Role
from nebula.spec.base import parse_duration
from nebula.store.records import IncidentStatus

PREFIX = "/api/v1"


def remediation_routes(
    control: DaemonControl, json_body: JsonBody, json: JsonResponse
) -> list[GuardedRoute]:
    """The routes; `json_body(request)` and `json(value, status, headers)` are the API's own."""
    api = _RemediationApi(control, json_body, json)
    viewer, operator = Role.viewer, Role.operator
    incident = f"{PREFIX}/incidents/{{incident_id}}"
    execution = f"{PREFIX}/runbooks/executions/{{execution_id}}"
    workflow_run = f"{PREFIX}/workflows/runs/{{run_id}}"
    return [
        route(f"{PREFIX}/incidents", api.incidents, ["GET"], role=viewer),
        route(incident, api.incident, ["GET"], role=viewer),
        route(f"{incident}/acknowledge", api.acknowledge, ["POST"], role=operator),
        route(f"{incident}/resolve", api.resolve, ["POST"], role=operator),
        route(f"{PREFIX}/alerts", api.fire, ["POST"], role=operator),
        route(f"{PREFIX}/alerts/alertmanager", api.alertmanager, ["POST"], role=operator),
        route(f"{PREFIX}/silences", api.silences, ["GET"], role=viewer),
        route(f"{PREFIX}/silences", api.add_silence, ["POST"], role=operator),
        route(f"{PREFIX}/silences/{{silence_id}}", api.remove_silence, ["DELETE"], role=operator),
        route(f"{PREFIX}/runbooks", api.runbooks, ["GET"], role=viewer),
        route(f"{PREFIX}/runbooks/executions", api.executions, ["GET"], role=viewer),
        route(execution, api.execution, ["GET"], role=viewer),
        route(f"{execution}/approve", api.approve, ["POST"], role=operator),
        route(f"{execution}/reject", api.reject, ["POST"], role=operator),
        route(f"{PREFIX}/runbooks/{{name}}/run", api.run, ["POST"], role=operator),
        route(f"{PREFIX}/workflows", api.workflows, ["GET"], role=viewer),
        route(f"{PREFIX}/workflows/runs", api.workflow_runs, ["GET"], role=viewer),
        route(workflow_run, api.workflow_run, ["GET"], role=viewer),
        route(f"{workflow_run}/cancel", api.cancel_workflow_run, ["POST"], role=operator),
        route(f"{PREFIX}/workflows/{{name}}/run", api.run_workflow, ["POST"], role=operator),
    ]


class _RemediationApi:
    def __init__(self, control: DaemonControl, json_body: JsonBody, json: JsonResponse) -> None:
        self.control = control
        self.json_body = json_body
        self.json = json

    def _ok(self, value: Any, status: int = 200) -> Response:
        return self.json(value, status, None)

    async def incidents(self, request: Request) -> Response:
        status = request.query_params.get("status") or None
        if status is not None and status not in get_args(IncidentStatus):
            states = ", ".join(get_args(IncidentStatus))
            raise ControlError("invalid", f"status {status!r}: use one of {states}")
        limit = query_limit(request, 100)
        found = await run_in_threadpool(self.control.incidents, status, limit)
        return self._ok({"incidents": found})

    async def incident(self, request: Request) -> Response:
        incident_id = request.path_params["incident_id"]
        return self._ok(await run_in_threadpool(self.control.incident, incident_id))

    async def acknowledge(self, request: Request) -> Response:
        incident_id = request.path_params["incident_id"]
        done = await run_in_threadpool(
            self.control.acknowledge_incident, incident_id, _actor(request)
        )
        return self._ok(done)

    async def resolve(self, request: Request) -> Response:
        incident_id = request.path_params["incident_id"]
        resolution = _text(await self.json_body(request), "resolution")
        done = await run_in_threadpool(
            self.control.resolve_incident, incident_id, _actor(request), resolution
        )
        return self._ok(done)

    async def fire(self, request: Request) -> Response:
        body = await self.json_body(request)
        return self._ok(await run_in_threadpool(self.control.fire_alert, body, _actor(request)))

    async def alertmanager(self, request: Request) -> Response:
        body = await self.json_body(request)
        return self._ok({"alerts": await run_in_threadpool(self.control.alertmanager, body)})

    async def silences(self, request: Request) -> Response:
        return self._ok({"silences": await run_in_threadpool(self.control.silences)})

    async def add_silence(self, request: Request) -> Response:
        body = await self.json_body(request)
        matchers = body.get("matchers")
        if (
            not isinstance(matchers, list)
            or not matchers
            or not all(isinstance(m, str) for m in matchers)
        ):
            raise ControlError(
                "invalid", 'give what to silence: {"matchers": ["installation=blog"], ...}'
            )
        if "duration" not in body:
            raise ControlError("invalid", 'give how long to silence it: {"duration": "2h"}')
        try:
            duration = parse_duration(body["duration"])
        except ValueError as exc:
            raise ControlError("invalid", f"duration: {exc}") from None
        comment = _text(body, "comment")
        silence = await run_in_threadpool(
            self.control.add_silence, matchers, duration, comment, _actor(request)
        )
        return self._ok(silence, 201)

    async def remove_silence(self, request: Request) -> Response:
        silence_id = request.path_params["silence_id"]
        await run_in_threadpool(self.control.remove_silence, silence_id, _actor(request))
        return self._ok({"removed": silence_id})

    async def runbooks(self, request: Request) -> Response:
        return self._ok({"runbooks": await run_in_threadpool(self.control.runbooks)})

    async def run(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await self.json_body(request)
        labels = body.get("labels") or {}
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise ControlError("invalid", '"labels" is an object of strings: {"service": "web"}')
        dry_run = body.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise ControlError("invalid", '"dry_run" is true or false')
        done = await run_in_threadpool(
            self.control.run_runbook, name, labels, _actor(request), dry_run
        )
        return self._ok(done)

    async def executions(self, request: Request) -> Response:
        params = request.query_params
        found = await run_in_threadpool(
            self.control.executions,
            params.get("runbook") or None,
            params.get("incident") or None,
            query_limit(request, 50),
        )
        return self._ok({"executions": found})

    async def execution(self, request: Request) -> Response:
        execution_id = request.path_params["execution_id"]
        return self._ok(await run_in_threadpool(self.control.execution, execution_id))

    async def approve(self, request: Request) -> Response:
        return await self._decide(request, approved=True)

    async def reject(self, request: Request) -> Response:
        return await self._decide(request, approved=False)

    async def _decide(self, request: Request, *, approved: bool) -> Response:
        execution_id = request.path_params["execution_id"]
        done = await run_in_threadpool(self.control.decide, execution_id, approved, _actor(request))
        return self._ok(done)

    async def workflows(self, request: Request) -> Response:
        return self._ok({"workflows": await run_in_threadpool(self.control.workflows)})

    async def run_workflow(self, request: Request) -> Response:
        name = request.path_params["name"]
        run_id = await run_in_threadpool(self.control.run_workflow, name, _actor(request))
        return self._ok({"run": run_id}, 202)

    async def workflow_runs(self, request: Request) -> Response:
        workflow = request.query_params.get("workflow") or None
        found = await run_in_threadpool(
            self.control.workflow_runs, workflow, query_limit(request, 50)
        )
        return self._ok({"runs": found})

    async def workflow_run(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        return self._ok(await run_in_threadpool(self.control.workflow_run, run_id))

    async def cancel_workflow_run(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        await run_in_threadpool(self.control.cancel_workflow_run, run_id, _actor(request))
        return self._ok({"run": run_id}, 202)


def _actor(request: Request) -> str:
    """The caller as the audit log names it: `user:alice`, `apikey:ci`, `uid:1000`."""
    return actor_of(principal_of(request), request.scope)


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key, "")
    if not isinstance(value, str):
        raise ControlError("invalid", f'"{key}" is text')
    return value
