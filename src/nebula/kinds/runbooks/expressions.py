"""The sandbox of runbook templates (`"Service {{ service.name }} is down"`) and conditions
(`service.health == 'unhealthy' && service.restart_count < 3`).

Both are Jinja2 run by its `SandboxedEnvironment` with no globals and a few filters. What a
runbook may write is checked when it loads, by walking the parsed template: only the node types
of plain expressions (names of the context, attributes and items, operators, comparisons, `if`,
`for`, `set`) and the allowed filters and tests pass; an underscore attribute, a call of
anything, an import, include or macro is refused there, with the runbook's file and line, and
so never runs. The sandbox's own runtime checks stay as a second wall.

Conditions take the JavaScript-like operators of the seed's runbooks: `&&`, `||` and `!` are
read as `and`, `or` and `not` outside string literals; a condition may be wrapped in `{{ }}`.
Names missing from the context are empty: a condition over them is false, never an error.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import ChainableUndefined, nodes
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.parser import Parser
from jinja2.sandbox import SandboxedEnvironment

from nebula.spec.names import excerpt

CONTEXT_NAMES = frozenset(
    {"service", "alert", "labels", "incident", "steps", "now", "event", "schedule"}
    | {"workflow", "run"}
)
"""The top-level names the executor gives templates and conditions (`event`: an event
trigger's event; `schedule`: a scheduled one's cron expression; `workflow` and `run`: the
workflow a step belongs to and its run)."""

FILTERS: tuple[str, ...] = ("default", "first", "int", "join", "last", "length", "lower")
FILTERS += ("replace", "round", "string", "trim", "upper")
TESTS = ("defined", "undefined", "none", "number", "string", "true", "false", "in")

_ALLOWED_NODES: tuple[type[nodes.Node], ...] = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.Const,
    nodes.Name,
    nodes.Getattr,
    nodes.Getitem,
    nodes.Slice,
    nodes.Filter,
    nodes.Keyword,
    nodes.Test,
    nodes.CondExpr,
    nodes.And,
    nodes.Or,
    nodes.Not,
    nodes.Neg,
    nodes.Pos,
    nodes.Compare,
    nodes.Operand,
    nodes.Add,
    nodes.Sub,
    nodes.Mul,
    nodes.Div,
    nodes.FloorDiv,
    nodes.Mod,
    nodes.Concat,
    nodes.List,
    nodes.Tuple,
    nodes.Dict,
    nodes.Pair,
    nodes.If,
    nodes.For,
    nodes.Assign,
)


class _Sandbox(SandboxedEnvironment):
    """Jinja2's sandbox, refusing also `*` on text and lists (`'x' * 10**9` fills memory)."""

    intercepted_binops = frozenset({"*"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if isinstance(left, str | list | tuple) or isinstance(right, str | list | tuple):
            raise SecurityError("repeating text or lists with '*' is not allowed")
        return super().call_binop(context, operator, left, right)


def _environment(finalize: Callable[[Any], Any] | None = None) -> SandboxedEnvironment:
    env = _Sandbox(undefined=ChainableUndefined, autoescape=False, finalize=finalize)
    env.globals.clear()  # no range, lipsum, cycler, joiner, namespace, dict
    env.filters = {name: env.filters[name] for name in FILTERS}
    env.tests = {name: env.tests[name] for name in TESTS}
    return env


_ENV = _environment()
# For a command a shell runs: every value a template puts in is one quoted word, so a value
# (an alert's label, from whoever can post alerts) can never add a command of its own.
_SHELL_ENV = _environment(lambda value: shlex.quote("" if value is None else str(value)))
_JS_OPERATOR = re.compile(r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|&&|\|\||!(?!=)""")
_WORDS = {"&&": " and ", "||": " or ", "!": " not "}
_WRAPPED = re.compile(r"\s*\{\{(.*)\}\}\s*", re.DOTALL)


def check_template(text: str) -> None:
    """ValueError saying what is wrong with template `text`: its syntax, or a construct, name,
    attribute, filter or call the sandbox refuses."""
    _checked_template(text)


def check_condition(text: str) -> None:
    """ValueError saying what is wrong with condition `text` (one expression)."""
    _checked_condition(text)


def render(text: str, context: Mapping[str, Any], shell: bool = False) -> str:
    """Template `text` rendered with `context`; missing names render empty. With `shell`,
    each value put in is quoted as one shell word. What only the values can tell (`'x' * 3`)
    raises jinja2's `SecurityError`."""
    return str(_checked_template(text, shell).render(context))


def evaluate(condition: str, context: Mapping[str, Any]) -> bool:
    """Whether `condition` holds in `context`; over a missing name it is false."""
    expression = _checked_condition(condition)
    try:
        return bool(expression(**context))
    except (UndefinedError, TypeError):  # e.g. a missing restart_count compared with 3
        return False


def step_references(text: str, condition: bool = False) -> frozenset[str]:
    """The keys of the steps that `text`, a checked template (or condition), reads:
    `steps.KEY…` or `steps['KEY']…`."""
    source = f"{{{{ {_javascript_operators(_unwrapped(text))} }}}}" if condition else text
    try:
        tree = _ENV.parse(source)
    except TemplateSyntaxError:  # a condition whose strings hold "}}": it names no step
        return frozenset()
    found = set()
    for node in _walk(tree):
        if isinstance(node, nodes.Getattr | nodes.Getitem) and _is_steps(node.node):
            key = node.attr if isinstance(node, nodes.Getattr) else getattr(node.arg, "value", None)
            if isinstance(key, str):
                found.add(key)
    return frozenset(found)


def _is_steps(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Name) and node.name == "steps"


@lru_cache(maxsize=1024)
def _checked_template(text: str, shell: bool = False) -> Any:
    _check(_parse(lambda: _ENV.parse(text)))
    return (_SHELL_ENV if shell else _ENV).from_string(text)


@lru_cache(maxsize=1024)
def _checked_condition(text: str) -> Any:
    source = _javascript_operators(_unwrapped(text))

    def parse() -> nodes.Node:
        parser = Parser(_ENV, source, state="variable")
        expression = parser.parse_expression()
        if not parser.stream.eos:
            parser.fail(f"unexpected {excerpt(str(parser.stream.current.value))} after it")
        return expression

    _check(_parse(parse))
    return _ENV.compile_expression(source, undefined_to_none=False)


def _unwrapped(text: str) -> str:
    wrapped = _WRAPPED.fullmatch(text)
    return wrapped[1] if wrapped else text


def _javascript_operators(text: str) -> str:
    return _JS_OPERATOR.sub(lambda m: m[1] or _WORDS[m[0]], text)


def _parse(parse: Any) -> nodes.Node:
    try:
        node: nodes.Node = parse()
    except TemplateSyntaxError as exc:
        raise ValueError(f"invalid expression: {exc.message}") from None
    return node


def _check(tree: nodes.Node) -> None:
    bound = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    if any(tree.find_all(nodes.For)):
        bound.add("loop")
    for node in _walk(tree):
        problem = _problem(node, bound)
        if problem:
            raise ValueError(problem)


def _walk(node: nodes.Node) -> Iterator[nodes.Node]:
    yield node
    for child in node.iter_child_nodes():
        yield from _walk(child)


def _problem(node: nodes.Node, bound: set[str]) -> str | None:
    if isinstance(node, nodes.Call):
        return "calls are not allowed (a function or method); filters are: " + _listed(FILTERS)
    if not isinstance(node, _ALLOWED_NODES):
        return f"{_construct(node)} is not allowed in a runbook"
    if isinstance(node, nodes.Name):
        if node.name.startswith("_"):
            return f"{node.name!r}: names starting with '_' are not allowed"
        if node.ctx == "load" and node.name not in CONTEXT_NAMES | bound:
            return f"unknown name {node.name!r}; the context holds " + _listed(CONTEXT_NAMES)
    if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
        return f"attribute {node.attr!r}: names starting with '_' are not allowed"
    if (
        isinstance(node, nodes.Getitem)
        and isinstance(node.arg, nodes.Const)
        and str(node.arg.value).startswith("_")
    ):
        return f"item {node.arg.value!r}: names starting with '_' are not allowed"
    if isinstance(node, nodes.Filter) and node.name not in FILTERS:
        return f"unknown filter {node.name!r}; filters: " + _listed(FILTERS)
    if isinstance(node, nodes.Test) and node.name not in TESTS:
        return f"unknown test {node.name!r}; tests: " + _listed(TESTS)
    return None


_CONSTRUCTS = {
    nodes.Import: "{% import %}",
    nodes.FromImport: "{% from ... import %}",
    nodes.Include: "{% include %}",
    nodes.Extends: "{% extends %}",
    nodes.Macro: "{% macro %}",
    nodes.CallBlock: "{% call %}",
    nodes.Block: "{% block %}",
    nodes.Pow: "'**'",
}


def _construct(node: nodes.Node) -> str:
    return _CONSTRUCTS.get(type(node), type(node).__name__)


def _listed(names: Any) -> str:
    return ", ".join(sorted(names))
