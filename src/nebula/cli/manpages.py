"""Man pages written from the CLI itself, so they say what `--help` says.

`pages()` gives `nebula.1` (the commands and global options), `nebula-GROUP.1` for each command
group, `nebulad.8` (the daemon's options and settings), and `nebula.yaml.5`, rendered from the
very JSON Schemas `nebula schema export` writes (`nebula.kinds.schemas.SCHEMAS`: each kind's
fields, types, defaults and descriptions). No date in the headers: the same CLI gives the same
bytes, which is how a test tells that `man/` is current.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from typer._click.core import Command, Context, Parameter  # typer carries its own click
from typer.core import TyperArgument, TyperGroup, TyperOption
from typer.main import get_command

from nebula import __version__
from nebula.cli.app import app

MANUAL = "Nebula Manual"
_CODE = re.compile(r"`([^`\n]+)`")


def pages() -> dict[str, str]:
    """Each man page by its file name."""
    root = get_command(app)
    top = Context(root, info_name="nebula")
    assert isinstance(root, TyperGroup)
    written = {"nebula.1": _nebula(root, top)}
    for name, command in root.commands.items():
        if isinstance(command, TyperGroup) and not command.hidden:
            sub = Context(command, info_name=name, parent=top)
            written[f"nebula-{name}.1"] = _group(command, sub)
    written["nebulad.8"] = _nebulad(root, top)
    written["nebula.yaml.5"] = _config_files()
    return written


def write(directory: Path) -> list[Path]:
    """Write every page into `directory`; the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in pages().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


# -- roff ---------------------------------------------------------------------------------


def _escape(text: str) -> str:
    """Text with roff's escape character escaped."""
    return text.replace("\\", "\\e")


def _line(text: str) -> str:
    """A line roff reads as text: one starting with `.` or `'` would be a request."""
    return "\\&" + text if text[:1] in (".", "'") else text


def _literal(text: str) -> str:
    """A command, option or value: hyphens as the ASCII ones a reader copies."""
    return _escape(text).replace("-", "\\-")


def _bold(text: str) -> str:
    return f"\\fB{_literal(text)}\\fR"


def _prose(text: str, paragraph_break: str = ".PP") -> list[str]:
    """Help text as roff: paragraphs filled, click's `\\b` blocks and indented lines kept
    as they are, `code` in bold. Inside an item, paragraphs break with `.IP`."""
    lines: list[str] = []
    for paragraph in re.split(r"\n\s*\n", inspect.cleandoc(text)):
        raw = paragraph.strip("\n")
        if not raw.strip():
            continue
        if lines:
            lines.append(paragraph_break)
        verbatim = raw.startswith("\b") or raw.startswith("  ")
        body = raw.removeprefix("\b").strip("\n")
        if verbatim:
            lines += [".nf", ".RS 4"]
            lines += [_inline(line.strip()) for line in body.splitlines()]
            lines += [".RE", ".fi"]
        else:
            lines += [_inline(line.strip()) for line in body.splitlines() if line.strip()]
    return lines


def _inline(text: str) -> str:
    parts = _CODE.split(text)  # odd items were in backticks
    return _line("".join(_bold(p) if i % 2 else _escape(p) for i, p in enumerate(parts)))


def _header(name: str, section: int, summary: str) -> list[str]:
    return [
        f'.TH "{name.upper()}" "{section}" "" "nebula {__version__}" "{MANUAL}"',
        ".SH NAME",
        f"{_literal(name)} \\- {_escape(summary)}",
    ]


def _item(term: str, text: str) -> list[str]:
    return [".TP", term, *(_prose(text, ".IP") if text.strip() else [])]


# -- commands -----------------------------------------------------------------------------


def _summary(command: Command) -> str:
    return command.get_short_help_str(limit=200).rstrip(".")


def _synopsis(command: Command, ctx: Context) -> str:
    words = [_bold(ctx.command_path)]
    if isinstance(command, TyperGroup):
        words.append("\\fICOMMAND\\fR [\\fIARGS\\fR]...")
    elif any(isinstance(p, TyperOption) for p in command.get_params(ctx)):
        words.append("[\\fIOPTIONS\\fR]")
    for param in command.params:
        if isinstance(param, TyperArgument):
            metavar = f"\\fI{_literal((param.name or '').upper())}\\fR"
            metavar += "..." if param.nargs == -1 else ""
            words.append(metavar if param.required else f"[{metavar}]")
    return " ".join(words)


