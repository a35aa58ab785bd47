"""Contexts: named daemons the CLI speaks to, like kubectl's contexts in a kubeconfig.

`contexts.yaml` in the user's config dir (`~/.config/nebula/`; `NEBULA_CONTEXTS` names another
file) lists each context with its daemon, a TCP API (`url`) or a unix socket (`socket`), and
which one is current:

    current: home
    contexts:
      - {name: home, url: https://nebula.home.lan:7733}
      - {name: lab, socket: /var/lib/nebula/nebulad.sock}

It holds no credentials: a URL's login stays where `nebula login URL` keeps it (the OS keyring,
else `credentials.json`), and `NEBULA_TOKEN` is read from the environment as ever; a `token`
written into the file is refused. `--context NAME` (or `NEBULA_CONTEXT`) picks another context
for one command. The daemon a command speaks to: `--socket` / `NEBULA_SOCKET` or `--daemon` /
`NEBULA_DAEMON`, else the context, else the default socket (`cli.client`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Self

from pydantic import Field, model_validator

from nebula.errors import NebulaError
from nebula.spec.base import HttpAddress, StrictModel
from nebula.spec.names import Name

ENV_FILE = "NEBULA_CONTEXTS"
ENV_CONTEXT = "NEBULA_CONTEXT"


class ContextError(NebulaError):
    """A context that does not exist, or a contexts file that cannot be read or written."""


class Context(StrictModel):
    name: Name
    url: HttpAddress | None = Field(default=None, description="the daemon's TCP API")
    socket: str | None = Field(default=None, description="the daemon's unix socket")

    @model_validator(mode="after")
    def _one_daemon(self) -> Self:
        if (self.url is None) == (self.socket is None):
            raise ValueError("give either url (a TCP API) or socket (a unix socket), not both")
        if self.socket is not None and not self.socket.startswith(("/", "~")):
            raise ValueError(f"socket {self.socket!r} is relative: give an absolute path")
        return self

    @property
    def daemon(self) -> str:
        return self.url or f"socket {self.socket}"


class Contexts(StrictModel):
    current: Name | None = None
    contexts: list[Context] = []

    def get(self, name: str) -> Context:
        for context in self.contexts:
            if context.name == name:
                return context
        known = ", ".join(c.name for c in self.contexts) or "none yet: nebula context add NAME"
        raise ContextError(f"no context {name!r} in {contexts_file()} (contexts: {known})")


def contexts_file() -> Path:
    given = os.environ.get(ENV_FILE)
    if given:
        return Path(given).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("nebula")) / "contexts.yaml"


def load() -> Contexts:
    """The contexts file; none yet: no contexts. `ConfigError` (file:line) when invalid."""
    from nebula.spec.validate import validate_document
    from nebula.spec.yamlfile import parse_yaml

    path = contexts_file()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Contexts()
    except OSError as exc:
        raise ContextError(f"cannot read {path}: {exc.strerror}") from None
    return validate_document(parse_yaml(text, str(path)), Contexts)


def save(contexts: Contexts) -> Path:
    """Write the file (mode 0600, replaced whole) and return its path."""
    from nebula.spec.yaml_dump import dump_yaml

    path = contexts_file()
    text = dump_yaml(contexts.model_dump(exclude_none=True))
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.touch(mode=0o600)
        partial.write_text(text)
        partial.replace(path)
    except OSError as exc:
        raise ContextError(f"cannot write {path}: {exc.strerror}") from None
    return path


def selected() -> Context | None:
    """The context of this command: `--context` / `NEBULA_CONTEXT`, else the current one;
    None when neither names one."""
    from nebula.cli.options import chosen_context

    name = chosen_context() or os.environ.get(ENV_CONTEXT) or None
    if name is not None:
        return load().get(name)
    contexts = load()
    return contexts.get(contexts.current) if contexts.current else None
