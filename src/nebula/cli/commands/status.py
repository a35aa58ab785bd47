"""`nebula status`: what is installed, its containers and their health."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from nebula.cli.options import DatabaseUrl, DockerHost, Output
from nebula.cli.output import OutputFormat, console, err_console, handle_errors, print_json
from nebula.cli.session import open_provider, open_store

if TYPE_CHECKING:
    from nebula.store.installation_runs import HealthRecord


def status(
    docker_host: DockerHost = None,
    database_url: DatabaseUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Installations as last applied, with each container's state and health right now, and
    the latest result of each package health check (run by nebulad on its interval)."""
    from rich.table import Table

    from nebula.errors import ProviderError
    from nebula.kinds.packages.types import ObservedContainer
    from nebula.store import installation_runs

    with handle_errors(output):
        store = open_store(database_url)
        try:
            installations = store.installations()
            checks = installation_runs.health(store)
            hooks = installation_runs.last_hook_runs(store) if output is OutputFormat.json else []
        finally:
            store.close()
        provider = open_provider(None, docker_host)
        containers: list[ObservedContainer] = []
        docker_error = None
        try:
            containers = list(provider.observe().containers)
        except ProviderError as exc:
            docker_error = str(exc)
        finally:
            provider.close()

    by_installation: dict[str, list[ObservedContainer]] = {}
    for container in containers:
        by_installation.setdefault(container.installation, []).append(container)
    checks_of: dict[str, list[installation_runs.HealthRecord]] = {}
    for check in checks:
        checks_of.setdefault(check.installation, []).append(check)
    if output is OutputFormat.json:
        print_json(
            {
                "docker_error": docker_error,
                "installations": [
                    {
                        "name": i.name,
                        "package": i.package,
                        "version": i.version,
                        "status": i.status,
                        "reason": i.status_reason,
                        "updated_at": i.updated_at,
                        "containers": [
                            {"name": c.name, "state": c.state, "health": c.health}
                            for c in by_installation.get(i.name, [])
                        ],
                        "health": [h.to_dict() for h in checks_of.get(i.name, [])],
                        "hooks": [asdict(h) for h in hooks if h.installation == i.name],
                    }
                    for i in installations
                ],
            }
        )
        return
    if docker_error:
        err_console().print(f"[yellow]warning:[/] {docker_error}", markup=True)
    if not installations:
        console().print(
            "Nothing installed yet. Add packages/*.yaml to a config repo and `nebula apply`."
        )
        return
    table = Table(box=None, pad_edge=False)
    for column in ("installation", "package", "status", "containers", "health", "reason"):
        table.add_column(column, overflow="fold")
    colours = {"running": "green", "error": "red", "installing": "yellow", "stopped": "dim"}
    for inst in installations:
        parts = []
        for c in by_installation.get(inst.name, []):
            health = f" ({c.health})" if c.health else ""
            parts.append(f"{c.name}: {c.state}{health}")
        package = f"{inst.package} {inst.version or ''}".strip() if inst.package else "custom"
        table.add_row(
            inst.name,
            package,
            f"[{colours.get(inst.status, 'white')}]{inst.status}[/]",
            "\n".join(parts) or "-",
            "\n".join(_health_line(h) for h in checks_of.get(inst.name, [])) or "-",
            inst.status_reason or "",
        )
    console().print(table)


def _health_line(check: HealthRecord) -> str:
    """`[green]✓ web[/] 3 ms` or `[red]✗ web[/]: HTTP 500 (3 in a row)`."""
    from rich.markup import escape

    if check.status == "healthy":
        return f"[green]✓ {check.check}[/] {check.latency_ms:.0f} ms"
    times = f" ({check.consecutive_failures} in a row)" if check.consecutive_failures > 1 else ""
    return f"[red]✗ {check.check}[/]: {escape(check.detail)}{times}"