def _parameters(command: Command, ctx: Context, with_help: bool) -> list[str]:
    lines: list[str] = []
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False) or (param.name == "help" and not with_help):
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, text = record
        if isinstance(param, TyperArgument):
            term = f"\\fI{_literal(names.upper())}\\fR"
        else:
            term = ", ".join(_option(n) for n in names.split(", "))
        lines += _item(term, text)
    return lines


def _option(text: str) -> str:
    """`-n, --tail N|all` as bold switch and italic value."""
    switch, _, value = text.partition(" ")
    return _bold(switch) + (f" \\fI{_literal(value)}\\fR" if value else "")


def _command(command: Command, ctx: Context) -> list[str]:
    """A command's section: its synopsis, help, arguments and options; a group's commands."""
    if isinstance(command, TyperGroup):
        lines: list[str] = []
        for name, sub in command.commands.items():
            if not sub.hidden:
                lines += _command(sub, Context(sub, info_name=name, parent=ctx))
        return lines
    lines = [f'.SS "{_literal(ctx.command_path)}"', _synopsis(command, ctx), ".PP"]
    lines += _prose(command.help or "")
    return lines + _parameters(command, ctx, with_help=False)


def _walk(command: Command, ctx: Context) -> Iterator[Parameter]:
    yield from command.get_params(ctx)
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            yield from _walk(sub, Context(sub, info_name=name, parent=ctx))


def _environment(root: TyperGroup, ctx: Context) -> list[str]:
    """Every environment variable an option reads, once, with the first option's help."""
    seen: dict[str, str] = {}
    for param in _walk(root, ctx):
        envvar = param.envvar if isinstance(param, TyperOption) else None
        for name in [envvar] if isinstance(envvar, str) else envvar or []:
            seen.setdefault(name, getattr(param, "help", None) or "")
    lines: list[str] = []
    for name, text in sorted(seen.items()):
        lines += _item(_bold(name), text)
    return lines


def _nebula(root: TyperGroup, ctx: Context) -> str:
    groups = [(n, c) for n, c in root.commands.items() if isinstance(c, TyperGroup)]
    lines = _header("nebula", 1, _summary(root))
    lines += [".SH SYNOPSIS", _synopsis(root, ctx), ".SH DESCRIPTION", *_prose(root.help or "")]
    lines += [".SH OPTIONS", *_parameters(root, ctx, with_help=True)]
    lines.append(".SH COMMANDS")
    for name, command in root.commands.items():
        if not isinstance(command, TyperGroup) and not command.hidden:
            lines += _command(command, Context(command, info_name=name, parent=ctx))
    lines.append(".SH COMMAND GROUPS")
    for name, group in groups:
        lines += _item(_bold(f"nebula {name}"), f"{_summary(group)}.")
        lines.append(f"See \\fBnebula\\-{_literal(name)}\\fR(1).")
    lines += [".SH ENVIRONMENT", *_environment(root, ctx)]
    lines += [".SH FILES", *_item(_bold("nebula.yaml"), "The config repo; see `nebula.yaml(5)`.")]
    refs = [f"\\fBnebula\\-{_literal(n)}\\fR(1)" for n, _ in groups]
    refs += ["\\fBnebulad\\fR(8)", "\\fBnebula.yaml\\fR(5)"]
    lines += [".SH SEE ALSO", ".nh", ",\n".join(refs)]  # .nh: no page name split by a hyphen
    return _page(lines)


def _group(group: TyperGroup, ctx: Context) -> str:
    lines = _header(ctx.command_path.replace(" ", "-"), 1, _summary(group))
    lines += [".SH SYNOPSIS", _synopsis(group, ctx), ".SH DESCRIPTION", *_prose(group.help or "")]
    lines += [".SH COMMANDS", *_command(group, ctx)]
    lines += [".SH SEE ALSO", "\\fBnebula\\fR(1)"]
    return _page(lines)


