"""Agents and functions as kinds of the config repo: loading into what the AI runtime runs,
every check at file:line with a hint, nebula.yaml's `ai:`, the plan and apply of both kinds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nebula.cli.plan_view import plan_json, render_plan
from nebula.engine.load import load_desired
from nebula.errors import ConfigError
from nebula.kinds.agents.kind import Agents
from nebula.kinds.base import World
from nebula.kinds.functions.kind import Functions
from nebula.kinds.functions.types import BUILTINS
from nebula.plan import Plan
from nebula.store import Store
from nebula.store.records import FunctionRecord

OPS = Path(__file__).resolve().parents[1] / "examples" / "ops-assistant"

AGENT = """\
name: helper
systemPrompt: You help.
model: ollama:llama3.2
tools: [status, restart]
"""
RESTART = "name: restart\nimplementation: restart\nimplementation_type: code\n"
STATUS = "name: status\nimplementation: status\nimplementation_type: code\n"
HOOK = """\
name: page
description: Page the person on call
parameters:
  type: object
  properties: {text: {type: string, maxLength: 200}}
  required: [text]
implementation: https://hooks.example.com/page
implementation_type: http
timeout: 10s
require_approval: true
http: {method: PUT, headers: {Authorization: "Bearer ${secret:hook_token}"}}
"""
CHECKER = """\
name: disk-check
description: Report the disk use of a path
parameters: {type: object, properties: {path: {type: string}}}
implementation: ghcr.io/example/disk-check:1.2
implementation_type: docker
docker: {command: [check, --json], memory: 128m, cpus: 0.25}
"""


def write_repo(
    root: Path,
    agents: dict[str, str],
    functions: dict[str, str],
    config: str = "",
) -> Path:
    for folder, files in (("agents", agents), ("functions", functions)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (root / folder / name).write_text(text)
    (root / "nebula.yaml").write_text(config)
    return root


def errors_of(root: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_desired(root)
    return [str(issue) for issue in caught.value.issues]


def test_the_ops_assistant_example_loads_as_part_of_a_repo(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(OPS, root)
    (root / "packages").mkdir()
    (root / "packages" / "blog.yaml").write_text(
        "compose:\n  services:\n    web: {image: nginx:1.27}\n"
    )
    desired = load_desired(root)
    assert [i.name for i in desired.installations] == ["blog"]
    [agent] = desired.agents
    assert agent.spec.provider == "ollama" and agent.spec.model_name == "llama3.2"
    assert set(agent.spec.tools) == {f.name for f in desired.functions}
    for function in desired.functions:
        builtin = BUILTINS[function.spec.implementation]
        assert not builtin.writes and not function.spec.writes
        assert function.spec.parameters == builtin.parameters
        assert function.record.definition["parameters"] == builtin.parameters
    assert agent.spec.file == "agents/ops-assistant.yaml"


def test_agents_and_functions_load_with_their_settings(tmp_path: Path) -> None:
    agent = (
        AGENT.replace("tools: [status, restart]", "tools: [status, restart, page, disk-check]")
        + """\
temperature: 0.2
context: {maxTokens: 512, includeHistory: true}
guardrails:
  maxExecutionTime: 1m30s
  blockedPatterns: ["rm -rf", "(?i)drop\\\\s+table"]
  requireApproval: true
  autoApprove: [restart]
