"""`nebula dns plan|apply|import` and `nebula domains list`.

Provider tokens are `${secret:NAME}` in `domains/*.yaml`: `NEBULA_SECRET_NAME` in the environment
when set, else the vault (`nebula secrets set NAME`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nebula.cli.options import DatabaseUrl, Output, RepoDir
from nebula.cli.output import (
    EXIT_FAILED,
    EXIT_INVALID,
    OutputFormat,
    abort,
    console,
    err_console,
    handle_errors,
    print_json,
)

if TYPE_CHECKING:
    from nebula.engine.session import Store
    from nebula.kinds.base import Desired
    from nebula.kinds.dns.apply import ZoneOutcome
    from nebula.kinds.dns.types import DesiredZone
    from nebula.secrets.resolve import SecretResolver

app = typer.Typer(
    help="DNS records from domains/*.yaml: plan, apply, import a zone.", no_args_is_help=True
)
domains_app = typer.Typer(help="Domains (zones) Nebula manages.", no_args_is_help=True)

ZoneOption = Annotated[
    list[str] | None,
    typer.Option("--zone", "-z", help="Only this zone (repeatable). Default: every zone."),
]


@contextmanager
def _secrets(database_url: str | None) -> Iterator[SecretResolver]:
    """Tokens from `NEBULA_SECRET_NAME`, else the vault; the state database (where the vault
    lives) is opened only when a token is not in the environment."""
    from nebula.secrets.resolve import vault_secrets

    opened: list[Store] = []

    def store() -> Store:
        if not opened:
            from nebula.engine.session import open_store

            opened.append(open_store(database_url))
        return opened[0]

    try:
        yield vault_secrets(store)
    finally:
        for opened_store in opened:
            opened_store.close()


def _narrow(zones: list[str] | None) -> Callable[[Desired], Desired]:
    """The desired state with only the zones asked for (`--zone`)."""

    def narrow(desired: Desired) -> Desired:
        if not zones:
            return desired
        unknown = sorted(set(zones) - {z.zone for z in desired.zones})
        if unknown:
            abort(f"no domains/*.yaml for zone {', '.join(unknown)}", EXIT_INVALID)
        return replace(desired, zones=tuple(z for z in desired.zones if z.zone in zones))

    return narrow


@app.command("plan")
def plan(
    repo: RepoDir = Path("."),
    zone: ZoneOption = None,
    output: Output = OutputFormat.table,
    show_foreign: Annotated[
        bool, typer.Option("--show-foreign", help="Also list records Nebula does not own.")
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Show what `dns apply` would change in each zone, and why. Changes nothing.

    The same plan as `nebula plan --only dns`, zone by zone. Records Nebula did not create are
    never changed: they are counted as foreign (listed with --show-foreign). Exit code 1 when a
    zone cannot be read or a record is in conflict.
    """
    from nebula.cli.commands.plan import preview
    from nebula.engine.session import load

    with handle_errors(output):
        desired = _narrow(zone)(load(repo, database_url))
        planned = preview(desired, database_url, None, ["dns"])
    _report(planned.part("dns").detail or [], output, show_foreign, applied=False)


