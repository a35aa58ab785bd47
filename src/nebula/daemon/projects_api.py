"""The API's projects routes: the config repo's projects, their files, their deployments.

    GET    /api/v1/projects                     {"projects": [...]}: those of the last sync
    POST   /api/v1/projects                     body: a project as projects/NAME.yaml holds it
                                                (JSON, with its "name"): 201 {commit, message,
                                                files}; 409 when it exists, 422 {error,
                                                problems: [{file, line, column, field,
                                                message}]} when the repo would not validate
    GET    /api/v1/projects/{name}              the project: where its code is, environments
    PUT    /api/v1/projects/{name}              as POST, for a project that exists (404 else)
    DELETE /api/v1/projects/{name}              {commit, message, files}: its file removed (a
                                                `path:` project's code stays in the repo)
    GET    /api/v1/projects/{name}/files?environment=E   {project, branch, commit, files:
                                                [{path, size, kind: file|symlink}], truncated}
    GET    /api/v1/projects/{name}/files/{path}?environment=E   {path, commit, size,
                                                encoding: utf-8|base64, content}
    PUT    /api/v1/projects/{name}/files/{path} body {"content", "encoding"?: utf-8|base64,
                                                "message"?, "environment"?}: {path, commit,
                                                message}, a commit with the caller as author,
                                                pushed where the project lives
    POST   /api/v1/projects/{name}/deploy       body {"environment"?, "commit"?}: 202, the
                                                deployment started (pending); it builds the
                                                commit (default: the branch's head) and
                                                switches the environment (default: the first)
    POST   /api/v1/projects/{name}/rollback     body {"environment"?, "to"?}: 202, the
                                                deployment started: a kept image (`to`: a
                                                commit or its prefix; default: the one live
                                                before), no build; 409 when none is kept
    GET    /api/v1/projects/{name}/deployments?environment=E&limit=N   {"deployments":
                                                [...]}, newest first (N: 50)
    GET    /api/v1/projects/{name}/deployments/{id}   the deployment with its build output
                                                (`logs`, secrets masked)
    POST   /api/v1/projects/{name}/open         body {"environment"?, "port"?}: the IDE (the
                                                catalog's code-server, `ide-NAME`) on a working
                                                copy of the project's repo, exposed at
                                                ide.HOST: 202 {installation, url, workspace,
                                                password_secret, commit, port} when installed
                                                now, 200 (commit null) when it was already

A `git_url:` project's files are those of an environment's branch (`environment`, default the
first); a `path:` project's are its folder of the config repo. Paths are checked by
`engine.project_files`: `..`, absolute paths, NUL bytes, `.git` and symlinks that leave the
project are refused (400), and so is any write through a symlink; a file over 512 KiB is
neither read nor written (400).

Reads need a viewer; commits and deployments an operator. Each mutation is in the audit log
(`daemon.audit.ACTIONS`; a file's content and a project's values never are, only their field
names).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from nebula.daemon.ai_api import named_document
from nebula.daemon.audit import actor_of
from nebula.daemon.auth import GuardedRoute, principal_of, route
from nebula.daemon.auth_api import JsonBody, JsonResponse
from nebula.daemon.catalog_api import InvalidEditError
from nebula.daemon.control import ControlError, DaemonControl
from nebula.daemon.params import query_limit
from nebula.daemon.projects import ProjectDesk
from nebula.identity.principal import Role

PREFIX = "/api/v1"
PROJECTS = f"{PREFIX}/projects"


def projects_routes(
    control: DaemonControl, json_body: JsonBody, json: JsonResponse
) -> list[GuardedRoute]:
    """The routes; `json_body(request)` and `json(value, status, headers)` are the API's own."""
    api = _ProjectsApi(control, json_body, json)
    viewer, operator = Role.viewer, Role.operator
    project = f"{PROJECTS}/{{name}}"
    return [
        route(PROJECTS, api.projects, ["GET"], role=viewer),
        route(PROJECTS, api.create, ["POST"], role=operator),
        route(project, api.project, ["GET"], role=viewer),
        route(project, api.update, ["PUT"], role=operator),
        route(project, api.remove, ["DELETE"], role=operator),
        route(f"{project}/files", api.files, ["GET"], role=viewer),
        route(f"{project}/files/{{path:path}}", api.read, ["GET"], role=viewer),
        route(f"{project}/files/{{path:path}}", api.write, ["PUT"], role=operator),
        route(f"{project}/deploy", api.deploy, ["POST"], role=operator),
        route(f"{project}/rollback", api.rollback, ["POST"], role=operator),
        route(f"{project}/deployments", api.deployments, ["GET"], role=viewer),
        route(f"{project}/open", api.open_ide, ["POST"], role=operator),
        route(f"{project}/deployments/{{deployment_id}}", api.deployment, ["GET"], role=viewer),
    ]


