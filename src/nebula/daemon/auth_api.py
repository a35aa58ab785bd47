"""The API's identity routes: logging in and out, and admin routes for users and API keys.

    POST   /api/v1/auth/login      {"user", "password", "cookie"?} -> tokens (public)
    POST   /api/v1/auth/refresh    {"refresh_token"} or the cookie -> new tokens (public)
    POST   /api/v1/auth/logout     {"refresh_token"} or the cookie: the login is revoked (public)
    GET    /api/v1/auth/whoami     the caller's principal (viewer)
    GET    /api/v1/auth/check      Caddy's question for a route with `auth: nebula` (public)
    GET    /api/v1/users           {"users": [...]} (admin)
    GET    /api/v1/apikeys         {"keys": [...]}: API keys and service tokens (admin)
    POST   /api/v1/apikeys         {"name", "scope", "service"?} -> 201 with the token, shown once
    DELETE /api/v1/apikeys/{id}    the revoked key (admin)

Tokens answer `{"access_token", "token_type": "Bearer", "expires_in", "refresh_token", "user",
"role"}`. A browser sends `"cookie": true` to log in: the refresh token then comes only as an
httpOnly, Secure, SameSite=Strict cookie scoped to /api/v1/auth (never readable by scripts),
and refresh and logout read it from there; the access token comes as the httpOnly, Secure,
SameSite=Strict `SESSION_COOKIE` for the whole site, which `daemon.auth` accepts in place of a
bearer header (a change with it needs the session's CSRF token too). A refused login is 401; a locked-out one 429 with
`Retry-After`.

The check answers Caddy's forward-auth request for a route behind the login (see
`kinds.routes.desired`): Caddy sends the request's headers, its method in `X-Forwarded-Method`
and its path in `X-Forwarded-Uri`, and lets the request through on a 2xx only. Only a user's
session cookie counts (no bearer header, no API key), and only an operator or admin passes.
A request that changes something, or opens a websocket, must also come from the hostname's
own origin: the cookie is SameSite=Strict, but a page of another hostname of the same domain
is the same site.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from nebula.daemon.auth import (
    PUBLIC,
    SAFE_METHODS,
    GuardedRoute,
    caller,
    principal_of,
    route,
)
from nebula.daemon.control import ControlError
from nebula.daemon.ui import LOGIN
from nebula.identity import accounts
from nebula.identity.principal import Role
from nebula.identity.sessions import AuthError, Sessions, TokenPair
from nebula.kinds.routes.types import LOGIN_CHECK, SESSION_COOKIE
from nebula.store.identity import IdentityError, MakerGoneError

COOKIE = "nebula_refresh"
AUTH_PATH = "/api/v1/auth"
JsonBody = Callable[[Request], Awaitable[dict[str, Any]]]
JsonResponse = Callable[[Any, int, Mapping[str, str] | None], Response]


def auth_routes(
    sessions: Sessions | None, json_body: JsonBody, json: JsonResponse
) -> list[GuardedRoute]:
    """The routes; `json_body(request)` and `json(value, status, headers)` are the API's own."""
    api = _AuthApi(sessions, json_body, json)
    admin = Role.admin
    return [
        route(f"{AUTH_PATH}/login", api.login, ["POST"], role=PUBLIC),
        route(f"{AUTH_PATH}/refresh", api.refresh, ["POST"], role=PUBLIC),
        route(f"{AUTH_PATH}/logout", api.logout, ["POST"], role=PUBLIC),
        route(f"{AUTH_PATH}/whoami", api.whoami, ["GET"], role=Role.viewer),
        route(LOGIN_CHECK, check, ["GET"], role=PUBLIC),
        route("/api/v1/users", api.users, ["GET"], role=admin),
        route("/api/v1/apikeys", api.keys, ["GET"], role=admin),
        route("/api/v1/apikeys", api.create_key, ["POST"], role=admin),
        route("/api/v1/apikeys/{prefix}", api.revoke_key, ["DELETE"], role=admin),
    ]


