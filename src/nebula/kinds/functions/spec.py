"""The model of a function (`functions/*.yaml`): the seed's fields (`name`, `description`,
`parameters`, `implementation`, `implementation_type`) and Nebula's (`timeout`,
`require_approval`, `http:`, `docker:`).

`parameters` is checked against JSON Schema's Draft 2020-12 metaschema (an error points at the
part of the schema at fault); what `implementation` must be depends on `implementation_type`:
a built-in's name (`code`), an http(s) URL (`http`) or an image reference (`docker`).
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal, NoReturn, Self

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import AfterValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from nebula.kinds.functions.types import BUILTINS, DockerCall, FunctionDef, HttpCall
from nebula.spec.base import Duration, StrictModel, Text, check_http_url
from nebula.spec.images import check_image
from nebula.spec.names import Name, excerpt

_CALLABLE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def _callable_name(name: str) -> str:
    if not _CALLABLE.fullmatch(name):
        raise ValueError(
            f"{excerpt(name)} cannot be a function's name: models call functions by names of "
            "a-z, 0-9, '_' and '-' (no '.')"
        )
    return name


FunctionName = Annotated[Name, AfterValidator(_callable_name)]


class HttpOptions(StrictModel):
    """How an `http` function calls its URL."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = Field(
        default="POST", description="GET sends the arguments as the query, others as JSON"
    )
    headers: dict[str, Text] = Field(
        default={}, description="request headers; write credentials as ${secret:NAME}"
    )


class DockerOptions(StrictModel):
    """How a `docker` function runs its image: once, the arguments as JSON on stdin."""

    command: list[Text] = Field(default=[], description="the command; unset: the image's")
    network: Name | None = Field(
        default=None, description="a Docker network the container joins; unset: no network"
    )
    memory: str = Field(
        default="256m", pattern=r"^[0-9]+[bkmg]?$", description="a memory limit, e.g. 256m, 1g"
    )
    cpus: float = Field(default=0.5, gt=0, le=64, description="CPUs it may use, e.g. 0.5")


class Function(StrictModel):
    name: FunctionName = Field(description="what agents' `tools:` and the model call it by")
    description: str = Field(
        default="",
        description="what it does, for the model choosing a tool; for code: the built-in's",
    )
    parameters: dict[str, Any] | None = Field(
        default=None,
        description="JSON Schema (type: object) of its arguments; for code: the built-in's",
    )
    implementation: str = Field(
        description="code: a built-in's name; http: a URL; docker: an image", min_length=1
    )
    implementation_type: Literal["code", "http", "docker"]
    timeout: Duration = Field(default=30.0, description="one call at most")
    require_approval: bool = Field(
        default=False, description="a person approves every call, whatever the agent says"
    )
    http: HttpOptions | None = Field(default=None, description="http functions only")
    docker: DockerOptions | None = Field(default=None, description="docker functions only")

    @field_validator("parameters")
    @classmethod
    def _json_schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is None:
            return None
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise PydanticCustomError(
                "json_schema",
                "not a valid JSON Schema (Draft 2020-12): {problem}",
                {"problem": exc.message, "at": tuple(exc.path)},
            ) from None
        if schema.get("type") != "object":
            raise PydanticCustomError(
                "object_schema",
                "arguments are an object: give `type: object` and its `properties`",
                {"at": ("type",) if "type" in schema else ()},
            )
        return schema

    @model_validator(mode="after")
    def _implementation(self) -> Self:
        kind = self.implementation_type
        for option in ("http", "docker"):
            if getattr(self, option) is not None and kind != option:
                _fail(f"`{option}:` is for {option} functions only; this one is {kind}", option)
        if kind == "code":
            if self.implementation not in BUILTINS:
                known = sorted(BUILTINS)
                close = difflib.get_close_matches(self.implementation, known, n=1)
                hint = f"did you mean {close[0]!r}?" if close else "built-ins: " + ", ".join(known)
                _fail(f"no built-in function {excerpt(self.implementation)}; {hint}")
            return self
        try:
            (check_http_url if kind == "http" else check_image)(self.implementation)
        except ValueError as exc:
            _fail(f"{kind} functions run {_WHAT[kind]}: {exc}")
        if self.parameters is None:
            _fail(f"give the JSON Schema of its arguments: required for {kind} functions", None)
        if not self.description:
            _fail("describe what it does: the model reads it to choose a tool", None)
        return self

    def definition(self, file: str = "") -> FunctionDef:
        """The function as the AI runtime calls it; a built-in fills in what is left out."""
        builtin = BUILTINS.get(self.implementation) if self.implementation_type == "code" else None
        http = self.http or (HttpOptions() if self.implementation_type == "http" else None)
        docker = self.docker or (DockerOptions() if self.implementation_type == "docker" else None)
        return FunctionDef(
            name=self.name,
            description=self.description or (builtin.description if builtin else ""),
            parameters=self.parameters or (builtin.parameters if builtin else {}),
            implementation=self.implementation,
            implementation_type=self.implementation_type,
            file=file,
            timeout=self.timeout,
            require_approval=self.require_approval,
            http=HttpCall(http.method, dict(http.headers)) if http else None,
            docker=(
                DockerCall(tuple(docker.command), docker.network, docker.memory, docker.cpus)
                if docker
                else None
            ),
        )


_WHAT = {"http": "a request to an http(s) URL", "docker": "a container of an image"}


def _fail(message: str, at: str | None = "implementation") -> NoReturn:
    """A problem of the whole function, shown at the key `at` (the file's start for None)."""
    raise PydanticCustomError(
        "function", "{message}", {"message": message, "at": (at,) if at else ()}
    )