class _ProjectsApi:
    def __init__(self, control: DaemonControl, json_body: JsonBody, json: JsonResponse) -> None:
        self.control = control
        self.json_body = json_body
        self.json = json

    @property
    def desk(self) -> ProjectDesk:
        return self.control.project_desk

    def _ok(self, value: Any, status: int = 200) -> Response:
        return self.json(value, status, None)

    async def projects(self, request: Request) -> Response:
        return self._ok({"projects": await run_in_threadpool(self.desk.projects)})

    async def project(self, request: Request) -> Response:
        return self._ok(await run_in_threadpool(self.desk.project, request.path_params["name"]))

    async def create(self, request: Request) -> Response:
        return await self._save(request, create=True)

    async def update(self, request: Request) -> Response:
        return await self._save(request, create=False)

    async def remove(self, request: Request) -> Response:
        name = request.path_params["name"]
        return self._ok(await run_in_threadpool(self.desk.remove, name, _actor(request)))

    async def files(self, request: Request) -> Response:
        name = request.path_params["name"]
        environment = request.query_params.get("environment")
        return self._ok(await run_in_threadpool(self.desk.files, name, environment))

    async def read(self, request: Request) -> Response:
        name, path = request.path_params["name"], request.path_params["path"]
        environment = request.query_params.get("environment")
        return self._ok(await run_in_threadpool(self.desk.read, name, path, environment))

    async def write(self, request: Request) -> Response:
        name, path = request.path_params["name"], request.path_params["path"]
        body = await self.json_body(request)
        content = _content(body)
        message, environment = _text(body, "message"), _text(body, "environment")
        done = await run_in_threadpool(
            lambda: self.desk.write(
                name, path, content, _actor(request), message=message, environment=environment
            )
        )
        return self._ok(done)

    async def deploy(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await self.json_body(request)
        environment, commit = _text(body, "environment"), _text(body, "commit")
        actor = _actor(request)
        started = await run_in_threadpool(self.desk.deploy, name, environment, commit, actor)
        return self._ok(started, 202)

    async def rollback(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await self.json_body(request)
        environment, to = _text(body, "environment"), _text(body, "to")
        return self._ok(await run_in_threadpool(self.desk.rollback, name, environment, to), 202)

    async def deployments(self, request: Request) -> Response:
        name = request.path_params["name"]
        environment = request.query_params.get("environment")
        limit = query_limit(request, 50)
        found = await run_in_threadpool(self.desk.deployments, name, environment, limit)
        return self._ok({"deployments": found})

    async def deployment(self, request: Request) -> Response:
        name, deployment_id = request.path_params["name"], request.path_params["deployment_id"]
        return self._ok(await run_in_threadpool(self.desk.deployment, name, deployment_id))

    async def open_ide(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await self.json_body(request)
        environment, port = _text(body, "environment"), body.get("port")
        if port is not None and (type(port) is not int or not 1 <= port <= 65535):
            raise ControlError("invalid", '"port" is a port number, 1 to 65535')
        actor = _actor(request)
        done = await run_in_threadpool(self.desk.open_ide, name, environment, port, actor)
        return self._ok(done, 202 if done["commit"] else 200)

    async def _save(self, request: Request, *, create: bool) -> Response:
        """Commit `projects/NAME.yaml` from the body (NAME: the path's, else the body's)."""
        body = await self.json_body(request)
        name, document = named_document(request, body, "blog")
        try:
            done = await run_in_threadpool(
                lambda: self.desk.save(name, document, _actor(request), create=create)
            )
        except InvalidEditError as exc:
            problems = [issue.__dict__ for issue in exc.issues]
            return self._ok({"error": str(exc), "problems": problems}, 422)
        return self._ok(done, 201 if create else 200)


def _actor(request: Request) -> str:
    """The caller as the audit log and commits name it: `user:alice`, `key:ci`, ..."""
    return actor_of(principal_of(request), request.scope)


def _content(body: dict[str, Any]) -> bytes:
    content, encoding = body.get("content"), body.get("encoding", "utf-8")
    if not isinstance(content, str):
        raise ControlError("invalid", 'give the file\'s content: {"content": "..."}')
    if encoding == "utf-8":
        return content.encode("utf-8")
    if encoding == "base64":
        try:
            return base64.b64decode(content, validate=True)
        except binascii.Error:
            raise ControlError("invalid", '"content" is not valid base64') from None
    raise ControlError("invalid", '"encoding" is "utf-8" (the default) or "base64"')


def _text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ControlError("invalid", f'"{key}" is a non-empty string')
    return value
