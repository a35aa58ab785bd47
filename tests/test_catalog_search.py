"""`nebula catalog search`: ranking, the index in the cache dir (rebuilt only for changed files),
and the console script answering before typer loads, with the same output as the typer command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nebula.catalog.index import load_index
from nebula.cli.app import app

NEBULA = Path(sys.executable).parent / "nebula"


def write_package(folder: Path, name: str, version: str, category: str, description: str) -> Path:
    path = folder / name / f"{version}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'name: {name}\nversion: "{version}"\ndescription: {description}\ncategory: {category}\n'
        "compose:\n  services:\n    app:\n      image: nginx:1.27.2\n"
    )
    return path


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    folder = tmp_path / "catalog"
    write_package(folder, "jellyfin", "10.9.10", "media", "Media server for movies")
    write_package(folder, "jellyfin", "10.9.11", "media", "Media server for movies and TV")
    write_package(folder, "jellyseerr", "2.0.1", "media", "Requests for jellyfin libraries")
    write_package(folder, "plex", "1.41.0", "media", "Streams movies; works well beside jellyfin")
    write_package(folder, "media-tools", "1.0.0", "files", "Rename and tag files")
    write_package(folder, "ollama", "0.3.12", "ai", "Run language models locally")
    return folder


def names(found: list[object]) -> list[str]:
    return [getattr(e, "name", "") for e in found]


def test_ranking_name_first_then_category_then_description(catalog: Path, tmp_path: Path) -> None:
    index = load_index([catalog], tmp_path / "index.json")
    assert names(index.search("jellyfin")) == ["jellyfin", "jellyseerr", "plex"]
    assert names(index.search("JellySeerr")) == ["jellyseerr"]  # any case
    assert names(index.search("media")) == ["media-tools", "jellyfin", "jellyseerr", "plex"]
    assert names(index.search("media", "files")) == ["media-tools"]
    assert names(index.search("movies tv")) == ["jellyfin"]  # every word must match
    assert index.search("nothing-like-this") == []
    [jellyfin] = [e for e in index.entries if e.name == "jellyfin"]
    assert (jellyfin.version, jellyfin.versions) == ("10.9.11", ("10.9.10", "10.9.11"))
    assert index.categories() == ["ai", "files", "media"]


def test_index_is_reused_and_rebuilt_only_for_changed_files(catalog: Path, tmp_path: Path) -> None:
    index_file = tmp_path / "index.json"
    assert load_index([catalog], index_file).rebuilt == 5  # the newest version of each package
    assert load_index([catalog], index_file).rebuilt == 0

    ollama = catalog / "ollama" / "0.3.12.yaml"
    ollama.write_text(ollama.read_text().replace("language models", "LLMs and embeddings"))
    index = load_index([catalog], index_file)
    assert index.rebuilt == 1
    assert names(index.search("embeddings")) == ["ollama"]

    write_package(catalog, "ollama", "0.4.0", "ai", "Now with vision models")
    index = load_index([catalog], index_file)
    assert index.rebuilt == 1 and names(index.search("vision")) == ["ollama"]

    (catalog / "plex" / "1.41.0.yaml").unlink()
    assert "plex" not in names(load_index([catalog], index_file).entries)


def test_invalid_package_is_reported_and_the_rest_still_found(
    catalog: Path, tmp_path: Path
) -> None:
    (catalog / "plex" / "1.41.0.yaml").write_text("name: plex\nversion: '1.41.0'\ncompose: 3\n")
    index = load_index([catalog], tmp_path / "index.json")
    assert "plex" not in names(index.entries)
    assert any(p.startswith("catalog/plex/1.41.0.yaml:3:") for p in index.problems), index.problems
    assert names(index.search("jellyfin")) == ["jellyfin", "jellyseerr"]


def test_later_folders_win(catalog: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    write_package(mine, "ollama", "0.3.12", "ai", "My own build of the model runner")
    index = load_index([catalog, mine], tmp_path / "index.json")
    assert names(index.search("own build")) == ["ollama"]
    assert names(load_index([mine, catalog], tmp_path / "index.json").search("own build")) == []


def cli_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}


def test_console_script_and_typer_command_agree(
    catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = cli_env(tmp_path)
    args = ["catalog", "search", "jelly", "--catalog", str(catalog), "-o", "json"]
    fast = subprocess.run([NEBULA, *args], env=env, capture_output=True, text=True, check=True)
    found = json.loads(fast.stdout)
    assert [p["name"] for p in found][:2] == ["jellyfin", "jellyseerr"]
    assert found[0]["versions"][-1] == found[0]["version"]
    assert (tmp_path / "cache" / "nebula" / "catalog-index.json").is_file()

    monkeypatch.setenv("XDG_CACHE_HOME", env["XDG_CACHE_HOME"])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == found

    table = subprocess.run(
        [NEBULA, "catalog", "search", "--category=ai", "language", f"--catalog={catalog}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert table.stdout.splitlines()[0].split() == ["NAME", "VERSION", "CATEGORY", "DESCRIPTION"]
    assert table.stdout.splitlines()[1].split()[:3] == ["ollama", "0.3.12", "ai"]


def test_builtin_catalog_search_and_errors(tmp_path: Path) -> None:
    env = cli_env(tmp_path)

    def nebula(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([NEBULA, *args], env=env, capture_output=True, text=True, check=False)

    out = nebula("catalog", "search", "gpu", "-o", "json")
    assert [p["name"] for p in json.loads(out.stdout)] == ["comfyui"]
    media = nebula("catalog", "search", "server", "--category", "media")
    assert "jellyfin" in media.stdout and "ollama" not in media.stdout
    unknown = nebula("catalog", "search", "x", "--category", "films")
    assert unknown.returncode == 2
    assert "error: no package has category 'films'; categories: ai," in unknown.stderr
    none = nebula("catalog", "search", "no-such-app-anywhere")
    assert none.returncode == 0 and "no package matches 'no-such-app-anywhere'" in none.stderr
    # anything but the plain forms goes to typer: help, and its own usage errors
    assert "Find packages" in nebula("catalog", "search", "--help").stdout
    wrong = nebula("catalog", "search", "x", "--output", "yaml")
    assert wrong.returncode == 2 and "'yaml' is not one of" in wrong.stderr


def test_the_fast_path_stays_import_light() -> None:
    code = (
        "import sys, nebula.cli.entry, nebula.cli.search, nebula.catalog.index;"
        "heavy = [m for m in ('typer', 'click', 'rich', 'pydantic', 'yaml') if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
