"""`nebula.yaml`: where the homelab's Docker Engine is, the defaults Nebula applies with, and the
model servers agents use (`ai:`)."""

from __future__ import annotations

import difflib
from functools import partial
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    Field,
    IPvAnyAddress,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from nebula.errors import UnknownNodeError
from nebula.spec.base import Duration, HttpAddress, IpAddress, StrictModel, Text
from nebula.spec.dns_values import check_secret_reference
from nebula.spec.names import Name, excerpt
from nebula.spec.proxy import Proxy
from nebula.spec.remediation import (
    BuiltinRunbook,
    MaintenanceWindow,
    NotificationChannel,
    Remediation,
)


class DockerEndpoint(StrictModel):
    host: str | None = Field(
        default=None,
        description="Docker Engine URL, e.g. unix:///var/run/docker.sock or tcp://nas:2375; "
        "unset means DOCKER_HOST or the local socket",
    )


class Defaults(StrictModel):
    bind_address: IpAddress = Field(
        default="0.0.0.0",
        description="host address for published ports that name none (compose's default)",
    )
    parallelism: int = Field(default=8, ge=1, le=64, description="installations applied at once")
    health_timeout: Duration = Field(
        default=120.0, description="how long apply waits for containers to become healthy"
    )
    hook_timeout: Duration = Field(default=60.0, description="how long one hook may run")
    stop_timeout: Duration = Field(default=10.0, description="grace period before a kill")
    subnet_pool: IPv4Network | None = Field(
        default=IPv4Network("10.213.0.0/16"),
        description="where installation networks get their subnets; null lets Docker choose "
        "(its default pools hold about 30 networks)",
    )
    subnet_size: int = Field(default=26, ge=16, le=29, description="prefix length of each subnet")

    @model_validator(mode="after")
    def _pool_fits(self) -> Self:
        if self.subnet_pool is not None and self.subnet_pool.prefixlen > self.subnet_size:
            raise ValueError(
                f"subnet_size /{self.subnet_size} is larger than subnet_pool {self.subnet_pool}"
            )
        return self


class NodeSsh(StrictModel):
    """How runbooks' `ssh` steps log in to a node: by key, to a host key known beforehand."""

    user: str = Field(default="root", pattern=r"^[a-z_][a-z0-9_.-]{0,31}$")
    port: int = Field(default=22, ge=1, le=65535)
    key_file: str | None = Field(
        default=None,
        description="the private key (unencrypted) on the machine nebulad runs on; unset: the "
        "keys of the ssh agent (SSH_AUTH_SOCK)",
    )
    known_hosts: str = Field(
        default="~/.ssh/known_hosts",
        description="the host keys the node's must be among; an unknown or changed key is refused",
    )

    @field_validator("key_file", "known_hosts")
    @classmethod
    def _absolute(cls, path: str | None) -> str | None:
        if path is not None and not path.startswith(("/", "~")):
            raise ValueError(f"{path!r} is relative: give an absolute path or one under ~")
        return path


DOCKER_SCHEMES = ("ssh://", "tcp://", "unix://")


class Node(StrictModel):
    """A machine of the homelab that runs installations."""

    name: Name
    address: IPvAnyAddress = Field(
        description="where the node's services answer: Caddy on the edge node (`proxy.node`) "
        "dials the ports installations publish here, and it serves exposed hostnames when it is "
        "the edge node"
    )
    gpu: bool = Field(default=False, description="the node has a GPU installations may request")
    labels: dict[str, Text] = Field(
        default={}, description="what `placement:` selectors of installations match, e.g. ssd"
    )
    ssh: NodeSsh = NodeSsh()
    docker: str | None = Field(
        default=None,
        description="the node's Docker Engine as the driving nebulad reaches it (ssh://user@host, "
        "tcp://host:2375, unix:///path); unset: the node runs its own nebulad on its local engine",
    )
    engine: Literal["docker", "swarm"] = Field(
        default="docker",
        description="docker: installations become containers; swarm: the engine is a Swarm "
        "manager and installations become Swarm services",
    )
    subnet_pool: IPv4Network | None = Field(
        default=None,
        description="where this node's installation networks get their subnets; unset: "
        "defaults.subnet_pool",
    )

    @field_validator("docker")
    @classmethod
    def _docker_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(DOCKER_SCHEMES):
            raise ValueError(
                f"{excerpt(url)} is not a Docker Engine URL: give ssh://user@host, "
                "tcp://host:port or unix:///path"
            )
        return url

    @property
    def driven(self) -> bool:
        """Whether another node's nebulad applies this node's share through `docker` (the node
        runs no nebulad of its own)."""
        return self.docker is not None


ApiKey = Annotated[str, AfterValidator(partial(check_secret_reference, what="key"))]
"""An API key, always `${secret:NAME}`: a key written in the repo is refused."""

MODEL_PROVIDERS = ("ollama", "openai")
"""The providers every agent's `model:` may name; `ai.providers` adds more by name."""


class OllamaEndpoint(StrictModel):
    """The Ollama server `ollama:NAME` models run on."""

    host: HttpAddress = Field(default="http://127.0.0.1:11434", description="Ollama's URL")
    pull: bool = Field(default=True, description="nebulad pulls the models agents need")


class OpenAICompatible(StrictModel):
    """A server speaking OpenAI's API (llama.cpp, vLLM, LM Studio, LiteLLM)."""

    base_url: HttpAddress = Field(description="its API root, e.g. http://127.0.0.1:8080/v1")
    api_key: ApiKey | None = Field(
        default=None, description="`${secret:NAME}`, stored with `nebula secrets set NAME`"
    )

    @property
    def api_key_secret(self) -> str | None:
        """The vault secret holding the key, if there is one."""
        return None if self.api_key is None else self.api_key[len("${secret:") : -1]