maxTurns: 4
toolCalling: react
toolChoice: required
"""
    )
    root = write_repo(
        tmp_path,
        {"helper.yaml": agent},
        {"status.yml": STATUS, "restart.yaml": RESTART, "page.yaml": HOOK, "disk.yaml": CHECKER},
        "ai:\n  providers:\n    local: {base_url: http://127.0.0.1:8080/v1}\n",
    )
    desired = load_desired(root)
    [helper] = desired.agents
    spec = helper.spec
    assert spec.tools == ("status", "restart", "page", "disk-check")
    assert (spec.temperature, spec.max_tokens, spec.include_history) == (0.2, 512, True)
    assert (spec.max_execution_time, spec.require_approval, spec.auto_approve) == (
        90.0,
        True,
        ("restart",),
    )
    assert spec.blocked_patterns == ("rm -rf", "(?i)drop\\s+table")
    assert (spec.max_turns, spec.tool_calling, spec.tool_choice) == (4, "react", "required")
    assert helper.record.definition["guardrails"]["autoApprove"] == ["restart"]
    functions = {f.name: f.spec for f in desired.functions}
    assert functions["restart"].writes and not functions["status"].writes
    page = functions["page"]
    assert page.http is not None and page.http.method == "PUT"
    assert page.http.headers == {"Authorization": "Bearer ${secret:hook_token}"}
    assert (page.timeout, page.require_approval, page.docker) == (10.0, True, None)
    disk = functions["disk-check"]
    assert disk.docker is not None and disk.http is None
    assert (disk.docker.command, disk.docker.network, disk.docker.memory, disk.docker.cpus) == (
        ("check", "--json"),
        None,
        "128m",
        0.25,
    )


def test_agent_checks_name_the_line_and_suggest(tmp_path: Path) -> None:
    agent = """\
name: helper
systemPrompt: You help.
model: olama:llama3.2
tools: [staus, restart, status]
guardrails:
  blockedPatterns: ["ok", "(unclosed"]
  autoApprove: [status, apply]
