"""The ReAct mode, for models without native tool calls: every reply is one JSON step
(`thought`, `action`, `action_input`) constrained by a JSON schema the server enforces
(structured output), so a small model's step always parses and names a real tool."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from nebula.kinds.functions.types import FunctionDef

FINAL = "final_answer"
THOUGHT_MAX = 120  # without a bound a small model rambles until its token limit
ANSWER_MAX = 2000


def step_schema(tools: Mapping[str, FunctionDef], *, final: bool = True) -> dict[str, Any]:
    """The schema of one step: one branch per tool with that tool's own arguments, and the
    final answer unless `final` is False (a first turn that must call a tool)."""
    branches = [_branch(name, fn.parameters) for name, fn in tools.items()]
    if final or not branches:
        answer = {"type": "string", "maxLength": ANSWER_MAX}
        branches.append(
            _branch(
                FINAL,
                {
                    "type": "object",
                    "properties": {"answer": answer},
                    "required": ["answer"],
                    "additionalProperties": False,
                },
            )
        )
    return branches[0] if len(branches) == 1 else {"anyOf": branches}


def instructions(tools: Mapping[str, FunctionDef]) -> str:
    """What the system prompt gains in this mode: the step's form and the tools."""
    lines = [
        "Work in steps. Each reply is one JSON object: `action` (a tool's name, or "
        f'{FINAL}), `action_input` (the tool\'s arguments, or {{"answer": ...}} for {FINAL}) '
        "and `thought` (why, briefly). After each tool call you get its result as an observation. Tools:"
    ]
    for name, fn in tools.items():
        lines.append(f"- {name}: {fn.description}. Arguments: {json.dumps(fn.parameters)}")
    return "\n".join(lines)


def observation(name: str, result: str) -> dict[str, Any]:
    """A tool's result as the next message of a ReAct conversation (with a nudge towards the
    answer: small models otherwise call the same tool again and again)."""
    return {
        "role": "user",
        "content": f"Observation from {name}:\n{result}\n\n"
        f"If this answers the task, reply with the action {FINAL}.",
    }


def invalid(reason: str) -> dict[str, Any]:
    """Why the last reply was not a step, as the next message."""
    return {"role": "user", "content": f"Your reply was not a valid step: {reason}."}


def parse_step(content: str) -> tuple[str, Any] | str:
    """(action, action_input) of a reply, or why it is not a step."""
    try:
        step = json.loads(content)
    except ValueError as e:
        return f"the reply is not JSON ({e})"
    if not isinstance(step, dict) or not isinstance(step.get("action"), str):
        return "the reply has no `action`"
    return step["action"], step.get("action_input", {})


def _branch(action: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        # The action comes first: a small model writing its thought first repeats the last
        # step's thought, and with it the last step.
        "properties": {
            "action": {"const": action},
            "action_input": parameters,
            "thought": {"type": "string", "maxLength": THOUGHT_MAX},
        },
        "required": ["action", "action_input", "thought"],
        "additionalProperties": False,
    }
