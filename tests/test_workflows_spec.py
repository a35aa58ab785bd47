"""Workflows: loading, validation of the DAG and the steps at file:line, the topological
layers, the kind's plan and the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nebula.cli.app import app
from nebula.engine.load import load_desired
from nebula.errors import ConfigError
from nebula.kinds.base import World
from nebula.kinds.workflows.kind import Workflows
from nebula.kinds.workflows.types import layers
from nebula.store import Store
from nebula.store.records import WorkflowRecord

CONFIG = "notifications:\n  discord: {urls: ['${secret:discord.webhook}']}\n"
DIAMOND = """\
name: nightly-backup
on: {schedule: "0 3 * * *", event: sync_finished.failed, manual: true}
catch_up: once
concurrency: cancel_previous
steps:
  - id: stop_db
    name: Stop the database
    action: docker
    params: {command: stop, container: blog-db}
  - id: dump
    needs: [stop_db]
    action: shell
    params: {command: "echo dumped"}
    timeout: 10m
    retries: 3
    backoff: 5s
  - id: check
    needs: [stop_db]
    action: health_check
    params: {url: "http://127.0.0.1:8081/"}
    continue_on_error: true
  - id: tell
    needs: [dump, check]
    action: notify
    condition: "steps.dump.ok && !steps.check.failed"
    params: {channel: discord, message: "{{ workflow.name }}: {{ steps.dump.outputs.stdout }}"}