"""
    root = write_repo(tmp_path, {"helper.yaml": agent}, {"s.yaml": STATUS, "r.yaml": RESTART})
    assert errors_of(root) == [
        "agents/helper.yaml:3:1: model: no model provider 'olama'; did you mean 'ollama'?",
        "agents/helper.yaml:4:9: tools[0]: no function 'staus'; did you mean 'status'?",
        "agents/helper.yaml:6:27: guardrails.blockedPatterns[1]: not a valid regular "
        "expression: missing ), unterminated subpattern at position 0",
        "agents/helper.yaml:7:17: guardrails.autoApprove[0]: 'status' does not write: it never "
        "waits for approval, so there is nothing to approve; remove it here",
        "agents/helper.yaml:7:25: guardrails.autoApprove[1]: 'apply' is not among this "
        "agent's tools: add it to tools, or remove it here",
    ]


def test_model_providers_route_by_prefix(tmp_path: Path) -> None:
    config = "ai:\n  providers:\n    local: {base_url: http://127.0.0.1:8080/v1}\n"

    def model_errors(model: str) -> list[str]:
        text = AGENT.replace("ollama:llama3.2", model).replace("[status, restart]", "[]")
        write_repo(tmp_path, {"helper.yaml": text}, {}, config)
        try:
            load_desired(tmp_path)
        except ConfigError as exc:
            return [issue.message for issue in exc.issues]
        return []

    for good in ("ollama:llama3.2:3b", "openai:gpt-4o", "gpt-4o", "local:smollm2"):
        assert model_errors(good) == [], good
    [anthropic] = model_errors("anthropic:claude-3-5-sonnet")
    assert anthropic.startswith("Anthropic is not available in this version; use ollama:NAME")
    assert model_errors("locl:smollm2") == ["no model provider 'locl'; did you mean 'local'?"]
    [other] = model_errors("mistral:large")
    assert other == (
        "no model provider 'mistral'; providers: ollama, openai, local (add servers under "
        "ai.providers)"
    )
    assert model_errors('"ollama:"') == [
        "give the model's name after 'ollama', e.g. ollama:llama3.2"
    ]


def test_tool_choice_required_needs_tools_and_tools_are_listed_once(tmp_path: Path) -> None:
    text = AGENT.replace("tools: [status, restart]", "toolChoice: required")
    assert errors_of(write_repo(tmp_path, {"helper.yaml": text}, {})) == [
        "agents/helper.yaml:4:1: toolChoice: 'required' makes the first reply call a tool, and "
        "this agent has none: list its tools, or use auto"
    ]
    twice = AGENT.replace("[status, restart]", "[status, status]")
    [error] = errors_of(write_repo(tmp_path, {"helper.yaml": twice}, {"s.yaml": STATUS}))
    assert error == "agents/helper.yaml:4:17: tools[1]: 'status' is listed twice; name it once"


def test_agent_shape_errors_suggest_the_seed_keys(tmp_path: Path) -> None:
    text = AGENT.replace("systemPrompt:", "system_prompt:") + "temperature: 3\nmaxturns: 4\n"
    root = write_repo(tmp_path, {"helper.yaml": text}, {"s.yaml": STATUS, "r.yaml": RESTART})
    assert errors_of(root) == [
        "agents/helper.yaml:1:1: systemPrompt: required field is missing",
        "agents/helper.yaml:2:1: system_prompt: unknown field; did you mean 'systemPrompt'?",
        "agents/helper.yaml:5:1: temperature: expected less than or equal to 2",
        "agents/helper.yaml:6:1: maxturns: unknown field; did you mean 'maxTurns'?",
    ]


def test_function_checks_name_the_line_and_suggest(tmp_path: Path) -> None:
    cases = {
        "a.yaml": "name: a\nimplementation: statuss\nimplementation_type: code\n",
        "b.yaml": HOOK.replace("https://hooks.example.com/page", "ftp://hooks.example.com"),
        "c.yaml": CHECKER.replace("ghcr.io/example/disk-check:1.2", "Not An Image"),
        "d.yaml": HOOK.replace("name: page", "name: d").replace(
            "implementation_type: http", "implementation_type: docker"
        ),
        "e.yaml": "name: e\nimplementation: status\nimplementation_type: code\n"
        "parameters: {type: object, properties: {x: {type: strin}}}\n",
        "f.yaml": "name: f\nimplementation: status\nimplementation_type: code\n"
        "parameters: {type: array}\n",
        "g.yaml": "name: g.h\nimplementation: status\nimplementation_type: code\n",
        "h.yaml": CHECKER.replace("name: disk-check", "name: h").replace(
            "parameters: {type: object, properties: {path: {type: string}}}\n", ""
        ),
    }
    errors = errors_of(write_repo(tmp_path, {}, cases))
    assert errors == [
        "functions/a.yaml:2:1: implementation: no built-in function 'statuss'; "
        "did you mean 'status'?",
        "functions/b.yaml:7:1: implementation: http functions run a request to an http(s) "
        "URL: 'ftp://hooks.example.com' is not an http(s) URL; use e.g. http://127.0.0.1:8080",
        "functions/c.yaml:4:1: implementation: docker functions run a container of an image: "
        "'Not An Image' is not a valid image reference (repository names are lowercase); "
        "expected [registry[:port]/]name[:tag][@digest], e.g. nginx:1.27 or ghcr.io/org/app:v1",
        "functions/d.yaml:11:1: http: `http:` is for http functions only; this one is docker",
        "functions/e.yaml:4:45: parameters.properties.x.type: not a valid JSON Schema "
        "(Draft 2020-12): 'strin' is not valid under any of the given schemas",
        "functions/f.yaml:4:14: parameters.type: arguments are an object: give `type: object` "
        "and its `properties`",
        "functions/g.yaml:1:1: name: 'g.h' cannot be a function's name: models call functions "
        "by names of a-z, 0-9, '_' and '-' (no '.')",
        "functions/h.yaml:1:1: give the JSON Schema of its arguments: required for docker "
        "functions",
    ]


def test_two_files_naming_one_function_or_agent_are_refused(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {}, {"a.yaml": STATUS, "b.yml": STATUS})
    assert errors_of(root) == [
        "functions/b.yml:1:1: name: function 'status' is also defined in functions/a.yaml; "
        "give each function its own name"
    ]
    (root / "functions" / "b.yml").unlink()
    text = AGENT.replace("[status, restart]", "[status]")
    write_repo(root, {"a.yaml": text, "b.yaml": text}, {})
    assert errors_of(root) == [
        "agents/b.yaml:1:1: name: agent 'helper' is also defined in agents/a.yaml; "
        "give each agent its own name"
    ]


def test_api_keys_must_be_secret_references(tmp_path: Path) -> None:
    config = """\
ai:
  openai: {api_key: sk-live-0123456789}
  providers:
    local: {base_url: "127.0.0.1:8080", api_key: "${secret:local_key}"}
