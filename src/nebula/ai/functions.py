"""Running a function an agent calls: a built-in (`code`), a request to a URL (`http`) or a
one-shot container (`docker`).

Whatever a function answers, or says when it fails, passes through the caller's `mask` before
it is returned: a secret a tool read (a log line, a response echoing a header) never reaches
the model. The secret values this module resolves itself (`${secret:NAME}` in an `http`
function's headers) are masked here as well, whether or not `mask` knows them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from nebula.errors import NebulaError
from nebula.kinds.functions.types import DockerCall, FunctionDef, HttpCall
from nebula.providers.docker import DockerProvider
from nebula.spec.interpolate import secret_references, substitute_secrets
from nebula.stand_ins import MASK
from nebula.store.mask import secret_replacer

RESULT_LIMIT = 64 * 1024  # bytes of a response or a container's output kept
_EXCERPT = 500  # characters of a failed call's answer its error shows
_MARGIN = 4096  # bytes read past the limit
_CONNECT_TIMEOUT = 5.0


class FunctionError(NebulaError):
    """A function could not give its result: its message (masked) says why."""


@dataclass(frozen=True)
class FunctionContext:
    """What running a function reaches: the built-ins by name (nebulad's), a secret's value by
    name, the Docker Engine (opened when first needed), and the masking every result and error
    goes through."""

    builtins: Mapping[str, Callable[[dict[str, Any]], Any]]
    secret: Callable[[str], str]
    docker: Callable[[], DockerProvider]
    mask: Callable[[str], str]


def invoke_function(fn: FunctionDef, arguments: dict[str, Any], ctx: FunctionContext) -> str:
    """Run `fn` with `arguments` (already validated against its parameters): its result as
    text, masked, cut at `RESULT_LIMIT` bytes. A failure is a `FunctionError` with a masked
    message."""
    shown = _Shown(ctx.mask)
    try:
        if fn.implementation_type == "code":
            text = _code(fn, arguments, ctx)
        elif fn.implementation_type == "http":
            text = _http(fn, arguments, ctx.secret, shown)
        else:
            text = _docker(fn, arguments, ctx, shown)
    except FunctionError as exc:
        raise FunctionError(shown(str(exc))) from None
    except NebulaError as exc:  # a provider's, the vault's, an unknown installation
        raise FunctionError(shown(f"{fn.name}: {exc}")) from None
    return _cut(shown(text))


class _Shown:
    """Masking before anything is shown: the caller's, and the secrets resolved for the call."""

    def __init__(self, mask: Callable[[str], str]) -> None:
        self._mask = mask
        self._hide: Callable[[str], str] = str

    def revealed(self, values: list[str]) -> None:
        self._hide = secret_replacer(dict.fromkeys(values, MASK))

    def __call__(self, text: str) -> str:
        return self._hide(self._mask(text))


def _cut(text: str) -> str:
    """`text` cut at `RESULT_LIMIT` bytes, saying so."""
    data = text.encode()
    if len(data) <= RESULT_LIMIT:
        return text
    return data[:RESULT_LIMIT].decode(errors="ignore") + f"\n[cut at {RESULT_LIMIT} bytes]"


def _excerpt(text: str, *, end: bool = False) -> str:
    """The start (or the end) of a masked text, for an error."""
    text = text.strip()
    if len(text) <= _EXCERPT:
        return text or "(nothing)"
    return f"…{text[-_EXCERPT:]}" if end else f"{text[:_EXCERPT]}…"


def _code(fn: FunctionDef, arguments: dict[str, Any], ctx: FunctionContext) -> str:
    builtin = ctx.builtins.get(fn.implementation)
    if builtin is None:
        raise FunctionError(
            f"{fn.name}: the built-in {fn.implementation!r} is not available here "
            f"(available: {', '.join(sorted(ctx.builtins)) or 'none'})"
        )
    return json.dumps(builtin(arguments), separators=(",", ":"), ensure_ascii=False, default=str)


def _http(
    fn: FunctionDef, arguments: dict[str, Any], secret: Callable[[str], str], shown: _Shown
) -> str:
    call = fn.http or HttpCall()
    values = {name: secret(name) for v in call.headers.values() for name in secret_references(v)}
    shown.revealed(list(values.values()))
    headers = {key: substitute_secrets(text, values) for key, text in call.headers.items()}
    method = call.method.upper()
    url = fn.implementation
    try:
        with httpx.stream(
            method,
            url,
            params=_query(arguments) if method == "GET" else None,
            json=None if method == "GET" else arguments,
            headers=headers,
            timeout=httpx.Timeout(fn.timeout, connect=min(_CONNECT_TIMEOUT, fn.timeout)),
            follow_redirects=False,
        ) as response:
            text = _read(response)
    except httpx.HTTPError as exc:
        raise FunctionError(f"{fn.name}: {url}: {exc or type(exc).__name__}") from None
    if not response.is_success:
        moved = response.headers.get("location")
        hint = f" (a redirect to {moved}: redirects are not followed)" if moved else ""
        raise FunctionError(
            f"{fn.name}: {url} answered {response.status_code}{hint}: {_excerpt(shown(text))}"
        )
    return text


def _query(arguments: dict[str, Any]) -> dict[str, Any]:
    """A GET's arguments as query parameters: lists repeat, objects are JSON text."""
    return {
        key: json.dumps(value, separators=(",", ":")) if isinstance(value, dict) else value
        for key, value in arguments.items()
        if value is not None
    }


def _read(response: httpx.Response) -> str:
    """The body up to `RESULT_LIMIT` bytes and a margin (a secret across the cut is still
    whole when masked); the rest is never read."""
    data = bytearray()
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) > RESULT_LIMIT + _MARGIN:
            break
    return bytes(data[: RESULT_LIMIT + _MARGIN]).decode(errors="replace")


def _docker(fn: FunctionDef, arguments: dict[str, Any], ctx: FunctionContext, shown: _Shown) -> str:
    call = fn.docker or DockerCall()
    code, output = ctx.docker().run_once(
        fn.implementation,
        call.command,
        name=fn.name,
        stdin=json.dumps(arguments).encode(),
        network=call.network,
        memory=call.memory,
        cpus=call.cpus,
        timeout=fn.timeout,
    )
    if code is None:
        raise FunctionError(
            f"{fn.name}: no result within {fn.timeout:g}s; its container was killed "
            f"(output: {_excerpt(shown(output), end=True)})"
        )
    if code != 0:
        raise FunctionError(
            f"{fn.name}: exited with code {code}: {_excerpt(shown(output), end=True)}"
        )
    return output
