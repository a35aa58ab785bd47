"""`nebula catalog search` over a generated 2,000-package catalog, end to end, beside grep.

    python3 bench/catalog_search.py [--packages 2000] [--term photo] [--runs 20]
                                    [--cold-runs 3] [--json PATH]

Generates `--packages` packages in a temp folder (copies of the built-in catalog's packages,
newest version each, renamed `<name>-NNNN` with varied descriptions; all valid), then runs the
`nebula` console script (the one beside this interpreter) as a person would:
`nebula catalog search TERM --catalog DIR -o json`, which searches that folder plus the built-in
catalog. Three cases:

- **warm**: the index in the cache dir is current (one untimed priming run first): the target,
  median of `--runs` < 100 ms;
- **one edit**: one package file rewritten before each run, so the index re-reads one file;
- **cold**: a fresh, empty `XDG_CACHE_HOME` each run: the index is built from every file.

Beside them, the peer floor: `grep -ril TERM DIR` over the same folder (no parsing, no
ranking, page cache warm), and `python -c pass` (the interpreter alone). No Docker needed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import stacks
from nebula.catalog import Catalog, builtin_catalog_dir

TARGET_MS = 100.0
ADJECTIVES = ["fast", "tiny", "secure", "friendly", "modern", "classic", "portable", "shared"]
AUDIENCES = ["families", "small teams", "tinkerers", "students", "clubs", "makers", "offices"]


def generate(folder: Path, count: int) -> int:
    """`count` valid packages in `folder`; the number of distinct source packages used."""
    sources = Catalog([builtin_catalog_dir()]).all()
    for i in range(count):
        entry = sources[i % len(sources)]
        package = entry.package
        name = f"{package.name}-{i:04d}"
        description = (
            f"{package.description} ({ADJECTIVES[i % len(ADJECTIVES)]} edition "
            f"for {AUDIENCES[i % len(AUDIENCES)]}, build {i})"
        )
        text = (builtin_catalog_dir() / package.name / f"{package.version}.yaml").read_text()
        text = re.sub(r"(?m)^name: .*$", f"name: {name}", text, count=1)
        text = re.sub(r"(?m)^description: .*$", f"description: {json.dumps(description)}", text)
        target = folder / name / f"{package.version}.yaml"
        target.parent.mkdir(parents=True)
        target.write_text(text)
    return len(sources)


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    ran = stacks.run(cmd, env=env)
    return ran.seconds, ran.stdout


def main() -> None:
    parser = stacks.base_parser((__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--packages", type=int, default=2000)
    parser.add_argument("--term", default="photo")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--cold-runs", type=int, default=3)
    args = parser.parse_args()
    script = str(stacks.nebula_script())
    grep = shutil.which("grep")
    if grep is None:
        raise SystemExit("grep not found")
    load_before = stacks.machine()

    with stacks.scratch_dir("nebula-bench-search-") as tmp:
        folder = tmp / "catalog"
        sources = generate(folder, args.packages)
        env = stacks.private_env(tmp / "warm")
        search = [script, "catalog", "search", args.term, "--catalog", str(folder), "-o", "json"]

        _, out = run(search, env)  # builds the index
        found = len(json.loads(out))
        warm = stacks.Series("nebula catalog search (warm index)")
        for _ in range(args.runs):
            warm.add(run(search, env)[0])

        edited = stacks.Series("nebula catalog search (one file edited)")
        victim = next(folder.iterdir())
        victim_file = next(victim.iterdir())
        original = victim_file.read_text()
        for i in range(min(args.runs, 5)):
            victim_file.write_text(original + f"# edit {i}\n")
            edited.add(run(search, env)[0])
        victim_file.write_text(original)

        cold = stacks.Series("nebula catalog search (cold: index built)")
        for i in range(args.cold_runs):
            cold.add(run(search, stacks.private_env(tmp / f"cold{i}"))[0])

        grep_cmd = [grep, "-ril", args.term, str(folder)]
        matched = subprocess.run(grep_cmd, capture_output=True, text=True, check=False)
        grep_files = len(matched.stdout.splitlines())
        peer = stacks.Series("grep -ril TERM DIR (peer floor)")
        for _ in range(args.runs):
            peer.add(
                stacks.timed(lambda: subprocess.run(grep_cmd, capture_output=True, check=False))
            )
        floor = stacks.Series("python -c pass (interpreter)")
        for _ in range(args.runs):
            floor.add(run([sys.executable, "-c", "pass"], env)[0])

    rows = [warm, edited, cold, peer, floor]
    stacks.print_table(
        f"{args.packages} generated packages (+ the built-in catalog), term {args.term!r}: "
        f"{found} packages found, grep matched {grep_files} files; wall ms",
        ["command", "runs", "median", "p90", "min", "× grep"],
        [
            [
                s.name,
                len(s.values),
                f"{s.median * 1000:.1f}",
                f"{s.percentile(90) * 1000:.1f}",
                f"{s.best * 1000:.1f}",
                f"{stacks.ratio(s.median, peer.median):.2f}×",
            ]
            for s in rows
        ],
    )
    warm_ms = warm.median * 1000
    stacks.print_table(
        "Against the issue's target",
        ["figure", "measured", "target", "verdict"],
        [
            [
                "search, warm, median",
                f"{warm_ms:.1f} ms",
                f"< {TARGET_MS:.0f} ms",
                stacks.verdict(warm_ms < TARGET_MS),
            ],
            [
                "search, warm, above the interpreter",
                f"{(warm.median - floor.median) * 1000:.1f} ms",
                "",
                "",
            ],
            ["search, cold (index built), median", f"{cold.median * 1000:.0f} ms", "", ""],
        ],
    )
    result = {
        "benchmark": "catalog_search",
        "packages": args.packages,
        "source_packages": sources,
        "term": args.term,
        "found": found,
        "grep_matched_files": grep_files,
        "machine_before": load_before,
        "machine_after": stacks.machine(),
        "series": {s.name: s.to_dict() for s in rows},
        "warm_over_grep": round(stacks.ratio(warm.median, peer.median), 2),
        "warm_above_interpreter_ms": round((warm.median - floor.median) * 1000, 1),
        "target_ms": TARGET_MS,
        "pass": warm_ms < TARGET_MS,
    }
    stacks.emit_json(result, args.json)


if __name__ == "__main__":
    main()