class OpenAIEndpoint(OpenAICompatible):
    """OpenAI's API, for `openai:NAME` and bare model names (`gpt-4o`)."""

    base_url: HttpAddress = Field(default="https://api.openai.com/v1", description="its API root")


class AiConfig(StrictModel):
    """Where agents' models run: `model: ollama:NAME`, `openai:NAME` (or a bare name), or
    `P:NAME` for a server P of `providers`."""

    ollama: OllamaEndpoint = OllamaEndpoint()
    openai: OpenAIEndpoint = OpenAIEndpoint()
    providers: dict[Name, OpenAICompatible] = Field(
        default={}, description="more OpenAI-compatible servers, by the name models use"
    )
    timeout: Duration = Field(default=120.0, description="one model request at most")

    @field_validator("providers")
    @classmethod
    def _not_built_in(cls, providers: dict[str, OpenAICompatible]) -> dict[str, OpenAICompatible]:
        for name in providers:
            if name in (*MODEL_PROVIDERS, "anthropic"):
                raise PydanticCustomError(
                    "reserved_provider",
                    "'{name}' is a built-in provider's name; give this server another name",
                    {"name": name, "at": (name,)},
                )
        return providers

    @property
    def provider_names(self) -> tuple[str, ...]:
        """Every provider a model may name: the built-ins, then `providers`' by name."""
        return (*MODEL_PROVIDERS, *sorted(self.providers))

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        """`ollama:` with nothing under it means its defaults."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data


LOCAL_NODE = Node(name="local", address=IPv4Address("127.0.0.1"))


class NebulaConfig(StrictModel):
    docker: DockerEndpoint = DockerEndpoint()
    defaults: Defaults = Defaults()
    nodes: list[Node] = Field(
        default=[LOCAL_NODE],
        description="the homelab's machines; without any, one node `local` at 127.0.0.1",
    )
    proxy: Proxy | None = Field(
        default=None,
        description="the Caddy that serves exposed hostnames over HTTPS; unset: Caddy's "
        "defaults (admin on 127.0.0.1:2019, ports 80 and 443) once anything is exposed",
    )
    runbooks: list[BuiltinRunbook] = Field(
        default=[], description="built-in runbooks to enable, by name"
    )
    notifications: dict[Name, NotificationChannel] = Field(
        default={}, description="notification channels runbooks name, e.g. discord, email"
    )
    remediation: Remediation = Remediation()
    maintenance: list[MaintenanceWindow] = Field(
        default=[], description="times when runbooks and notifications stay quiet"
    )
    ai: AiConfig = Field(
        default=AiConfig(), description="the model servers agents use (Ollama, OpenAI, others)"
    )

    def node(self, name: str | None) -> Node | None:
        """The node called `name`; with None, the first node (the default placement)."""
        if name is None:
            return self.nodes[0]
        return next((n for n in self.nodes if n.name == name), None)

    def node_named(self, name: str | None) -> Node:
        """`node(name)`, or `UnknownNodeError` naming the nodes there are."""
        node = self.node(name)
        if node is None:
            names = ", ".join(n.name for n in self.nodes)
            raise UnknownNodeError(f"no node {name!r} in nebula.yaml (nodes: {names})")
        return node

    @field_validator("nodes")
    @classmethod
    def _unique_nodes(cls, nodes: list[Node]) -> list[Node]:
        if not nodes:
            raise ValueError("list at least one node, or leave `nodes:` out for the local one")
        names = [n.name for n in nodes]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"node names must be unique: {', '.join(repeated)} repeated")
        return nodes

    @property
    def edge(self) -> Node:
        """The edge node, where Caddy serves exposed hostnames: `proxy.node`, else the first."""
        named = self.proxy.node if self.proxy is not None else None
        return self.node(named) or self.nodes[0]

    @model_validator(mode="after")
    def _nodes_fit(self) -> Self:
        """Each node's own subnet pool holds subnets of `defaults.subnet_size`, and the edge
        node is one of the nodes."""
        size = self.defaults.subnet_size
        for index, node in enumerate(self.nodes):
            if node.subnet_pool is not None and node.subnet_pool.prefixlen > size:
                raise PydanticCustomError(
                    "pool_too_small",
                    "subnet_pool {pool} is smaller than defaults.subnet_size /{size}; give a "
                    "pool of /{size} or larger",
                    {
                        "pool": str(node.subnet_pool),
                        "size": size,
                        "at": ("nodes", index, "subnet_pool"),
                    },
                )
        edge = self.proxy.node if self.proxy is not None else None
        if edge is not None and self.node(edge) is None:
            raise PydanticCustomError(
                "unknown_node",
                "no node '{node}' in nebula.yaml (nodes: {names})",
                {
                    "node": edge,
                    "names": ", ".join(n.name for n in self.nodes),
                    "at": ("proxy", "node"),
                },
            )
        return self

    @field_validator("remediation")
    @classmethod
    def _declared_channels(cls, remediation: Remediation, info: ValidationInfo) -> Remediation:
        declared = sorted(info.data.get("notifications") or {})
        for name in remediation.notify:
            if name not in declared:
                close = difflib.get_close_matches(name, declared, n=1)
                hint = f"did you mean {close[0]!r}?" if close else "declare it under notifications:"
                raise ValueError(f"notify: no channel {name!r} in notifications; {hint}")
        return remediation

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        """`docker:` with nothing under it (all commented out) means the defaults."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data
