"""`nebula completion`: the shell completion scripts, printed or installed where a shell looks.

The scripts are typer's: each calls `nebula` back with `_NEBULA_COMPLETE=complete_SHELL` set,
and the CLI answers with the candidates (`nebula.cli.app.main` turns that protocol on).
typer has no public name for its scripts and shell classes: they come from its
`_completion_shared` and `_completion_classes` modules (typer is pinned below 0.29).
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from nebula.cli.output import EXIT_INVALID, OutputFormat, console, fail

PROG = "nebula"
COMPLETE_VAR = "_NEBULA_COMPLETE"


class Shell(StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


# the file each shell's completion goes to, in the repo's completions/ and under the home
FILE_NAMES = {Shell.bash: "nebula.bash", Shell.zsh: "_nebula", Shell.fish: "nebula.fish"}

app = typer.Typer(
    help="Shell completion for bash, zsh and fish: commands, options, and the names of "
    "installations, catalog packages, nodes and secrets.",
    no_args_is_help=True,
)


def script(shell: Shell) -> str:
    """The completion script of `shell`, ending with a newline."""
    from typer._completion_shared import get_completion_script

    text = get_completion_script(prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell.value)
    return text + "\n"


def install_path(shell: Shell, home: Path) -> Path:
    """Where `shell` finds a user's completion for `nebula` (XDG dirs for bash and fish)."""
    if shell is Shell.bash:
        data = os.environ.get("XDG_DATA_HOME") or str(home / ".local" / "share")
        return Path(data) / "bash-completion" / "completions" / PROG
    if shell is Shell.zsh:
        return home / ".zfunc" / "_nebula"
    config = os.environ.get("XDG_CONFIG_HOME") or str(home / ".config")
    return Path(config) / "fish" / "completions" / "nebula.fish"


def _detected() -> Shell | None:
    name = Path(os.environ.get("SHELL", "")).name
    return Shell(name) if name in Shell.__members__ else None


@app.command()
def show(shell: Annotated[Shell, typer.Argument(help="The shell.")]) -> None:
    """Print the completion script of SHELL, e.g. `source <(nebula completion show bash)`."""
    typer.echo(script(shell), nl=False)


@app.command()
def install(
    shell: Annotated[
        Shell | None,
        typer.Option("--shell", help="The shell. Default: the login shell ($SHELL)."),
    ] = None,
) -> None:
    """Write the completion script where the shell looks for it, and say where."""
    chosen = shell or _detected()
    if chosen is None:
        fail(
            f"cannot tell your shell from SHELL={os.environ.get('SHELL', '')!r}; "
            "name it: nebula completion install --shell bash|zsh|fish",
            OutputFormat.table,
            EXIT_INVALID,
        )
    path = install_path(chosen, Path.home())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script(chosen), encoding="utf-8")
    console().print(f"{chosen.value} completion written to {path}")
    if chosen is Shell.bash:
        console().print(
            "bash-completion loads it in new shells (without that package: add "
            f"`source {path}` to ~/.bashrc)."
        )
    elif chosen is Shell.zsh:
        console().print(
            "Add to ~/.zshrc, before `compinit`: fpath=(~/.zfunc $fpath); then "
            "autoload -Uz compinit && compinit. New shells complete `nebula`."
        )
    else:
        console().print("New fish shells complete `nebula`.")