class _AuthApi:
    def __init__(self, sessions: Sessions | None, json_body: JsonBody, json: JsonResponse) -> None:
        self._sessions = sessions
        self.json_body = json_body
        self.json = json

    @property
    def sessions(self) -> Sessions:
        if self._sessions is None:
            raise ControlError("invalid", "this daemon has no user accounts: logins are off")
        return self._sessions

    async def login(self, request: Request) -> Response:
        body = await self.json_body(request)
        user, password = body.get("user"), body.get("password")
        if not isinstance(user, str) or not isinstance(password, str):
            raise ControlError("invalid", 'give {"user": NAME, "password": PASSWORD}')
        address = request.client.host if request.client else "unix socket"
        try:
            pair = await run_in_threadpool(self.sessions.login, user, password, address)
        except AuthError as exc:
            return self._refused(exc)
        return self._tokens(pair, cookie=body.get("cookie") is True)

    async def refresh(self, request: Request) -> Response:
        token, from_cookie = await self._refresh_token(request)
        try:
            pair = await run_in_threadpool(self.sessions.refresh, token)
        except AuthError as exc:
            return self._refused(exc, clear_cookie=from_cookie)
        return self._tokens(pair, cookie=from_cookie)

    async def logout(self, request: Request) -> Response:
        token, _ = await self._refresh_token(request)
        revoked = await run_in_threadpool(self.sessions.logout, token)
        response = self.json({"revoked": revoked}, 200, None)
        _forget_cookies(response)
        return response

    async def whoami(self, request: Request) -> Response:
        principal = caller(request)
        who = {"name": principal.name, "role": principal.role.name, "method": principal.method}
        return self.json(who, 200, None)

    async def users(self, request: Request) -> Response:
        found = await run_in_threadpool(accounts.users, self.sessions.store)
        return self.json({"users": found}, 200, None)

    async def keys(self, request: Request) -> Response:
        found = await run_in_threadpool(accounts.keys, self.sessions.store)
        return self.json({"keys": found}, 200, None)

    async def create_key(self, request: Request) -> Response:
        body = await self.json_body(request)
        name, scope = body.get("name"), body.get("scope", "read")
        if not isinstance(name, str) or not isinstance(scope, str):
            raise ControlError("invalid", 'give {"name": NAME, "scope": "read|write|admin"}')
        principal = principal_of(request)
        try:
            info, token = await run_in_threadpool(
                lambda: accounts.create_key(
                    self.sessions.store,
                    name,
                    scope,
                    service=body.get("service") is True,
                    created_by=principal.creator if principal else None,
                    maker=principal.maker if principal else None,
                )
            )
        except MakerGoneError as exc:  # revoked or removed since its bearer was last checked
            return self.json({"error": str(exc)}, 401, None)
        except IdentityError as exc:
            raise ControlError("invalid", str(exc)) from None
        return self.json({"key": info, "token": token}, 201, None)

    async def revoke_key(self, request: Request) -> Response:
        prefix: str = request.path_params["prefix"]
        try:
            info = await run_in_threadpool(accounts.revoke_key, self.sessions.store, prefix)
        except IdentityError as exc:
            raise ControlError("not_found", str(exc)) from None
        self.sessions.forget_verified()
        return self.json({"key": info}, 200, None)

    async def _refresh_token(self, request: Request) -> tuple[str, bool]:
        body = await self.json_body(request)
        token = body.get("refresh_token")
        if isinstance(token, str) and token:
            return token, False
        cookie = request.cookies.get(COOKIE)
        if cookie:
            return cookie, True
        raise ControlError("invalid", 'give {"refresh_token": TOKEN}, or log in with a cookie')

    def _tokens(self, pair: TokenPair, *, cookie: bool) -> Response:
        data = {
            "access_token": pair.access_token,
            "token_type": "Bearer",
            "expires_in": pair.expires_in,
            "user": pair.user,
            "role": pair.role,
        }
        if not cookie:
            data["refresh_token"] = pair.refresh_token
        response: Response = self.json(data, 200, {"Cache-Control": "no-store"})
        if cookie:
            response.set_cookie(
                COOKIE,
                pair.refresh_token,
                expires=pair.refresh_expires_at,
                path=AUTH_PATH,
                secure=True,
                httponly=True,
                samesite="strict",
            )
            response.set_cookie(
                SESSION_COOKIE,
                pair.access_token,
                max_age=pair.expires_in,
                path="/",
                secure=True,
                httponly=True,
                samesite="strict",
            )
        return response

    def _refused(self, exc: AuthError, *, clear_cookie: bool = False) -> Response:
        headers: dict[str, str] = {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        response: Response = self.json({"error": str(exc)}, exc.status, headers)
        if clear_cookie:
            _forget_cookies(response)
        return response


CHECK_ROLE = Role.operator  # who passes a route behind the login


async def check(request: Request) -> Response:
    """2xx: the request Caddy asks about may go on (see the module docstring)."""
    headers = request.headers
    principal = principal_of(request)
    if "authorization" in headers or (principal and principal.method != "password"):
        principal = None  # the middleware's bearer or key: not a browser's session
    method = headers.get("x-forwarded-method", "GET").upper()
    if principal is None:
        if method in SAFE_METHODS:
            target = quote(headers.get("x-forwarded-uri") or "/", safe="/")
            return RedirectResponse(f"{LOGIN}?next={target}", 302, _NO_STORE)
        return _plain(401, "log in first: this hostname is behind Nebula's login")
    if not principal.may(CHECK_ROLE):
        return _plain(
            403,
            f"{principal.name} is a {principal.role.name}; this hostname needs the "
            f"{CHECK_ROLE.name} role or higher",
        )
    if method not in SAFE_METHODS or "sec-websocket-key" in headers:
        origin = urlsplit(headers.get("origin", ""))
        if (origin.scheme, origin.netloc) != ("https", headers.get("host", "")):
            return _plain(
                403, "refused: a change or websocket must come from this hostname's pages"
            )
    return Response(status_code=204, headers=_NO_STORE)


_NO_STORE = {"Cache-Control": "no-store"}


def _plain(status: int, message: str) -> Response:
    return Response(message + "\n", status, _NO_STORE, media_type="text/plain")


def _forget_cookies(response: Response) -> None:
    response.delete_cookie(COOKIE, path=AUTH_PATH, secure=True, httponly=True)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True)