"""
    assert errors_of(write_repo(tmp_path, {}, {}, config)) == [
        "nebula.yaml:2:12: ai.openai.api_key: write the key as ${secret:NAME} (stored with "
        "`nebula secrets set NAME`); a key in the repo would be readable by anyone with the repo",
        "nebula.yaml:4:13: ai.providers.local.base_url: '127.0.0.1:8080' is not an http(s) URL; "
        "use e.g. http://127.0.0.1:8080",
    ]
    reserved = "ai:\n  providers:\n    openai: {base_url: http://127.0.0.1:8080/v1}\n"
    assert errors_of(write_repo(tmp_path, {}, {}, reserved)) == [
        "nebula.yaml:3:5: ai.providers.openai: 'openai' is a built-in provider's name; "
        "give this server another name"
    ]
    good = (
        "ai:\n  ollama: {host: 'http://gpu-box:11434/', pull: false}\n"
        "  openai: {api_key: '${secret:openai_key}'}\n  timeout: 30s\n"
        "  providers:\n    local: {base_url: http://127.0.0.1:8080/v1, api_key: '${secret:k}'}\n"
    )
    ai = load_desired(write_repo(tmp_path, {}, {}, good)).repo.config.ai
    assert (ai.ollama.host, ai.ollama.pull, ai.timeout) == ("http://gpu-box:11434", False, 30.0)
    assert ai.openai.base_url == "https://api.openai.com/v1"
    assert (ai.openai.api_key_secret, ai.providers["local"].api_key_secret) == ("openai_key", "k")
    assert ai.provider_names == ("ollama", "openai", "local")


def test_plan_creates_each_then_nothing_and_a_removed_function_is_deleted(
    tmp_path: Path, database_url: str
) -> None:
    root = write_repo(
        tmp_path / "repo",
        {"helper.yaml": AGENT},
        {"status.yaml": STATUS, "restart.yaml": RESTART, "page.yaml": HOOK},
    )
    kinds = (Functions(), Agents())
    with Store(database_url) as store:
        world = World(open_store=lambda: store)
        desired = load_desired(root)
        parts = [kind.plan(desired, world) for kind in kinds]
        assert [[(c.name, c.action) for c in p.pending] for p in parts] == [
            [("page", "create"), ("restart", "create"), ("status", "create")],
            [("helper", "create")],
        ]
        for kind, part in zip(kinds, parts, strict=True):
            assert kind.apply(part, desired, world).changes == part.pending
        assert store.functions() == [f.record for f in desired.functions]
        assert store.agents() == [a.record for a in desired.agents]
        assert not any(kind.plan(desired, world).has_changes for kind in kinds)

        (root / "functions" / "page.yaml").unlink()
        desired = load_desired(root)
        part = Functions().plan(desired, world)
        assert [(c.name, c.action, c.reason) for c in part.pending] == [
            ("page", "delete", "no longer in the repo")
        ]
        assert part.unsafe(None) is None  # definitions hold no data: never held by the guard
        Functions().apply(part, desired, world)
        assert [f.name for f in store.functions()] == ["restart", "status"]
        assert not Agents().plan(desired, world).has_changes


def test_nebula_plan_lists_their_changes_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_repo(tmp_path, {"helper.yaml": AGENT}, {"s.yaml": STATUS, "r.yaml": RESTART})
    desired = load_desired(root)
    gone = FunctionRecord("page", "functions/page.yaml", "d", {"name": "page"})
    the_plan = Plan(
        (
            Functions().part([f.record for f in desired.functions], [gone]),
            Agents().part([a.record for a in desired.agents], []),
        )
    )
    render_plan(the_plan)
    lines = [line.strip() for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines == [
        "- delete functions page: no longer in the repo",
        "+ create functions restart: new, from functions/r.yaml",
        "+ create functions status: new, from functions/s.yaml",
        "+ create agents helper: new, from agents/helper.yaml",
        "Plan: 3 to create, 0 to update, 1 to delete, 0 unchanged",
    ]
    data = plan_json(the_plan)
    assert [c["name"] for c in data["agents"]["changes"]] == ["helper"]
    assert [c["action"] for c in data["functions"]["changes"]] == ["delete", "create", "create"]