@app.command("apply")
def apply(
    repo: RepoDir = Path("."),
    zone: ZoneOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before deleting.")] = False,
    database_url: DatabaseUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Make each zone's records match the config repo, one write per zone.

    The same as `nebula apply --only dns`, shown zone by zone. Only records Nebula created are
    updated or deleted. A zone that fails (bad token, unreachable API, a record the provider
    rejects) is reported and the others go on. Records that would be deleted are confirmed
    first unless --yes. Exit code 1 when anything failed.
    """
    from nebula.cli.commands.plan import run_apply
    from nebula.cli.plan_view import zone_outcomes

    def progress(what: str, message: str) -> None:  # e.g. waiting for another apply
        if output is not OutputFormat.json:
            err_console().print(f"[cyan]{what}[/] {message}", highlight=False)

    with handle_errors(output):
        outcome = run_apply(
            repo, yes, None, database_url, ["dns"], True, progress, narrow=_narrow(zone)
        )
    _report(zone_outcomes(outcome.of("dns")), output, False, applied=True)


def _report(
    outcomes: list[ZoneOutcome], output: OutputFormat, show_foreign: bool, *, applied: bool
) -> None:
    failed = not all(o.ok for o in outcomes)
    if output is OutputFormat.json:
        print_json({"ok": not failed, "zones": [o.to_dict() for o in outcomes]})
    else:
        from nebula.cli.dns_render import render_outcomes

        render_outcomes(outcomes, show_foreign=show_foreign, applied=applied)
    if failed:
        raise typer.Exit(EXIT_FAILED)


@app.command("import")
def import_zone(
    zone: Annotated[str, typer.Argument(help="The zone to read, e.g. example.com.")],
    repo: RepoDir = Path("."),
    provider: Annotated[
        str | None,
        typer.Option(help="powerdns or cloudflare; default: the repo's domains/ZONE.yaml."),
    ] = None,
    api_url: Annotated[str | None, typer.Option(help="The provider's API URL.")] = None,
    server_id: Annotated[str, typer.Option(help="PowerDNS server id.")] = "localhost",
    token_secret: Annotated[
        str | None, typer.Option(help="Name of the secret holding the API token.")
    ] = None,
    write: Annotated[
        bool, typer.Option("--write", help="Write domains/ZONE.yaml instead of printing it.")
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Write a zone's current records as domains/ZONE.yaml, ready to commit.

    The account comes from the repo's domains/ZONE.yaml when there is one, else from the
    options. Once committed, `dns apply` adopts the records whose data match (marks them as
    Nebula's) and from then on manages them. SOA and NS records are left out.
    """
    from nebula.kinds.dns.apply import open_dns_provider
    from nebula.kinds.dns.desired import account_problem, zone_account, zone_document
    from nebula.kinds.dns.types import DesiredZone
    from nebula.spec.domain import Domain
    from nebula.spec.yaml_dump import dump_yaml

    with handle_errors():
        zone = zone.lower().rstrip(".")
        existing = next((z for z in _known(repo) if z.zone == zone), None)
        if existing is None:
            if provider is None or token_secret is None:
                abort(
                    f"no domains/*.yaml for {zone} in {repo}: give --provider, --api-url and "
                    "--token-secret",
                    EXIT_INVALID,
                )
            spec = Domain.model_validate(
                {
                    "zone": zone,
                    "provider": provider,
                    "account": {
                        "api_url": api_url,
                        "server_id": server_id,
                        "token": f"${{secret:{token_secret}}}",
                    },
                }
            )
            problem = account_problem(spec.provider, spec.account.api_url)
            if problem is not None:
                abort(problem[1], EXIT_INVALID)
            existing = DesiredZone(zone, spec.provider, zone_account(spec.account), (), "")
        account = existing.account
        with _secrets(database_url) as secrets:
            adapter = open_dns_provider(existing, secrets(account.secret_name))
        try:
            state = adapter.read(zone)
        finally:
            adapter.close()
        if not state.exists:
            abort(f"{existing.provider} has no zone {zone}")
        written = {"token": f"${{secret:{account.secret_name}}}"}
        if account.api_url:
            written["api_url"] = account.api_url
        if existing.provider == "powerdns":
            written["server_id"] = account.server_id
        document = zone_document(state, existing.provider, written)
        text = dump_yaml(document, width=100)
        if not write:
            sys.stdout.write(text)
            return
        target = repo / "domains" / f"{zone}.yaml"
        if target.exists() and existing.file != target.relative_to(repo).as_posix():
            abort(f"{target} exists already", EXIT_INVALID)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    err_console().print(f"[green]✓[/] wrote {target} ({len(document['records'])} record sets)")  # type: ignore[arg-type]


def _known(repo: Path) -> list[DesiredZone]:
    """The repo's zones, or none when the folder is no config repo (import into a new one)."""
    if not (repo / "nebula.yaml").is_file():
        return []
    from nebula.kinds.dns.desired import desired_zones
    from nebula.spec.repo import load_repo

    return desired_zones(load_repo(repo))


@domains_app.command("list")
def list_domains(database_url: DatabaseUrl = None, output: Output = OutputFormat.table) -> None:
    """Zones as last synced: provider, records, certificate status, last error."""
    from rich.table import Table

    from nebula.engine import queries
    from nebula.engine.session import open_store

    with handle_errors(output), open_store(database_url) as store:
        domains = queries.domains(store)
    if output is OutputFormat.json:
        print_json(domains)
        return
    if not domains:
        console().print(
            "No domains yet: add domains/*.yaml to the config repo and `nebula dns apply`."
        )
        return
    table = Table(box=None, pad_edge=False)
    for column in ("zone", "provider", "records", "ssl", "synced", "error"):
        table.add_column(column, overflow="fold")
    for d in domains:
        synced = d["synced_at"].strftime("%Y-%m-%d %H:%M") if d["synced_at"] else "-"
        ssl = d["ssl_status"] or "-"
        if d["ssl_expires_at"]:
            ssl += f" (until {d['ssl_expires_at']:%Y-%m-%d})"
        table.add_row(
            d["name"], d["provider"] or "-", str(d["records"]), ssl, synced, d["last_error"] or ""
        )
    console().print(table)
