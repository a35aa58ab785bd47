"""A workflow run survives nebulad's death at each of its steps, as a real process.

A diamond (a → b, c → d) of shell steps starts when nebulad applies its first commit. nebulad is
SIGKILLed while the steps of one layer run, then started again on the same data dir: the run
goes on from its first unfinished step and succeeds. Each step writes its id into `started`
when it begins and into `done` only at its end, so a step run twice to completion, or a step
cut short that still finished behind the daemon's back, shows as a second line in `done`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from nebula.store import Store
from nebula.store.records import ExecutionInfo
from test_daemon_crash import Nebulad, Repo, daemons, data_dir, eventually

__all__ = ["daemons", "data_dir"]  # the fixtures

OPTIONS = ("--poll-interval", "3600s", "--drift-interval", "3600s")
LAYERS = (("a",), ("b", "c"), ("d",))  # b and c run together
NEEDS = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}


def workflow(files: Path) -> str:
    steps = "".join(
        f"  - id: {step}\n    action: shell\n    needs: {needs}\n    params:\n"
        f'      command: "echo {step} >> {files}/started && sleep 2 && echo {step} >> {files}/done"\n'
        for step, needs in NEEDS.items()
    )
    return f"name: diamond\non: {{event: sync_finished.succeeded}}\nsteps:\n{steps}"


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def only_run(nebulad: Nebulad) -> ExecutionInfo | None:
    with Store(f"sqlite:///{nebulad.data_dir / 'nebula.db'}") as store:
        found = store.executions(kind="workflow")
    assert len(found) <= 1, found  # restarting nebulad starts no second run
    return found[0] if found else None


@pytest.mark.parametrize("killed", LAYERS, ids=["+".join(layer) for layer in LAYERS])
def test_a_run_killed_at_any_step_finishes_each_step_exactly_once(
    tmp_path: Path,
    data_dir: Path,
    docker_host: str,
    daemons: list[Nebulad],
    killed: tuple[str, ...],
) -> None:
    files = tmp_path / "files"
    files.mkdir()
    repo = Repo(tmp_path)
    (repo.work / "workflows").mkdir()
    repo.push("a workflow", {"nebula.yaml": "", "workflows/diamond.yaml": workflow(files)})
    nebulad = Nebulad(repo.bare, data_dir, docker_host, *OPTIONS)
    daemons.append(nebulad)
    nebulad.start()

    # killed while the layer's steps sleep: begun, not done
    eventually(
        lambda: set(killed) <= set(lines(files / "started")),
        60,
        f"{', '.join(killed)} started",
        nebulad.tail,
    )
    assert not set(killed) & set(lines(files / "done"))
    nebulad.kill()

    nebulad.start()
    eventually(
        lambda: (run := only_run(nebulad)) is not None and run.status == "succeeded",
        60,
        "the run resumed to its end",
        nebulad.tail,
    )
    run = only_run(nebulad)
    assert run is not None and (run.steps_completed, run.steps_total) == (4, 4)
    assert {k: v["status"] for k, v in run.step_states.items()} == dict.fromkeys(NEEDS, "ok")

    done = lines(files / "done")
    assert sorted(done) == sorted(NEEDS), done  # each step finished exactly once
    assert done[0] == "a" and done[-1] == "d"
    # the steps finished before the kill were not begun again; those it cut short were
    begun = Counter(lines(files / "started"))
    assert begun == {step: 2 if step in killed else 1 for step in NEEDS}
    nebulad.stop()
    assert nebulad.proc is not None and nebulad.proc.returncode == 0, nebulad.tail()
