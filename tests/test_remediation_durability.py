"""Runbook executions survive nebulad's death, as real processes on a real Docker Engine.

- SIGKILL in the middle of a runbook: at the next start the run is marked interrupted and goes
  on from its first unfinished step; the step done before the kill is not done again, the rest
  is, and the incident's timeline says so.
- A step waiting for approval keeps waiting across a restart; `nebula runbooks approve` against
  the restarted daemon runs it and the rest, `nebula runbooks reject` ends the run there.

Each step writes a line into its service's container, so a step run twice (or never) shows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest
from typer.testing import CliRunner

from nebula.cli.app import app
from test_daemon_crash import IMAGE, Nebulad, Repo, daemons, data_dir, engine, eventually

__all__ = ["daemons", "data_dir", "engine"]  # the fixtures

PERSON = f"uid:{os.getuid()}"  # who the daemon's socket says asks
OPTIONS = ("--poll-interval", "3600s", "--drift-interval", "3600s")
SERVICE = f"      image: {IMAGE}\n      init: true\n      restart: unless-stopped\n"
APP = f"compose:\n  services:\n    web:\n{SERVICE}"


def mark(name: str, line: str, *extra: str) -> str:
    """A step appending `line` to /markers in the alert's service's container."""
    return (
        f"  - name: {name}\n    action: docker\n"
        '    params: {command: exec, container: "{{ service.container }}", '
        f'cmd: "echo {line} >> /markers"}}\n' + "".join(f"    {e}\n" for e in extra)
    )


SLOW = (
    "name: slow-fix\ntrigger: {type: alert, alert: stuck}\nsteps:\n"
    + mark("Mark one", "one")
    + "  - name: Pause\n    action: wait\n    params: {duration: 20s}\n"
    + mark("Mark two", "two")
)
GUARDED = (
    "name: guarded-fix\ntrigger: {type: alert, alert: risky}\nsteps:\n"
    + mark("Before", "before")
    + mark("Risky", "risky", "requires_approval: true")
    + mark("After", "after")
)


@pytest.fixture
def homelab(
    tmp_path: Path,
    data_dir: Path,
    docker_host: str,
    engine: docker.DockerClient,
    daemons: list[Nebulad],
) -> Callable[[str], Nebulad]:
    """Starts nebulad following a repo of two installations (`blog` and `wiki`, a service `web`
    each) and a runbook; returns it once it has applied them."""

    def start(runbook: str) -> Nebulad:
        repo = Repo(tmp_path)
        (repo.work / "runbooks").mkdir()
        files: dict[str, str | None] = {
            "packages/blog.yaml": APP,
            "packages/wiki.yaml": APP,
            "runbooks/fix.yml": runbook,
        }
        repo.push("homelab", files)
        nebulad = Nebulad(repo.bare, data_dir, docker_host, *OPTIONS)
        daemons.append(nebulad)
        nebulad.start()
        nebulad.wait_ready()
        status = nebulad.status
        eventually(lambda: status()["applied_commit"] is not None, 60, "apply", nebulad.tail)
        return nebulad

    return start


def nebula(nebulad: Nebulad, *args: str) -> Any:
    """A `nebula` command against `nebulad`, its JSON answer."""
    result = CliRunner().invoke(app, [*args, "--socket", str(nebulad.socket), "--output", "json"])
    assert result.exit_code == 0, result.stdout + result.stderr + nebulad.tail()
    return json.loads(result.stdout)


def fire(nebulad: Nebulad, alert: str, installation: str) -> str:
    """`nebula alert fire` about `installation`'s web; the incident it opened."""
    labels = ["--label", f"installation={installation}", "--label", "service=web"]
    answer = nebula(nebulad, "alert", "fire", alert, *labels)
    assert answer["outcome"] == "opened", answer
    return str(answer["incident"]["id"])


