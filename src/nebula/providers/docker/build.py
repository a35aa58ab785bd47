"""Building an image with the Docker Engine's build API, its output streamed as it comes.

BuildKit (`POST /build?version=2`, API 1.39 and later) is used where the engine offers it: it
takes the tar context without a client session, and keeps its own build cache between builds
(nothing here prunes it). Its progress comes as `moby.buildkit.trace` events, each a protobuf
`StatusResponse` (base64), decoded here into plain progress lines like `docker build
--progress=plain` prints. An older engine gets the classic builder, whose output is text.

RUN steps join the engine's default bridge; an engine without one (`--bridge=none`) builds on
the host's network instead, since BuildKit has no other network to give them.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nebula.errors import ProviderError

if TYPE_CHECKING:
    import docker

BUILDKIT_API = (1, 39)
Output = Callable[[str], None]


def build_image(
    api: docker.APIClient,
    context: bytes,
    tag: str,
    *,
    dockerfile: str,
    buildargs: Mapping[str, str],
    labels: Mapping[str, str],
    timeout: float,
    output: Output,
) -> str:
    """Build `context` (a tar) as `tag`, handing each line of progress to `output`; the new
    image's id. A failed build, or one running longer than `timeout` seconds, is a
    `ProviderError` with the last lines of its output; the engine keeps its cache."""
    buildkit = _version(api.api_version) >= BUILDKIT_API
    params: dict[str, Any] = {
        "t": tag,
        "dockerfile": dockerfile,
        "buildargs": json.dumps(dict(buildargs)),
        "labels": json.dumps(dict(labels)),
        "rm": "1",
    }
    if buildkit:
        params |= {"version": "2", "networkmode": _network(api)}
    resource = f"image {tag}"
    response = api._post(  # the SDK's build() cannot ask for BuildKit
        api._url("/build"),
        params=params,
        data=context,
        headers={"Content-Type": "application/x-tar"},
        stream=True,
        timeout=None,
    )
    if response.status_code != 200:
        message = response.text.strip()
        response.close()
        raise ProviderError(resource, f"build refused: {response.status_code} {message}")
    expired = threading.Event()

    def stop() -> None:
        expired.set()
        response.close()

    timer = threading.Timer(timeout, stop)
    timer.start()
    progress = _Progress(output)
    image_id = ""
    try:
        for event in _events(response):
            if "error" in event:
                raise ProviderError(
                    resource,
                    f"build failed (fix the Dockerfile or the code); last lines:\n"
                    f"{progress.tail()}\n{str(event['error']).strip()}",
                    temporary=False,
                )
            image_id = progress.take(event) or image_id
    except (OSError, ValueError, AttributeError) as exc:
        if not expired.is_set():
            raise ProviderError(resource, f"build output cut short: {exc}") from None
    finally:
        timer.cancel()
        response.close()
    if expired.is_set():
        raise ProviderError(
            resource,
            f"build took longer than {timeout:g}s and was stopped (raise `build_timeout:`); "
            f"last lines:\n{progress.tail()}",
        )
    progress.flush()
    if not image_id:
        raise ProviderError(resource, f"the engine named no image; last lines:\n{progress.tail()}")
    return image_id


def _events(response: Any) -> Iterator[dict[str, Any]]:
    for line in response.iter_lines():
        if line:
            event = json.loads(line)
            if isinstance(event, dict):
                yield event


def _version(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


def _network(api: docker.APIClient) -> str:
    """`default` (the engine's bridge) when the engine has one, else `host`."""
    return "default" if api.networks(names=["bridge"]) else "host"


# -- progress --------------------------------------------------------------------------------


@dataclass
class _Vertex:
    number: int
    name: str
    announced: bool = False
    done: bool = False


@dataclass
class _Progress:
    """Build events → progress lines: classic `stream` text as it is, BuildKit's vertexes as
    `#N name`, their log lines, then `#N DONE`, `#N CACHED` or `#N ERROR: ...`."""

    output: Output
    vertexes: dict[str, _Vertex] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    partial: str = ""

    def take(self, event: dict[str, Any]) -> str | None:
        """Handle one event; the image id when it names it."""
        aux = event.get("aux")
        if event.get("id") == "moby.buildkit.trace" and isinstance(aux, str):
            self._trace(base64.b64decode(aux))
        elif isinstance(aux, dict) and aux.get("ID"):
            return str(aux["ID"])
        elif "stream" in event:
            self._text(str(event["stream"]))
        return None

    def tail(self, count: int = 15) -> str:
        return "\n".join(self.lines[-count:])

    def flush(self) -> None:
        if self.partial:
            self._emit(self.partial)
            self.partial = ""

    def _text(self, text: str) -> None:
        text = self.partial + text
        *whole, self.partial = text.split("\n")
        for line in whole:
            if line.strip():
                self._emit(line)

    def _emit(self, line: str) -> None:
        self.lines.append(line)
        del self.lines[:-200]
        self.output(line + "\n")

    def _trace(self, raw: bytes) -> None:
        status = _fields(raw)
        for vertex in status.get(1, []):
            self._vertex(_fields(vertex))
        for log in status.get(3, []):
            entry = _fields(log)
            digest = _text(entry, 1)
            known = self.vertexes.get(digest)
            prefix = f"#{known.number} " if known else ""
            for line in _text(entry, 4).splitlines():
                if line.strip():
                    self._emit(prefix + line)

    def _vertex(self, vertex: dict[int, list[Any]]) -> None:
        digest = _text(vertex, 1)
        name = _text(vertex, 3)
        known = self.vertexes.get(digest)
        if known is None:
            known = self.vertexes[digest] = _Vertex(len(self.vertexes) + 1, name)
        if not known.announced and (5 in vertex or 4 in vertex or 7 in vertex):
            known.announced = True
            self._emit(f"#{known.number} {known.name}")
        error = _text(vertex, 7)
        if known.done:
            return
        if error:
            known.done = True
            self._emit(f"#{known.number} ERROR: {error}")
        elif vertex.get(4, [0])[0]:
            known.done = True
            self._emit(f"#{known.number} CACHED")
        elif 6 in vertex:
            known.done = True
            self._emit(f"#{known.number} DONE")


def _text(message: dict[int, list[Any]], number: int) -> str:
    values = message.get(number)
    if not values or not isinstance(values[0], bytes):
        return ""
    return values[0].decode(errors="replace")


def _fields(data: bytes) -> dict[int, list[Any]]:
    """A protobuf message's fields by number: varints as ints, length-delimited as bytes (no
    schema needed for the few fields read; others are skipped)."""
    fields: dict[int, list[Any]] = {}
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"protobuf wire type {wire} not expected in build progress")
        fields.setdefault(number, []).append(value)
    return fields


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated protobuf varint in build progress")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
