"""Shell completion, driven through bash's own programmable completion.

The generated `completions/nebula.bash` is sourced in a clean bash, its completion function is
called as bash calls it on TAB (COMP_WORDS, COMP_CWORD), and that runs the `nebula` of this
checkout, which answers from a real config repo, the catalog and a real vault.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "completions" / "nebula.bash"


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose `nebula` is this checkout's CLI, put first on PATH by `env`."""
    folder = tmp_path_factory.mktemp("bin")
    script = folder / "nebula"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nfrom nebula.cli.entry import main\nsys.exit(main())\n"
    )
    script.chmod(0o755)
    return folder


@pytest.fixture
def env(bin_dir: Path, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path / "home"),
        "NEBULA_DATABASE_URL": f"sqlite:///{tmp_path}/nebula.db",
        "NEBULA_MASTER_KEY_FILE": str(tmp_path / "master.key"),
    }


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A config repo with two nodes, three installations (one renamed by `name:`) and a
    package of its own catalog."""
    root = tmp_path / "homelab"
    (root / "packages").mkdir(parents=True)
    (root / "catalog" / "house-wiki").mkdir(parents=True)
    (root / "nebula.yaml").write_text(
        "nodes:\n  - name: nas\n    address: 10.0.0.2\n  - name: pi\n    address: 10.0.0.3\n"
    )
    (root / "packages" / "blog.yaml").write_text("package: wordpress\n")
    (root / "packages" / "notes.yml").write_text("package: memos\n")
    (root / "packages" / "wiki.yaml").write_text("name: docs\npackage: house-wiki\n")
    (root / "packages" / "README.md").write_text("not an installation\n")
    return root


def complete(words: list[str], cwd: Path, env: dict[str, str]) -> list[str]:
    """The candidates bash offers when TAB is pressed after `words` (the last one being the
    word under the cursor, "" for a new one)."""
    line = " ".join(shlex.quote(w) for w in words)
    program = (
        f"source {shlex.quote(str(SCRIPT))}\n"
        f"COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}\n"
        '_nebula_completion nebula\nprintf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stderr == ""
    return [c for c in done.stdout.splitlines() if c]


def generate(into: Path) -> None:
    subprocess.run([str(ROOT / "scripts" / "gen-docs"), str(into)], check=True)


def test_completions_match_the_cli(tmp_path: Path) -> None:
    generate(tmp_path)
    fresh = {p.name: p.read_text() for p in (tmp_path / "completions").iterdir()}
    kept = {p.name: p.read_text() for p in (ROOT / "completions").iterdir()}
    assert fresh == kept, "completions/ is out of date: run scripts/gen-docs"
    assert set(kept) == {"nebula.bash", "_nebula", "nebula.fish"}


def test_bash_registers_the_function_and_completes_commands(
    tmp_path: Path, env: dict[str, str]
) -> None:
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", f"source {SCRIPT}; complete -p nebula"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split()[-3:] == ["-F", "_nebula_completion", "nebula"]
    assert complete(["nebula", "ag"], tmp_path, env) == ["agents"]
    assert complete(["nebula", "secrets", "ro"], tmp_path, env) == ["rotate", "rotate-key"]
    assert "--follow" in complete(["nebula", "logs", "x", "--f"], tmp_path, env)


def test_bash_completes_installations_packages_and_nodes(
    repo: Path, env: dict[str, str], tmp_path: Path
) -> None:
    assert complete(["nebula", "logs", ""], repo, env) == ["blog", "docs", "notes"]
    assert complete(["nebula", "uninstall", "n"], repo, env) == ["notes"]
    assert complete(["nebula", "backup", "d"], repo, env) == ["docs"]
    # from elsewhere, with the repo named first; none where there is no config repo
    assert complete(["nebula", "upgrade", "--repo", str(repo), ""], tmp_path, env) == [
        "blog",
        "docs",
        "notes",
    ]
    assert complete(["nebula", "logs", ""], tmp_path, env) == []
    # the built-in catalog and the repo's own
    packages = complete(["nebula", "install", ""], repo, env)
    assert {"nextcloud", "wordpress", "house-wiki"} <= set(packages)
    assert complete(["nebula", "catalog", "show", "house"], repo, env) == ["house-wiki"]
    assert complete(["nebula", "install", "blog", "--node", ""], repo, env) == ["nas", "pi"]


def test_bash_completes_secret_names_never_values(
    repo: Path, env: dict[str, str], tmp_path: Path
) -> None:
    # no database yet: nothing offered, and none is created by asking
    assert complete(["nebula", "secrets", "get", ""], repo, env) == []
    assert not (tmp_path / "nebula.db").exists()
    nebula = ["nebula", "secrets"]
    subprocess.run([*nebula, "init"], env=env, check=True, capture_output=True)
    for name, value in (("db.password", "hunter2-db"), ("smtp.token", "hunter2-smtp")):
        subprocess.run(
            [*nebula, "set", name], input=value, text=True, env=env, check=True, capture_output=True
        )
    assert complete(["nebula", "secrets", "rotate", ""], repo, env) == [
        "db.password",
        "smtp.token",
    ]
    assert complete(["nebula", "secrets", "rm", "db"], repo, env) == ["db.password"]


def test_what_cannot_be_read_completes_nothing_quietly(repo: Path, env: dict[str, str]) -> None:
    (repo / "nebula.yaml").write_text("nodes: [unclosed\n")
    (repo / "packages" / "blog.yaml").write_text("name: [oops\n")
    assert complete(["nebula", "install", "x", "--node", ""], repo, env) == []
    # the broken file is passed over, the others still complete
    assert complete(["nebula", "logs", ""], repo, env) == ["docs", "notes"]


@pytest.mark.parametrize(
    ("shell", "where", "says"),
    [
        ("bash", ".local/share/bash-completion/completions/nebula", "bash-completion"),
        ("zsh", ".zfunc/_nebula", "fpath=(~/.zfunc $fpath)"),
        ("fish", ".config/fish/completions/nebula.fish", "fish"),
    ],
)
def test_completion_install_writes_where_the_shell_looks(
    shell: str, where: str, says: str, env: dict[str, str]
) -> None:
    home = Path(env["HOME"])
    for key in ("XDG_DATA_HOME", "XDG_CONFIG_HOME"):
        env.pop(key, None)
    env["SHELL"] = f"/usr/bin/{shell}"  # detected when --shell is left out
    done = subprocess.run(
        ["nebula", "completion", "install"], env=env, capture_output=True, text=True, check=True
    )
    path = home / where
    assert str(path) in done.stdout
    assert says in done.stdout
    name = {"bash": "nebula.bash", "zsh": "_nebula", "fish": "nebula.fish"}[shell]
    assert path.read_text() == (ROOT / "completions" / name).read_text()


def test_completion_install_asks_for_a_shell_it_cannot_tell(env: dict[str, str]) -> None:
    env["SHELL"] = "/bin/tcsh"
    done = subprocess.run(
        ["nebula", "completion", "install"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "--shell bash|zsh|fish" in done.stderr
