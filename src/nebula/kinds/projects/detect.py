"""A Dockerfile for code that has none: a plain static site, a Python app with a lockfile, or a
Node app with a lockfile. Pure: it reads only the list of the code's files.

Base images: `busybox:1.36` (static sites, served by its httpd), `python:3.12-slim`,
`node:20-alpine`. Each app listens on `$PORT` (the project's `port:`).
"""

from __future__ import annotations

from collections.abc import Collection

STATIC = "busybox:1.36"
PYTHON = "python:3.12-slim"
NODE = "node:20-alpine"

_NODE_LOCKS = {
    "package-lock.json": ("npm ci --omit=dev", "npm"),
    "pnpm-lock.yaml": ("corepack enable && pnpm install --frozen-lockfile --prod", "pnpm"),
    "yarn.lock": ("corepack enable && yarn install --frozen-lockfile --production", "yarn"),
}
_PYTHON_ENTRIES = ("main.py", "app.py")
_STATIC_ROOTS = ("public", "dist", "site", "")


class NoDockerfileError(ValueError):
    """Nothing to build from: no Dockerfile, and nothing a default is detected for."""


def detected_dockerfile(files: Collection[str], port: int) -> str:
    """The Dockerfile text for code whose files (paths relative to its root) are `files`."""
    for lock, (install, runner) in _NODE_LOCKS.items():
        if "package.json" in files and lock in files:
            return _node(lock, install, runner, port)
    if "requirements.txt" in files or "uv.lock" in files:
        entry = next((e for e in _PYTHON_ENTRIES if e in files), None)
        if entry is None:
            raise NoDockerfileError(
                "a Python app needs main.py or app.py to start (or add a Dockerfile)"
            )
        return _python("uv.lock" in files, entry, port)
    for root in _STATIC_ROOTS:
        index = f"{root}/index.html" if root else "index.html"
        if index in files:
            return _static(root or ".", port)
    raise NoDockerfileError(
        "no Dockerfile, and the code is none of what a default is made for: a static site "
        "(index.html), a Python app (requirements.txt or uv.lock) or a Node app (package.json "
        "with a lockfile); add a Dockerfile or set `dockerfile:`"
    )


def _static(root: str, port: int) -> str:
    return (
        f"FROM {STATIC}\n"
        f"COPY {root} /www\n"
        f"EXPOSE {port}\n"
        f'CMD ["httpd", "-f", "-p", "{port}", "-h", "/www"]\n'
    )


def _python(uv: bool, entry: str, port: int) -> str:
    install = (
        "RUN pip install --no-cache-dir uv && uv sync --frozen --no-dev\n"
        'ENV PATH="/app/.venv/bin:$PATH"\n'
        if uv
        else "RUN pip install --no-cache-dir -r requirements.txt\n"
    )
    copy = "COPY pyproject.toml uv.lock ./\n" if uv else "COPY requirements.txt ./\n"
    return (
        f"FROM {PYTHON}\n"
        "WORKDIR /app\n"
        f"{copy}{install}"
        "COPY . .\n"
        f"ENV PORT={port} PYTHONUNBUFFERED=1\n"
        f"EXPOSE {port}\n"
        f'CMD ["python", "{entry}"]\n'
    )


def _node(lock: str, install: str, runner: str, port: int) -> str:
    return (
        f"FROM {NODE}\n"
        "WORKDIR /app\n"
        f"COPY package.json {lock} ./\n"
        f"RUN {install}\n"
        "COPY . .\n"
        f"ENV PORT={port} NODE_ENV=production\n"
        f"EXPOSE {port}\n"
        f'CMD ["{runner}", "start"]\n'
    )
