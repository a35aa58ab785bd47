"""`nebula status`: what is installed, its containers and their health."""

from __future__ import annotations

from typing import Any

from nebula.cli.options import DatabaseUrl, DockerHost, Output
from nebula.cli.output import (
    OutputFormat,
    console,
    err_console,
    handle_errors,
    print_json,
    print_table,
)
from nebula.engine.session import open_provider, open_store

_COLOURS = {"running": "green", "error": "red", "installing": "yellow", "stopped": "dim"}


def status(
    docker_host: DockerHost = None,
    database_url: DatabaseUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Installations as last applied, with each container's state and health right now, and
    the latest result of each package health check (run by nebulad on its interval), and the
    Ollama models nebulad's agents need (present, being pulled, failed)."""
    from nebula.engine.queries import ai_models, hook_runs, installations
    from nebula.errors import ProviderError
    from nebula.kinds.packages.types import ObservedContainer

    with handle_errors(output), open_store(database_url) as store:
        provider = open_provider(None, docker_host)
        containers: list[ObservedContainer] = []
        docker_error = None
        try:
            containers = list(provider.observe().containers)
        except ProviderError as exc:
            docker_error = str(exc)
        finally:
            provider.close()
        rows = installations(store, containers)
        hooks = hook_runs(store) if output is OutputFormat.json else []
        models = ai_models(store)

    if output is OutputFormat.json:
        print_json(
            {
                "docker_error": docker_error,
                "installations": [
                    {
                        **row,
                        "hooks": [h for h in hooks if h["installation"] == row["name"]],
                    }
                    for row in rows
                ],
                "ai_models": models,
            }
        )
        return
    if docker_error:
        err_console().print(f"[yellow]warning:[/] {docker_error}", markup=True)
    if not rows:
        console().print(
            "Nothing installed yet. Add packages/*.yaml to a config repo and `nebula apply`."
        )
    else:
        nodes = len({row["node"] for row in rows}) > 1  # several: say which node runs what
        columns = ("installation", *(["node"] if nodes else []), "package", "status")
        print_table(
            (*columns, "containers", "health", "reason"), (_row(row, nodes) for row in rows)
        )
    if models:
        from nebula.cli.commands.agents import model_state

        console().print()
        print_table(("Ollama model", "state"), ((m["model"], model_state(m)) for m in models))


def _row(row: dict[str, Any], node: bool) -> tuple[str, ...]:
    parts = []
    for c in row["containers"]:
        health = f" ({c['health']})" if c["health"] else ""
        parts.append(f"{c['name']}: {c['state']}{health}")
    package = f"{row['package']} {row['version'] or ''}".strip() if row["package"] else "custom"
    return (
        row["name"],
        *([row["node"] or "-"] if node else []),
        package,
        f"[{_COLOURS.get(row['status'], 'white')}]{row['status']}[/]",
        "\n".join(parts) or "-",
        "\n".join(_health_line(h) for h in row["health"]) or "-",
        row["reason"] or "",
    )


def _health_line(check: dict[str, Any]) -> str:
    """`[green]✓ web[/] 3 ms` or `[red]✗ web[/]: HTTP 500 (3 in a row)`."""
    from rich.markup import escape

    if check["status"] == "healthy":
        return f"[green]✓ {check['check']}[/] {check['latency_ms']:.0f} ms"
    failures = check["consecutive_failures"]
    times = f" ({failures} in a row)" if failures > 1 else ""
    return f"[red]✗ {check['check']}[/]: {escape(check['detail'])}{times}"
