"""Who may call which route of nebulad's API: authentication, roles, rate limits.

Every route is made with `route(path, endpoint, methods, role=...)`: `role` is a `Role` (the
least role that may call it) or `PUBLIC` (the route proves its caller itself: the webhook's
signature, a login's password, a refresh token). There is no default, and `create_app` refuses
a plain `Route`: a route without a rule is a programming error, and a test walks every route.

`Authenticate` (middleware) finds the caller and puts its `Principal` in
`scope["nebula.principal"]`:
- unix socket: the kernel's peer credentials (`daemon.peer`); the daemon's own uid or root is
  `admin` (the socket owner could read the data dir anyway), anyone else gets 403;
- TCP: `Authorization: Bearer T`, where T is a JWT access token from `/auth/login`, an API key
  (`nbk_...`), a node's service token (`nbs_...`), or the configured static token (admin).
  A browser logged in with `"cookie": true` sends its access token as the httpOnly
  `SESSION_COOKIE` instead; a request that changes something must then carry the session's CSRF
  token in `CSRF_HEADER` (the dashboard's pages send it), else 403.
  A missing or bad credential is 401 on every path but the public ones and those under
  `browser_prefixes` (the dashboard's, whose pages send an anonymous caller to log in), so the
  API's shape is not shown to strangers. Rate limits (token buckets) apply per client address before the
  credential is looked at (but on `proxied_paths`, which a proxy asks for all its clients),
  and per credential after: 429 with `Retry-After`.
The route then checks the principal's role: 401 without one, 403 when it is too low.
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Final, Literal, Protocol
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request, cookie_parser
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from nebula.daemon.peer import PEER_KEY, Peer
from nebula.identity.principal import SCOPE_KEY, Principal, Role
from nebula.identity.ratelimit import RateLimiter
from nebula.kinds.routes.types import SESSION_COOKIE

PUBLIC: Final = "public"
Access = Role | Literal["public"]
Endpoint = Callable[[Request], Awaitable[Response]]
CSRF_HEADER: Final = "X-Nebula-CSRF"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


class BearerVerifier(Protocol):
    """What checks TCP bearer tokens (`identity.sessions.Sessions`)."""

    def verify_bearer(self, token: str) -> Principal | None: ...

    def needs_io(self, token: str) -> bool:
        """True when verifying may block on the store: it then runs on a worker thread."""
        ...

    def csrf_token(self, session: str) -> str:
        """The CSRF token a browser's changes must carry with the session cookie `session`."""
        ...


class GuardedRoute(Route):
    """A route that knows the least role allowed to call it, and checks it."""

    def __init__(
        self,
        path: str,
        endpoint: Endpoint,
        *,
        methods: list[str],
        access: Access,
        login: str | None = None,
    ):
        self.access: Access = access
        super().__init__(path, _guarded(endpoint, access, login), methods=methods)


def route(
    path: str, endpoint: Endpoint, methods: list[str], *, role: Access, login: str | None = None
) -> GuardedRoute:
    """`login`: a browser's page; an anonymous caller is sent to that login page, not refused."""
    return GuardedRoute(path, endpoint, methods=methods, access=role, login=login)


def principal_of(request: Request) -> Principal | None:
    found = request.scope.get(SCOPE_KEY)
    return found if isinstance(found, Principal) else None


def caller(request: Request) -> Principal:
    """The principal of a guarded route's request (its guard let no anonymous caller in)."""
    principal = principal_of(request)
    if principal is None:
        raise HTTPException(401, "authentication required")
    return principal


def _guarded(endpoint: Endpoint, access: Access, login: str | None) -> Endpoint:
    if access == PUBLIC:
        return endpoint

    async def guarded(request: Request) -> Response:
        principal = principal_of(request)
        if principal is None and login is not None:
            return RedirectResponse(f"{login}?next={quote(request.url.path)}", 303)
        if principal is None:
            return _refuse(401, "authentication required", "Bearer")
        if not principal.may(access):
            return _refuse(
                403,
                f"{principal.name} is a {principal.role.name}; this needs the "
                f"{access.name} role or higher",
            )
        return await endpoint(request)

    return guarded


