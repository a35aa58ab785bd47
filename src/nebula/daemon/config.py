"""nebulad's settings: from a config file, overridden by NEBULA_* environment, then flags."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field

from nebula.spec.base import Duration, StrictModel
from nebula.spec.names import Name
from nebula.spec.validate import validate_document
from nebula.spec.yamlfile import parse_yaml


def default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("nebula"))


class DaemonConfig(StrictModel):
    source: str = Field(description="git URL or local path of the config repo")
    branch: str = "main"
    subfolder: str = ""
    watch: bool = Field(default=False, description="follow a local working folder live")
    data_dir: Path = Field(default_factory=default_data_dir)
    poll_interval: Duration = 60.0
    drift_interval: Duration = 30.0
    prune_max: int | None = Field(
        default=None,
        ge=0,
        description="what a commit may remove of one kind (installations, routes, record "
        "sets) before it is held; unset: half of what Nebula manages of that kind",
    )
    webhook_secret: str | None = None
    tcp_listen: str | None = Field(default=None, description="HOST:PORT for the TCP API")
    token: str | None = Field(
        default=None,
        description="a static admin bearer token for the TCP API; unset: only users' logins, "
        "API keys and service tokens are accepted",
    )
    rate_limit: float = Field(
        default=20.0, gt=0, description="TCP requests a second per client address and per token"
    )
    rate_burst: int = Field(default=100, ge=1, description="TCP requests allowed at once")
    ui: bool = Field(
        default=False,
        description="serve the web dashboard under /ui on the TCP API (tcp_listen); users log "
        "in with their accounts",
    )
    docker_host: str | None = None
    database_url: str | None = None
    node: Name | None = Field(
        default=None,
        description="the node of nebula.yaml this nebulad runs on: it applies that node's "
        "installations (several nodes share one PostgreSQL database_url); unset: the first node",
    )
    log_json: bool = False

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "nebulad.sock"

    @property
    def dashboard(self) -> str | None:
        """Where Caddy (on this host) reaches the dashboard: `tcp_listen`, an unspecified
        address being loopback; None without `ui` or `tcp_listen`."""
        if not self.ui or not self.tcp_listen:
            return None
        host, _, port = self.tcp_listen.strip().rpartition(":")
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "[::]": "[::1]"}.get(host, host)
        return f"{host}:{port}"

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'nebula.db'}"


ENV_PREFIX = "NEBULA_"


def load_config(file: Path | None, flags: dict[str, Any]) -> DaemonConfig:
    """File < environment (NEBULA_SOURCE, NEBULA_POLL_INTERVAL, ...) < flags given."""
    values: dict[str, Any] = {}
    if file is not None:
        doc = parse_yaml(file.read_text(), str(file))
        values |= validate_document(doc, _Partial).model_dump(exclude_unset=True)
    for name in DaemonConfig.model_fields:
        env = os.environ.get(ENV_PREFIX + name.upper())
        if env is not None:
            values[name] = env
    values |= {k: v for k, v in flags.items() if v is not None}
    return DaemonConfig.model_validate(values)


class _Partial(DaemonConfig):
    """The config file may leave out what the environment or flags give."""

    source: str = ""
