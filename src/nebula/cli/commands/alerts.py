"""`nebula alert fire` and `nebula silence add|list|rm`: alerts by hand (to try runbooks) and
silences, through nebulad's API (see `nebula.cli.client` for how the daemon is found)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from nebula.cli.commands.daemon import DaemonUrl, Socket, _client, _escape, _when
from nebula.cli.options import Output
from nebula.cli.output import OutputFormat, console, handle_errors, print_json, print_list

alert_app = typer.Typer(
    help="Alerts by hand, to try runbooks and notifications.\n\n"
    "Example:\n\n"
    "  nebula alert fire unhealthy --label installation=blog --label service=web",
    no_args_is_help=True,
)
silence_app = typer.Typer(
    help="Silences: mute alerts matching labels for a while (no incident, nothing runs).\n\n"
    "Examples:\n\n"
    '  nebula silence add --match installation=blog --for 2h --comment "moving disks"\n\n'
    "  nebula silence list\n\n"
    "  nebula silence rm 9b1e…",
    no_args_is_help=True,
)

_OUTCOMES = {
    "opened": "opened incident {id}",
    "joined": "joined incident {id}",
    "folded": "folded into incident {id} (it fires there already)",
    "reopened": "re-opened incident {id}",
    "cleared": "cleared in incident {id}; other alerts of it still fire",
    "resolved": "resolved incident {id}: its alerts have all cleared",
    "silenced": "silenced: no incident opened, nothing runs",
    "ignored": "ignored: no open incident holds it",
}


def parse_pairs(values: list[str] | None, option: str) -> dict[str, str]:
    """`KEY=VALUE` options as a map; a malformed one is a usage error (exit 2)."""
    pairs: dict[str, str] = {}
    for value in values or []:
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{value!r}: write KEY=VALUE", param_hint=option)
        pairs[key.strip()] = text
    return pairs


@alert_app.command()
def fire(
    name: Annotated[str, typer.Argument(help="The alert's name, e.g. unhealthy, container_died.")],
    label: Annotated[
        list[str] | None,
        typer.Option(
            "--label",
            "-l",
            help="KEY=VALUE: installation, service, container, node, severity (info, warning, "
            "critical), ...; repeat it.",
            show_default=False,
        ),
    ] = None,
    annotation: Annotated[
        list[str] | None,
        typer.Option(
            "--annotation",
            "-a",
            help="KEY=VALUE: summary, description, ...; repeat it.",
            show_default=False,
        ),
    ] = None,
    resolved: Annotated[
        bool, typer.Option("--resolved", help="Say the alert cleared instead of firing.")
    ] = False,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Fire an alert (or clear it with --resolved) as if a monitor had: it opens or joins an
    incident and runs the runbooks it triggers."""
    alert = {
        "name": name,
        "labels": parse_pairs(label, "--label"),
        "annotations": parse_pairs(annotation, "--annotation"),
        "status": "resolved" if resolved else "firing",
    }
    with handle_errors(output), _client(socket, daemon) as client:
        answer = client.fire_alert(alert)
    if output is OutputFormat.json:
        print_json(answer)
        return
    incident = answer.get("incident") or {}
    what = _OUTCOMES.get(answer["outcome"], answer["outcome"]).format(id=incident.get("id"))
    console().print(f"Alert {name} ", end="", markup=False)
    console().print(what, markup=False)


@silence_app.command()
def add(
    match: Annotated[
        list[str],
        typer.Option(
            "--match",
            "-m",
            help="LABEL=VALUE, LABEL!=VALUE, LABEL=~REGEX or LABEL!~REGEX; an alert must "
            "match every one. Repeat it.",
            show_default=False,
        ),
    ],
    duration: Annotated[
        str, typer.Option("--for", help="How long, e.g. 30m, 2h, 1h30m (at most 7 days).")
    ],
    comment: Annotated[str, typer.Option("--comment", "-c", help="Why, for the timeline.")] = "",
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Silence the alerts matching every --match for a while."""
    with handle_errors(output), _client(socket, daemon) as client:
        silence = client.add_silence(match, duration, comment)
    if output is OutputFormat.json:
        print_json(silence)
        return
    console().print(
        f"Silence {silence['id']} mutes {_matchers(silence)} until {_when(silence['ends_at'])}.",
        markup=False,
    )


@silence_app.command("list")
def list_silences(
    socket: Socket = None, daemon: DaemonUrl = None, output: Output = OutputFormat.table
) -> None:
    """The silences in force."""
    with handle_errors(output), _client(socket, daemon) as client:
        found = client.silences()
    print_list(
        output,
        found,
        ("id", "matches", "until", "by", "comment"),
        (
            (
                str(s["id"]),
                _escape(_matchers(s)),
                _when(s["ends_at"], seconds=False),
                _escape(str(s["created_by"])),
                _escape(str(s["comment"])),
            )
            for s in found
        ),
        "No silences in force.",
    )


@silence_app.command("rm")
def remove(
    silence_id: Annotated[str, typer.Argument(help="The silence (see `nebula silence list`).")],
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """End a silence now."""
    with handle_errors(output), _client(socket, daemon) as client:
        answer = client.remove_silence(silence_id)
    if output is OutputFormat.json:
        print_json(answer)
    else:
        console().print(f"Silence {silence_id} ended.", markup=False)


def _matchers(silence: dict[str, Any]) -> str:
    return ", ".join(f"{label}{op}{value}" for label, op, value in silence["matchers"])