def runs(nebulad: Nebulad, incident: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = nebula(nebulad, "runbooks", "history", "--incident", incident)
    return found


def only_run(nebulad: Nebulad, incident: str) -> dict[str, Any]:
    (run,) = runs(nebulad, incident)
    return run


def markers(engine: docker.DockerClient, container: str) -> list[str]:
    done = engine.containers.get(container).exec_run(["cat", "/markers"])
    return done.output.decode().split() if done.exit_code == 0 else []


def timeline(nebulad: Nebulad, incident: str) -> list[str]:
    shown = nebula(nebulad, "incidents", "show", incident)
    return [f"{e['kind']}: {e['message']}" for e in shown["timeline"]]


@pytest.mark.parametrize("signal", ["SIGKILL", "SIGTERM"])
def test_a_run_cut_short_by_a_stop_resumes_at_the_first_unfinished_step(
    homelab: Callable[[str], Nebulad], engine: docker.DockerClient, signal: str
) -> None:
    nebulad = homelab(SLOW)
    incident = fire(nebulad, "stuck", "blog")
    # stopped while it pauses: the first mark is written and recorded, the second is not
    eventually(
        lambda: [r["steps_completed"] for r in runs(nebulad, incident)] == [1],
        30,
        "the first step recorded",
        nebulad.tail,
    )
    assert markers(engine, "blog-web") == ["one"]
    if signal == "SIGKILL":
        nebulad.kill()
    else:  # a clean stop ends the pause at once, but the run is not over
        nebulad.stop()
        assert nebulad.proc is not None and nebulad.proc.returncode == 0, nebulad.tail()

    nebulad.start()
    nebulad.wait_ready()
    eventually(
        lambda: only_run(nebulad, incident)["status"] == "succeeded",
        45,
        "the run resumed to its end",
        nebulad.tail,
    )
    run = only_run(nebulad, incident)
    assert (run["steps_completed"], run["steps_total"]) == (3, 3)
    assert markers(engine, "blog-web") == ["one", "two"]  # "one" not written again
    assert markers(engine, "wiki-web") == []

    # still open (its alert still fires) and its timeline tells the story
    assert nebula(nebulad, "incidents", "show", incident)["status"] == "open"
    told = timeline(nebulad, incident)
    story = [
        f"runbook: runbook slow-fix started ({run['id']})",
        "step: Mark one: ok",
        "runbook: slow-fix was interrupted; resuming",
        "step: Pause: ok",
        "step: Mark two: ok",
        "runbook: runbook slow-fix succeeded",
    ]
    said = [line.split(" — ")[0] for line in told if line.startswith(("runbook:", "step:"))]
    assert said == story, told

    # the alert clearing resolves it, on the restarted daemon too
    labels = ("--label", "installation=blog", "--label", "service=web")
    cleared = nebula(nebulad, "alert", "fire", "stuck", "--resolved", *labels)
    assert cleared["outcome"] == "resolved", cleared
    nebulad.stop()
    assert nebulad.proc is not None and nebulad.proc.returncode == 0, nebulad.tail()


def test_a_step_waiting_for_approval_survives_a_restart(
    homelab: Callable[[str], Nebulad], engine: docker.DockerClient
) -> None:
    nebulad = homelab(GUARDED)
    approved = fire(nebulad, "risky", "blog")
    rejected = fire(nebulad, "risky", "wiki")
    eventually(
        lambda: (
            [r["status"] for i in (approved, rejected) for r in runs(nebulad, i)] == ["waiting"] * 2
        ),
        30,
        "both waiting for approval",
        nebulad.tail,
    )
    nebulad.stop()  # SIGTERM: the waiting runs stay waiting
    assert nebulad.proc is not None and nebulad.proc.returncode == 0, nebulad.tail()

    nebulad.start()
    nebulad.wait_ready()
    for incident in (approved, rejected):
        run = only_run(nebulad, incident)
        assert (run["status"], run["approval"], run["steps_completed"]) == ("waiting", "pending", 1)
    assert markers(engine, "blog-web") == markers(engine, "wiki-web") == ["before"]

    decided = nebula(nebulad, "runbooks", "approve", only_run(nebulad, approved)["id"])
    assert decided["approval"] == "approved"
    eventually(
        lambda: only_run(nebulad, approved)["status"] == "succeeded",
        30,
        "the approved run finished",
        nebulad.tail,
    )
    assert markers(engine, "blog-web") == ["before", "risky", "after"]
    run = only_run(nebulad, approved)
    assert (run["steps_completed"], run["approval_by"]) == (3, PERSON)
    assert timeline(nebulad, approved)[-5:] == [
        "step: Risky: waiting for approval",
        f"runbook: guarded-fix: {PERSON} approved",
        "step: Risky: ok",
        "step: After: ok",
        "runbook: runbook guarded-fix succeeded",
    ]

    nebula(nebulad, "runbooks", "reject", only_run(nebulad, rejected)["id"])
    run = only_run(nebulad, rejected)
    assert (run["status"], run["approval"], run["steps_completed"]) == ("rejected", "rejected", 1)
    assert markers(engine, "wiki-web") == ["before"]  # the rest never ran
    assert timeline(nebulad, rejected)[-2:] == [
        "step: Risky: waiting for approval",
        f"runbook: guarded-fix: {PERSON} rejected",
    ]

    # asking again is refused, saying why
    again = CliRunner().invoke(
        app, ["runbooks", "approve", run["id"], "--socket", str(nebulad.socket)]
    )
    assert again.exit_code != 0
    assert "not waiting for an approval" in again.stdout + again.stderr
