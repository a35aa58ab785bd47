"""Runbooks: loading, validation at file:line, the expression sandbox, the built-ins, the diff
and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError
from typer.testing import CliRunner

from nebula.cli.app import app
from nebula.engine.load import load_desired
from nebula.errors import ConfigError
from nebula.kinds.runbooks.expressions import evaluate, render
from nebula.kinds.runbooks.kind import Runbooks
from nebula.paths import builtin_runbooks_dir
from nebula.spec.remediation import builtin_runbook_names
from nebula.spec.repo import load_repo
from nebula.store.records import RunbookRecord

SEED = Path(__file__).resolve().parents[2] / "shared" / "SEED.md"
CHANNELS = """\
notifications:
  discord: {urls: ["${secret:discord.webhook}"]}
  email: {urls: ["mailto://nebula:${secret:smtp.password}@mail.home.arpa"]}
"""
ALL_BUILTINS = f"runbooks: [{', '.join(builtin_runbook_names())}]\n"


def write_repo(root: Path, runbooks: dict[str, str], config: str = CHANNELS) -> Path:
    (root / "runbooks").mkdir(parents=True, exist_ok=True)
    (root / "nebula.yaml").write_text(config)
    for name, text in runbooks.items():
        (root / "runbooks" / name).write_text(text)
    return root


def errors_of(root: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_desired(root)
    return [str(issue) for issue in caught.value.issues]


def runbook(steps: str, trigger: str = "{type: manual}") -> str:
    return f"name: probe\ntrigger: {trigger}\nsteps:\n{steps}"


def log_step(message: str) -> str:
    return f"  - name: Say\n    action: log\n    params:\n      message: {message!r}\n"


SEED_CONTEXT = {
    "service": {
        "name": "blog-web",
        "installation": "blog",
        "container": "blog-web",
        "container_id": "3f9a1c2b7d4e",
        "health": "unhealthy",
        "restart_count": 2,
        "health_endpoint": "http://127.0.0.1:8081/",
    },
    "alert": {"name": "unhealthy", "labels": {"installation": "blog"}},
    "labels": {"installation": "blog"},
    "steps": {},
}


def test_the_seeds_runbook_is_built_in_unchanged_and_loads(tmp_path: Path) -> None:
    text = (builtin_runbooks_dir() / "restart-unhealthy-service.yml").read_text()
    if SEED.exists():  # beside the project in development; the built-in copy is the contract
        block = SEED.read_text().split("# runbooks/restart-unhealthy-service.yml", 1)[1]
        assert text == "# runbooks/restart-unhealthy-service.yml" + block.split("```", 1)[0]
    desired = load_desired(
        write_repo(tmp_path, {}, CHANNELS + "runbooks: [restart-unhealthy-service]\n")
    )
    [seed] = desired.runbooks
    assert seed.record.builtin and seed.name == "restart-unhealthy-service"
    assert [s.key for s in seed.spec.steps] == [
        "log_incident",
        "attempt_restart",
        "wait_for_health",
        "check_health",
        "notify_on_failure",
    ]
    assert seed.spec.steps[2].params == {"duration": "30s"}
    assert seed.spec.escalation is not None and seed.spec.escalation.notify == ["discord", "email"]


def test_the_seeds_condition_and_templates_evaluate_with_the_alerts_context(tmp_path: Path) -> None:
    desired = load_desired(
        write_repo(tmp_path, {}, CHANNELS + "runbooks: [restart-unhealthy-service]\n")
    )
    spec = desired.runbooks[0].spec
    condition = spec.trigger.condition
    assert condition is not None
    assert evaluate(condition, SEED_CONTEXT)
    third = SEED_CONTEXT | {"service": SEED_CONTEXT["service"] | {"restart_count": 3}}
    assert not evaluate(condition, third)
    healthy = SEED_CONTEXT | {"service": SEED_CONTEXT["service"] | {"health": "healthy"}}
    assert not evaluate(condition, healthy)
    assert not evaluate(condition, {})  # nothing known: false, never an error

    log, restart, _, check, notify = spec.steps
    assert render(log.params["message"], SEED_CONTEXT) == "Service blog-web is unhealthy"
    assert render(restart.params["container"], SEED_CONTEXT) == "3f9a1c2b7d4e"
    assert render(check.params["url"], SEED_CONTEXT) == "http://127.0.0.1:8081/"
    assert notify.condition is not None
    failed = SEED_CONTEXT | {"steps": {"check_health": {"ok": False, "failed": True}}}
    recovered = SEED_CONTEXT | {"steps": {"check_health": {"ok": True, "failed": False}}}
    assert evaluate(notify.condition, failed)
    assert not evaluate(notify.condition, recovered)
    assert not evaluate(notify.condition, SEED_CONTEXT)  # the step did not run
    assert render(notify.params["message"], failed) == "Failed to recover blog-web"


def test_javascript_operators_apply_outside_strings_only() -> None:
    context = {"service": {"name": "a && !b", "health": "healthy"}}
    assert evaluate("service.name == 'a && !b'", context)
    assert evaluate("!(service.health == 'unhealthy') || false", context)
    assert evaluate("service.health != 'unhealthy' && service.name", context)
    assert render("{{ service.missing }}|{{ steps.x.output }}", context) == "|"


def test_every_builtin_runbook_loads_when_enabled(tmp_path: Path) -> None:
    names = builtin_runbook_names()
    assert {"restart-unhealthy-service", "container-oom", "sync-failed"} <= set(names)
    assert {"certificate-expiring", "disk-pressure"} <= set(names)
    desired = load_desired(write_repo(tmp_path, {}, CHANNELS + ALL_BUILTINS))
    assert [r.name for r in desired.runbooks] == names
    assert all(r.record.builtin for r in desired.runbooks)
    disk = next(r.spec for r in desired.runbooks if r.name == "disk-pressure")
    assert all(s.params.get("command") != "rm" for s in disk.steps)
    assert disk.trigger.schedule == "*/30 * * * *"


def test_container_oom_reports_the_limit_and_the_logs_it_read(tmp_path: Path) -> None:
    desired = load_desired(write_repo(tmp_path, {}, CHANNELS + "runbooks: [container-oom]\n"))
    logs, notify = desired.runbooks[0].spec.steps
    context = SEED_CONTEXT | {
        "service": SEED_CONTEXT["service"] | {"memory_limit": "256MiB"},
        "steps": {"last_logs": {"ok": True, "output": "out of memory: killed"}},
    }
    message = render(notify.params["message"], context)
    assert "256MiB" in message and "out of memory: killed" in message
    assert logs.params["command"] == "logs"


def test_sync_failed_passes_on_the_file_line_errors() -> None:
    text = (builtin_runbooks_dir() / "sync-failed.yml").read_text()
    assert "alert.annotations.errors" in text
    context = {
        "alert": {"annotations": {"errors": "packages/blog.yaml:3:5: image: required field"}},
        "labels": {"commit": "3f9a1c2"},
    }
    message_template = text.split("message: |-\n", 1)[1]
    rendered = render("\n".join(line.strip() for line in message_template.splitlines()), context)
    assert "packages/blog.yaml:3:5: image: required field" in rendered


def test_typos_and_unknown_actions_are_named_at_file_line(tmp_path: Path) -> None:
    text = runbook(
        "  - name: Restart\n"
        "    action: restat\n"
        "  - name: Say\n"
        "    action: log\n"
        "    parms: {message: hi}\n"
        "  - name: Wait\n"
        "    action: wait\n"
        "    params: {duraton: 30s}\n"
        "  - name: Restart2\n"
        "    action: docker\n"
        "    params: {command: reboot, container: x}\n"
    )
    errors = errors_of(write_repo(tmp_path, {"probe.yml": text}))
    assert (
        "runbooks/probe.yml:5:5: steps[0].action: unknown action 'restat'; for `docker restart` "
        "write action: docker, params: {command: restart}" in errors
    )
    assert "runbooks/probe.yml:8:5: steps[1].parms: unknown field; did you mean 'params'?" in errors
    fixed = text.replace("restat", "log\n    params: {message: hi}").replace("parms", "params")
    errors = errors_of(write_repo(tmp_path, {"probe.yml": fixed}))
    assert (
        "runbooks/probe.yml:12:14: steps[2].params.duraton: unknown field; did you mean 'duration'?"
        in errors
    )
    assert any(
        e.startswith("runbooks/probe.yml:15:14: steps[3].params.command: expected") for e in errors
    ), errors


ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ __import__('os').system('touch /tmp/escaped') }}",
    "{{ foo() }}",
    "{{ lipsum }}",
    "{{ range(10) }}",
    "{{ service.name.upper() }}",
    "{{ service['__class__'] }}",
    "{{ service.name | attr('__class__') }}",
    "{% include 'nebula.yaml' %}",
    "{% import 'x' as y %}",
    "{% macro m() %}x{% endmacro %}",
    "{% set __x = 1 %}",
]


@pytest.mark.parametrize("template", ESCAPES)
def test_sandbox_escapes_in_templates_fail_validation_at_their_line(
    tmp_path: Path, template: str
) -> None:
    text = runbook(log_step("ok") + log_step(template).replace("Say", "Say again"))
    [error] = errors_of(write_repo(tmp_path, {"probe.yml": text}))
    assert error.startswith("runbooks/probe.yml:11:7: steps[1].params.message: "), error


@pytest.mark.parametrize(
    "condition",
    ["__import__('os')", "service.__class__", "steps.x() && true", "{{ lipsum }}", "a }}{{ b"],
)
def test_sandbox_escapes_in_conditions_fail_validation_at_their_line(
    tmp_path: Path, condition: str
) -> None:
    text = runbook(log_step("ok"), trigger=f"{{type: alert, condition: {condition!r}}}")
    [error] = errors_of(write_repo(tmp_path, {"probe.yml": text}))
    assert error.startswith("runbooks/probe.yml:2:"), error
    assert "trigger.condition: " in error


def test_a_refused_template_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "escaped"
    with pytest.raises(ValueError, match="calls are not allowed"):
        render(f"{{{{ __import__('os').system('touch {marker}') }}}}", {})
    assert not marker.exists()


def test_repeating_text_is_refused_when_it_runs() -> None:
    context = {"service": {"name": "blog-web", "restart_count": 2}}
    assert render("{{ service.restart_count * 2 }}", context) == "4"
    with pytest.raises(SecurityError):
        render("{{ service.name * 100000000 }}", context)


def test_a_bad_cron_is_refused(tmp_path: Path) -> None:
    text = runbook(log_step("ok"), trigger="{type: schedule, schedule: '61 * * * *'}")
    [error] = errors_of(write_repo(tmp_path, {"probe.yml": text}))
    assert error.startswith("runbooks/probe.yml:2:") and "trigger.schedule" in error
    assert "not a cron expression" in error and "59" in error
    missing = runbook(log_step("ok"), trigger="{type: schedule}")
    [error] = errors_of(write_repo(tmp_path, {"probe.yml": missing}))
    assert "a trigger of type schedule needs schedule" in error


def test_notify_naming_an_undeclared_channel_is_refused(tmp_path: Path) -> None:
    text = runbook(
        "  - name: Tell\n"
        "    action: notify\n"
        "    params: {channel: dicsord, message: hi}\n"
        "  - name: Tell all\n"
        "    action: notify\n"
        "    params: {channels: [email, slack], message: hi}\n"
        "  - name: Remote\n"
        "    action: ssh\n"
        "    params: {node: nas, command: uptime}\n"
        "escalation: {notify: [emal]}\n"
    )
    errors = errors_of(write_repo(tmp_path, {"probe.yml": text}))
    assert errors == [
        "runbooks/probe.yml:6:14: steps[0].params.channel: no channel 'dicsord' in nebula.yaml; "
        "did you mean 'discord'?",
        "runbooks/probe.yml:9:32: steps[1].params.channels[1]: no channel 'slack' in nebula.yaml; "
        "declare it under notifications:",
        "runbooks/probe.yml:12:14: steps[2].params.node: no node 'nas' in nebula.yaml; "
        "declare it under nodes:",
        "runbooks/probe.yml:13:23: escalation.notify[0]: no channel 'emal' in nebula.yaml; "
        "did you mean 'email'?",
    ]


def test_enabling_an_unknown_builtin_is_refused(tmp_path: Path) -> None:
    config = CHANNELS + "runbooks: [restart-unhealthy-service, container-oon]\n"
    [error] = errors_of(write_repo(tmp_path, {}, config))
    assert error == (
        "nebula.yaml:4:39: runbooks[1]: no built-in runbook 'container-oon'; "
        "did you mean 'container-oom'?"
    )


def test_a_repo_runbook_named_like_an_enabled_builtin_is_refused(tmp_path: Path) -> None:
    text = runbook(log_step("ok")).replace("name: probe", "name: container-oom")
    root = write_repo(tmp_path, {"oom.yml": text}, CHANNELS + "runbooks: [container-oom]\n")
    [error] = errors_of(root)
    assert error.startswith("runbooks/oom.yml:1:1: name: runbook 'container-oom' is also")
    assert "pick one" in error


def test_steps_are_named_once_and_their_params_fit_the_action(tmp_path: Path) -> None:
    twice = runbook(log_step("a") + log_step("b").replace("Say", "say!"))
    probe = runbook(
        "  - name: Probe\n    action: health_check\n    params: {url: 'http://x/', port: 80}\n"
    ).replace("name: probe", "name: probe2")
    errors = errors_of(write_repo(tmp_path, {"twice.yml": twice, "probe.yml": probe}))
    assert errors == [
        "runbooks/probe.yml:6:5: steps[0].params: give url (an HTTP check) or host and port "
        "(a TCP check)",
        "runbooks/twice.yml:8:5: steps[1].name: another step is also steps.say; give each step "
        "its own name (first on line 4)",
    ]


def test_nebula_yaml_remediation_settings_and_maintenance_windows(tmp_path: Path) -> None:
    config = CHANNELS + (
        "remediation: {max_restarts: 5, restart_window: 30m, cooldown: 2m}\n"
        "maintenance:\n"
        "  - {match: {installation: blog}, cron: '0 3 * * 0', duration: 2h}\n"
        "  - {match: {installation: nas}, start: '2026-05-01T22:00:00+02:00',"
        " end: '2026-05-02T02:00:00+02:00'}\n"
    )
    repo = load_repo(write_repo(tmp_path, {}, config))
    assert repo.config.remediation.max_restarts == 5
    assert repo.config.remediation.restart_window == 1800.0
    assert repo.config.remediation.concurrency == 4  # the default
    assert repo.config.maintenance[0].duration == 7200.0
    assert repo.config.notifications["discord"].urls == ["${secret:discord.webhook}"]
    bad = CHANNELS + "maintenance:\n  - {match: {installation: blog}, cron: '0 3 * * 0'}\n"
    with pytest.raises(ConfigError) as caught:
        load_repo(write_repo(tmp_path, {}, bad))
    assert "maintenance[0]: a recurring window needs both cron and a duration" in str(caught.value)


def record(name: str, digest: str = "d1", builtin: bool = False) -> RunbookRecord:
    return RunbookRecord(name, f"runbooks/{name}.yml", digest, {"name": name}, builtin)


def test_plan_creates_updates_and_deletes_runbooks_by_name() -> None:
    desired = [record("a"), record("b", "d2"), record("c")]
    stored = [record("b"), record("c"), record("gone")]
    part = Runbooks().part(desired, stored)
    lines = [f"runbook {c.name}: {c.action}" for c in part.pending]
    assert lines == ["runbook a: create", "runbook b: update", "runbook gone: delete"]
    assert part.detail == desired
    assert part.unsafe(None) is None  # runbooks hold no data: the prune guard never holds them
    assert not Runbooks().part(stored, stored).has_changes


def test_cli_validate_and_list(tmp_path: Path) -> None:
    runner = CliRunner()
    root = write_repo(
        tmp_path,
        {"tell.yml": runbook(log_step("hi"), "{type: alert, alert: unhealthy}")},
        CHANNELS + "runbooks: [container-oom]\n",
    )
    result = runner.invoke(app, ["runbooks", "validate", str(root)])
    assert result.exit_code == 0, result.output
    assert "2 runbooks valid" in result.output
    assert "alert oom_killed" in result.output and "built-in" in result.output
    result = runner.invoke(app, ["runbooks", "list", str(root), "--output", "json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert [(r["name"], r["trigger"], r["steps"], r["builtin"]) for r in listed] == [
        ("container-oom", "alert oom_killed", 2, True),
        ("probe", "alert unhealthy", 1, False),
    ]
    (root / "runbooks" / "tell.yml").write_text(runbook(log_step("{{ foo() }}")))
    result = runner.invoke(app, ["runbooks", "validate", str(root)])
    assert result.exit_code == 2
    assert "runbooks/tell.yml:7:7: steps[0].params.message: calls are not allowed" in result.output