class Authenticate:
    """Finds the caller of every HTTP request (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        tcp: bool,
        public_paths: Collection[str],
        browser_prefixes: Collection[str] = (),
        proxied_paths: Collection[str] = (),
        static_token: str | None = None,
        verifier: BearerVerifier | None = None,
        per_client: RateLimiter | None = None,
        per_credential: RateLimiter | None = None,
    ) -> None:
        self.app = app
        self.tcp = tcp
        self.public_paths = frozenset(public_paths)
        self.browser_prefixes = tuple(browser_prefixes)
        # asked by a proxy for many browsers (the login check): not limited per client
        # address, which is the proxy's, only per credential
        self.proxied_paths = frozenset(proxied_paths)
        self.static_token = static_token.encode() if static_token else None
        self.verifier = verifier
        self.per_client = per_client
        self.per_credential = per_credential

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.tcp:
            refusal, principal = await self._tcp(scope)
        else:
            refusal, principal = self._socket(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        scope[SCOPE_KEY] = principal
        await self.app(scope, receive, send)

    def _socket(self, scope: Scope) -> tuple[Response | None, Principal | None]:
        peer = scope.get(PEER_KEY)
        if not isinstance(peer, Peer) or not peer.trusted():
            who = f"uid {peer.uid}" if isinstance(peer, Peer) else "an unknown peer"
            return _refuse(403, f"{who} may not use this socket: it serves its owner only"), None
        return None, Principal(f"uid:{peer.uid}", Role.admin, "socket", f"uid:{peer.uid}")

    async def _tcp(self, scope: Scope) -> tuple[Response | None, Principal | None]:
        client = scope.get("client")
        address = str(client[0]) if client else "unknown"
        path: str = scope["path"]
        if (
            self.per_client is not None
            and path not in self.proxied_paths
            and (wait := self.per_client.take(f"addr:{address}"))
        ):
            return _too_many(wait), None
        public = path in self.public_paths
        anonymous_ok = public or path.startswith(self.browser_prefixes)
        headers = Headers(scope=scope)
        scheme, _, given = headers.get("authorization", "").partition(" ")
        given = given.strip()
        if not scheme and self.verifier is not None:
            session = cookie_parser(headers.get("cookie", "")).get(SESSION_COOKIE)
            if session:
                return await self._session(scope, headers, session, public, anonymous_ok)
        if not scheme:
            if anonymous_ok:
                return None, None
            return _refuse(
                401, "missing bearer token: send Authorization: Bearer TOKEN", "Bearer"
            ), None
        principal = None
        if scheme.lower() == "bearer" and given:
            principal = await self._verify(given)
        if principal is None:
            if anonymous_ok:  # the route proves its caller itself; a stale token does not matter
                return None, None
            return _refuse(401, "invalid bearer token", 'Bearer error="invalid_token"'), None
        return self._limited(principal)

    async def _session(
        self, scope: Scope, headers: Headers, session: str, public: bool, anonymous_ok: bool
    ) -> tuple[Response | None, Principal | None]:
        """A browser's session cookie: its access token, and for a change its CSRF token."""
        assert self.verifier is not None
        principal = await self._verify_session(session)
        if principal is None:
            if anonymous_ok:
                return None, None
            return _refuse(401, "the session has expired or was revoked: log in again"), None
        if scope["method"] not in SAFE_METHODS:
            sent = headers.get(CSRF_HEADER, "").encode()
            if not hmac.compare_digest(sent, self.verifier.csrf_token(session).encode()):
                if public:  # a login or logout proves its caller itself
                    return None, None
                return _refuse(
                    403,
                    f"missing or wrong {CSRF_HEADER} header: a change made with a browser's "
                    "session cookie must come from the dashboard's pages",
                ), None
        return self._limited(principal)

    def _limited(self, principal: Principal) -> tuple[Response | None, Principal | None]:
        if self.per_credential is not None and (
            wait := self.per_credential.take(principal.credential)
        ):
            return _too_many(wait), None
        return None, principal

    async def _verify_session(self, token: str) -> Principal | None:
        """A token `verifier` accepts (a session cookie holds one of them too)."""
        assert self.verifier is not None
        if self.verifier.needs_io(token):
            return await run_in_threadpool(self.verifier.verify_bearer, token)
        return self.verifier.verify_bearer(token)  # verified a moment ago: microseconds

    async def _verify(self, token: str) -> Principal | None:
        if self.static_token is not None and hmac.compare_digest(token.encode(), self.static_token):
            return Principal("token", Role.admin, "static_token", "static-token")
        if self.verifier is None:
            return None
        return await self._verify_session(token)


def _too_many(wait: float) -> Response:
    return _refuse(
        429,
        "too many requests: slow down",
        headers={"Retry-After": str(max(1, math.ceil(wait)))},
    )


def _refuse(
    status: int,
    message: str,
    challenge: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    extra = dict(headers or {})
    if challenge:
        extra["WWW-Authenticate"] = challenge
    return Response(
        json.dumps({"error": message}),
        status_code=status,
        headers=extra,
        media_type="application/json",
    )
