"""`nebula --help` cold start: a fresh process each time, beside the interpreter's own floor.

    python3 bench/cli_startup.py [--runs 20] [--json PATH]

Runs the installed `nebula` console script (the one beside this interpreter, not a
version-manager shim) `--runs` times and reports median and p90 wall time against the issue's
200 ms target. The peers: `python -c pass` (the interpreter alone, the floor), `python -c
"import nebula.cli.app"` (imports without typer's rendering) and `nebula --version`. One untimed
run of each first warms the page cache and the bytecode caches. Then the slowest imports of
`nebula --help`, from `python -X importtime`. No Docker needed. Every run gets temporary XDG
cache/data/config/state dirs, so nothing touches the user's home.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import stacks

TARGET_MS = 200.0


def wall(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
    return seconds


def measure(name: str, cmd: list[str], runs: int, env: dict[str, str]) -> stacks.Series:
    wall(cmd, env)  # warm
    series = stacks.Series(name)
    for _ in range(runs):
        series.add(wall(cmd, env))
    return series


def slowest_imports(script: Path, top: int, env: dict[str, str]) -> list[tuple[str, float, float]]:
    """(module, cumulative ms, self ms) of the top-level imports `nebula --help` pays most for."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(script), "--help"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        own, cumulative, name = line.removeprefix("import time:").split("|")
        if not own.strip().isdigit():
            continue
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        if depth <= 1:  # imported directly by the script or by a top-level module
            rows.append((name.strip(), int(cumulative) / 1000, int(own) / 1000))
    return sorted(rows, key=lambda r: -r[1])[:top]


def main() -> None:
    parser = stacks.base_parser((__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    script = stacks.nebula_script()
    python = sys.executable
    load_before = stacks.machine()

    with stacks.scratch_dir("nebula-bench-") as tmp:
        env = stacks.private_env(tmp)
        rows = [
            measure("nebula --help", [str(script), "--help"], args.runs, env),
            measure("nebula --version", [str(script), "--version"], args.runs, env),
            measure(
                "python -c 'import nebula.cli.app'",
                [python, "-c", "import nebula.cli.app"],
                5,
                env,
            ),
            measure("python -c pass (floor)", [python, "-c", "pass"], args.runs, env),
        ]
        imports = slowest_imports(script, 10, env)
    help_, floor = rows[0], rows[-1]
    median_ms = help_.median * 1000
    stacks.print_table(
        f"Cold start, wall ms ({args.runs} runs each; import-only row: 5)",
        ["command", "median", "p90", "min", "× floor"],
        [
            [
                s.name,
                f"{s.median * 1000:.0f}",
                f"{s.percentile(90) * 1000:.0f}",
                f"{s.best * 1000:.0f}",
                f"{stacks.ratio(s.median, floor.median):.1f}×",
            ]
            for s in rows
        ],
    )
    stacks.print_table(
        "Against the issue's target",
        ["figure", "measured", "target", "verdict"],
        [
            [
                "nebula --help median",
                f"{median_ms:.0f} ms",
                f"< {TARGET_MS:.0f} ms",
                stacks.verdict(median_ms < TARGET_MS),
            ],
            [
                "nebula --help above the interpreter",
                f"{(help_.median - floor.median) * 1000:.0f} ms",
                "",
                "",
            ],
        ],
    )
    stacks.print_table(
        "Slowest imports of `nebula --help` (one -X importtime run, ms)",
        ["module", "cumulative", "self"],
        [[name, f"{cum:.1f}", f"{own:.1f}"] for name, cum, own in imports],
    )
    result = {
        "benchmark": "cli_startup",
        "runs": args.runs,
        "machine_before": load_before,
        "machine_after": stacks.machine(),
        "commands": {
            s.name: {
                "median_ms": round(s.median * 1000, 1),
                "p90_ms": round(s.percentile(90) * 1000, 1),
                "min_ms": round(s.best * 1000, 1),
                "values_ms": [round(v * 1000, 1) for v in s.values],
            }
            for s in rows
        },
        "slowest_imports_ms": {name: round(cum, 1) for name, cum, _ in imports},
        "target_ms": TARGET_MS,
        "pass": median_ms < TARGET_MS,
    }
    stacks.emit_json(result, args.json)


if __name__ == "__main__":
    main()