def _nebulad(root: TyperGroup, ctx: Context) -> str:
    from nebula.daemon.config import DaemonConfig

    group = root.commands["daemon"]
    assert isinstance(group, TyperGroup)
    run = group.commands["run"]
    run_ctx = Context(run, info_name="nebulad")
    lines = _header("nebulad", 8, _summary(run))
    lines += [".SH SYNOPSIS", _synopsis(run, run_ctx), ".SH DESCRIPTION", *_prose(run.help or "")]
    lines += [".PP", "The same as \\fBnebula daemon run\\fR."]
    lines += [".SH OPTIONS", *_parameters(run, run_ctx, with_help=True)]
    schema = DaemonConfig.model_json_schema(mode="validation")
    lines += [".SH SETTINGS", *_prose("Each as a key of the --config file or NEBULA_<NAME>.")]
    lines += _properties(schema, schema.get("$defs", {}), env_prefix="NEBULA_")
    lines += [".SH SEE ALSO", "\\fBnebula\\fR(1), \\fBnebula\\-daemon\\fR(1)"]
    return _page(lines)


# -- the config repo's files --------------------------------------------------------------


def _config_files() -> str:
    from nebula.kinds.schemas import SCHEMAS
    from nebula.spec.schema import schema_of

    lines = _header("nebula.yaml", 5, "the files of a Nebula config repo")
    lines += [".SH DESCRIPTION"]
    lines += _prose(
        "A config repo is a git repository (or a folder) holding `nebula.yaml` and the folders "
        "below. Nebula validates every file against these models (`nebula validate`) and "
        "refuses unknown keys. `nebula schema export DIR` writes the same models as JSON "
        "Schemas for editors."
    )
    for kind in SCHEMAS:
        schema = schema_of(kind)
        defs: dict[str, Any] = schema.get("$defs", {})
        lines += [f'.SH "{_literal(kind.files[0])}"', *_prose(kind.title)]
        if schema.get("description"):
            lines += [".PP", *_prose(schema["description"])]
        lines += _properties(schema, defs)
        for name in _reachable(schema, defs):
            definition = defs[name]
            lines += [f'.SS "{_literal(name)}"']
            lines += _prose(definition.get("description", ""))
            fields = _properties(definition, defs)
            lines += fields or _prose(f"A value of type {_type(definition)}.")
    lines += [".SH SEE ALSO", "\\fBnebula\\fR(1), \\fBnebula\\-schema\\fR(1)"]
    return _page(lines)


def _properties(node: dict[str, Any], defs: dict[str, Any], env_prefix: str = "") -> list[str]:
    required = set(node.get("required", ()))
    lines: list[str] = []
    for name, field in node.get("properties", {}).items():
        facts = [_type(field)]
        if name in required:
            facts.append("required")
        elif "default" in field and _plain(field["default"]):
            facts.append(f"default: {_value(field['default'])}")
        term = f"{_bold(name)} ({', '.join(facts)})"
        text = field.get("description", "")
        if env_prefix:
            text = f"{text}\n\nEnvironment: `{env_prefix}{name.upper()}`.".strip()
        lines += _item(term, text)
    return lines


def _type(node: dict[str, Any]) -> str:
    """A schema's type in words: `list of Node`, `string | null`, `one of a, b`."""
    if "$ref" in node:
        return str(node["$ref"]).rsplit("/", 1)[-1]
    for key in ("anyOf", "oneOf"):
        if key in node:
            return " | ".join(dict.fromkeys(_type(n) for n in node[key]))
    if "enum" in node:
        return "one of " + ", ".join(_value(v) for v in node["enum"])
    if "const" in node:
        return _value(node["const"])
    kind = node.get("type")
    if isinstance(kind, list):
        return " | ".join(kind)
    if kind == "array":
        return f"list of {_type(node.get('items', {}))}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map of {_type(node['additionalProperties'])}"
    return str(kind or "any")


def _plain(value: Any) -> bool:
    """A default worth printing: a scalar, or a list or map of scalars (a nested model's
    defaults are given field by field in its own section)."""
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return not any(isinstance(v, dict | list) for v in items)


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _reachable(schema: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    """The definitions `schema` refers to, directly or through others, in first-seen order."""
    found: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                name = ref.rsplit("/", 1)[-1]
                if name not in found and name in defs:
                    found.append(name)
                    visit(defs[name])
            for key, value in node.items():
                if key != "$defs":
                    visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    visit(schema)
    return found


def _page(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"