"""


def write_repo(root: Path, workflows: dict[str, str], config: str = CONFIG) -> Path:
    (root / "workflows").mkdir(parents=True, exist_ok=True)
    (root / "nebula.yaml").write_text(config)
    for name, text in workflows.items():
        (root / "workflows" / name).write_text(text)
    return root


def errors_of(root: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_desired(root)
    return [str(issue) for issue in caught.value.issues]


def workflow(steps: str, on: str = "{manual: true}") -> str:
    return f"name: probe\non: {on}\nsteps:\n{steps}"


def step(id_: str, needs: str = "[]", message: str = "hi") -> str:
    return f"  - id: {id_}\n    needs: {needs}\n    action: log\n    params: {{message: {message!r}}}\n"


def test_a_diamond_loads_with_its_layers_and_settings(tmp_path: Path) -> None:
    [loaded] = load_desired(write_repo(tmp_path, {"nightly.yaml": DIAMOND})).workflows
    spec = loaded.spec
    assert loaded.name == "nightly-backup" and loaded.record.file == "workflows/nightly.yaml"
    assert loaded.layers() == (("stop_db",), ("dump", "check"), ("tell",))
    assert (spec.on.schedule, spec.on.event, spec.on.manual) == (
        "0 3 * * *",
        "sync_finished.failed",
        True,
    )
    assert (spec.catch_up, spec.concurrency) == ("once", "cancel_previous")
    dump, check = spec.steps[1], spec.steps[2]
    assert (dump.timeout, dump.retries, dump.backoff) == (600.0, 3, 5.0)
    assert check.continue_on_error and not dump.continue_on_error
    assert spec.steps[0].title == "Stop the database" and dump.title == "dump"
    after = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)
    assert spec.on.next_time(after) == datetime(2026, 5, 2, 3, 0, tzinfo=UTC)
    assert loaded.record.definition["steps"][1]["needs"] == ["stop_db"]


def test_layers_keep_file_order_and_run_independent_steps_together() -> None:
    assert layers({"z": [], "a": [], "m": ["z", "a"], "b": ["a"]}) == (("z", "a"), ("m", "b"))


def test_a_cycle_is_named_at_the_need_that_closes_it(tmp_path: Path) -> None:
    text = workflow(step("a", "[c]") + step("b", "[a]") + step("c", "[b]"))
    [error] = errors_of(write_repo(tmp_path, {"probe.yaml": text}))
    assert error == (
        "workflows/probe.yaml:5:13: steps[0].needs[0]: the steps' needs form a cycle: "
        "a → c → b → a (→: needs); remove one of these needs"
    )
    itself = workflow(step("a") + step("b", "[a, b]"))
    [error] = errors_of(write_repo(tmp_path, {"probe.yaml": itself}))
    assert error.startswith("workflows/probe.yaml:9:16: steps[1].needs[1]: ")
    assert "cycle: b → b" in error


def test_unknown_needs_and_duplicate_ids_are_named(tmp_path: Path) -> None:
    text = workflow(step("stop_db") + step("dump", "[stop_bd]") + step("dump", "[nothing]"))
    [twice] = errors_of(write_repo(tmp_path, {"probe.yaml": text}))
    assert twice == (
        "workflows/probe.yaml:12:5: steps[2].id: another step is also 'dump'; give each step "
        "its own id (first on line 8)"
    )
    [error] = errors_of(
        write_repo(tmp_path, {"probe.yaml": workflow(step("a") + step("b", "[a, a]"))})
    )
    assert (
        error == "workflows/probe.yaml:9:16: steps[1].needs[1]: 'a' is needed twice; name it once"
    )
    text = text.replace("  - id: dump\n    needs: [nothing]", "  - id: load\n    needs: [nothing]")
    assert errors_of(write_repo(tmp_path, {"probe.yaml": text})) == [
        "workflows/probe.yaml:9:13: steps[1].needs[0]: no step 'stop_bd' in this workflow; "
        "did you mean 'stop_db'?",
        "workflows/probe.yaml:13:13: steps[2].needs[0]: no step 'nothing' in this workflow; "
        "steps: stop_db, dump, load",
    ]


def test_bad_triggers_ids_and_actions_are_refused_at_their_line(tmp_path: Path) -> None:
    text = (
        "name: probe\n"
        "on: {schedule: '61 * * * *', event: sync_finised}\n"
        "concurrency: parallel\n"
        "steps:\n"
        "  - id: Stop-DB\n"
        "    action: restat\n"
        "  - id: ok\n"
        "    action: wait\n"
        "    params: {duraton: 30s}\n"
    )
    errors = errors_of(write_repo(tmp_path, {"probe.yaml": text}))
    assert errors[0].startswith("workflows/probe.yaml:2:6: on.schedule: '61 * * * *' is not a cron")
    assert errors[1] == (
        "workflows/probe.yaml:2:30: on.event: no event 'sync_finised' (write KIND or "
        "KIND.STATUS); did you mean 'sync_finished'?"
    )
    assert errors[2].startswith("workflows/probe.yaml:3:1: concurrency: expected 'skip'")
    assert errors[3].startswith("workflows/probe.yaml:5:5: steps[0].id: 'Stop-DB' is not a step id")
    assert errors[4] == (
        "workflows/probe.yaml:6:5: steps[0].action: unknown action 'restat'; for `docker "
        "restart` write action: docker, params: {command: restart}"
    )
    assert len(errors) == 5  # params are checked once the models pass
    fixed = text.replace("'61 * * * *', event: sync_finised", "'*/5 * * * *'")
    fixed = fixed.replace("concurrency: parallel\n", "").replace("Stop-DB", "stop_db")
    errors = errors_of(write_repo(tmp_path, {"probe.yaml": fixed.replace("restat", "restart")}))
    assert errors[0].startswith("workflows/probe.yaml:5:5: steps[0].action: unknown action")
    fixed = fixed.replace("restat", "log\n    params: {message: hi}")
    assert errors_of(write_repo(tmp_path, {"probe.yaml": fixed})) == [
        "workflows/probe.yaml:9:5: steps[1].params.duration: required field is missing",
        "workflows/probe.yaml:9:14: steps[1].params.duraton: unknown field; "
        "did you mean 'duration'?",
    ]
    never = workflow(step("a"), on="{manual: false}")
    [error] = errors_of(write_repo(tmp_path, {"probe.yaml": never}))
    assert error == (
        "workflows/probe.yaml:2:1: on: say when it runs: schedule, event or manual: true "
        "(any of them)"
    )


def test_templates_conditions_and_channels_go_through_the_runbook_checks(tmp_path: Path) -> None:
    text = workflow(
        step("a", message="{{ ''.__class__ }}") + "  - id: b\n"
        "    needs: [a]\n"
        "    action: notify\n"
        "    condition: \"__import__('os')\"\n"
        "    params: {channel: dicsord, message: hi}\n"
    )
    template, condition, channel = errors_of(write_repo(tmp_path, {"probe.yaml": text}))
    assert template == (
        "workflows/probe.yaml:7:14: steps[0].params.message: attribute '__class__': names "
        "starting with '_' are not allowed"
    )
    assert condition.startswith(
        "workflows/probe.yaml:11:5: steps[1].condition: calls are not allowed"
    )
    assert channel == (
        "workflows/probe.yaml:12:14: steps[1].params.channel: no channel 'dicsord' in "
        "nebula.yaml; did you mean 'discord'?"
    )


def test_a_step_reading_a_step_that_has_not_run_before_it_is_refused(tmp_path: Path) -> None:
    text = workflow(
        step("a")
        + step("b", "[a]", "{{ steps.a.outputs.x }} {{ steps.c.ok }}")
        + step("c", "[a]")
        + "  - id: d\n"
        "    needs: [b]\n"
        "    condition: \"steps.a.ok && steps['d'].ok && steps.e.ok\"\n"
        "    action: log\n"
        "    params: {message: '{{ steps.c.outputs.y }}'}\n"
    )
    assert errors_of(write_repo(tmp_path, {"probe.yaml": text})) == [
        "workflows/probe.yaml:11:14: steps[1].params.message: steps.c may not have run yet: "
        "add 'c' to this step's needs",
        "workflows/probe.yaml:18:5: steps[3].condition: steps.d is this step itself, which has "
        "not finished here",
        "workflows/probe.yaml:18:5: steps[3].condition: steps.e: no step 'e' in this workflow",
        "workflows/probe.yaml:20:14: steps[3].params.message: steps.c may not have run yet: "
        "add 'c' to this step's needs",
    ]


def test_two_files_naming_one_workflow_are_refused(tmp_path: Path) -> None:
    text = workflow(step("a"))
    [error] = errors_of(write_repo(tmp_path, {"a.yaml": text, "b.yml": text}))
    assert error == (
        "workflows/b.yml:1:1: name: workflow 'probe' is also defined in workflows/a.yaml; "
        "give each workflow its own name"
    )


def record(name: str, digest: str = "d1") -> WorkflowRecord:
    return WorkflowRecord(name, f"workflows/{name}.yaml", digest, {"name": name})


def test_plan_creates_updates_and_deletes_workflows_by_name() -> None:
    desired = [record("a"), record("b", "d2"), record("c")]
    stored = [record("b"), record("c"), record("gone")]
    part = Workflows().part(desired, stored)
    lines = [f"workflow {c.name}: {c.action} ({c.reason})" for c in part.pending]
    assert lines == [
        "workflow a: create (new, from workflows/a.yaml)",
        "workflow b: update (changed in workflows/b.yaml)",
        "workflow gone: delete (no longer in the repo)",
    ]
    assert part.detail == desired
    assert part.unsafe(None) is None  # workflows hold no data: the prune guard never holds them
    assert not Workflows().part(stored, stored).has_changes


def test_apply_records_the_workflows_and_a_second_plan_has_nothing_to_do(
    tmp_path: Path, database_url: str
) -> None:
    root = write_repo(
        tmp_path / "repo", {"nightly.yaml": DIAMOND, "probe.yml": workflow(step("a"))}
    )
    with Store(database_url) as store:
        world = World(open_store=lambda: store)
        desired = load_desired(root)
        part = Workflows().plan(desired, world)
        assert [(c.name, c.action) for c in part.pending] == [
            ("nightly-backup", "create"),
            ("probe", "create"),
        ]
        assert Workflows().apply(part, desired, world).changes == part.pending
        assert store.workflows() == [w.record for w in desired.workflows]
        assert not Workflows().plan(desired, world).has_changes

        (root / "workflows" / "probe.yml").unlink()
        (root / "workflows" / "nightly.yaml").write_text(DIAMOND.replace("0 3", "0 4"))
        desired = load_desired(root)
        part = Workflows().plan(desired, world)
        assert [(c.name, c.action) for c in part.pending] == [
            ("nightly-backup", "update"),
            ("probe", "delete"),
        ]
        Workflows().apply(part, desired, world)
        [stored] = store.workflows()
        assert stored.definition["on"]["schedule"] == "0 4 * * *"


def test_cli_validate_and_list(tmp_path: Path) -> None:
    runner = CliRunner()
    root = write_repo(
        tmp_path, {"nightly.yaml": DIAMOND, "poke.yml": workflow(step("a"), "{event: health}")}
    )
    result = runner.invoke(app, ["workflows", "validate", str(root)])
    assert result.exit_code == 0, result.output
    assert "2 workflows valid" in result.output and "nightly-backup" in result.output
    result = runner.invoke(app, ["workflows", "list", str(root), "--output", "json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert [(w["name"], w["triggers"], w["steps"]) for w in listed] == [
        ("nightly-backup", ["schedule 0 3 * * *", "event sync_finished.failed", "manual"], 4),
        ("probe", ["event health"], 1),
    ]
    following = datetime.fromisoformat(listed[0]["next"])
    assert (following.hour, following.minute) == (3, 0) and following > datetime.now(UTC)
    assert listed[1]["next"] is None
    (root / "workflows" / "poke.yml").write_text(workflow(step("a", "[b]")))
    result = runner.invoke(app, ["workflows", "validate", str(root)])
    assert result.exit_code == 2
    assert "workflows/poke.yml:5:13: steps[0].needs[0]: no step 'b'" in result.output
