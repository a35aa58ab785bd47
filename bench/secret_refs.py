"""1,000 `${secret:NAME}` references in one apply, beside the same installations with plain values.

    python3 bench/secret_refs.py [--installations 100] [--per-installation 10] [--runs 15]
                                 [--json PATH]

Two config repos of the same shape: --installations inline apps of one service whose
environment holds --per-installation variables (100 x 10 = 1,000). In the first each value is a
`${secret:sNNNN}` reference to its own secret in a vault (SQLite store in a temp dir, master key
in a 0600 key file there); in the second, a plain value of the same length. Each run, in-process,
times what an apply does before it talks to Docker, the way `nebula apply` does it:

- resolve: `load_desired` (load, validate, resolve), the secret repo reading its fingerprints
  from a freshly opened store (no master key), as `nebula plan` does;
- plan: `diff` against an empty engine (every container to create);
- reveal (secrets only): open the vault (read the key file, unlock), decrypt the 1,000 secrets
  the plan uses and check their fingerprints (`kinds.packages.apply`'s `_reveal`), then swap them into
  every container's environment as the Docker provider does when it creates the container.

Docker's own work is the same for both repos (the same containers with the same environment
sizes), so the difference of the two totals is what the references cost an apply.
Target (from the issue): under 50 ms beyond the no-secret case (median of --runs, wall time).
The CPU time this process spent is shown beside it: on a machine shared with other work the
wall figures stretch, the CPU ones much less.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import stacks
from nebula.engine.load import load_desired
from nebula.kinds.packages.apply import _reveal
from nebula.kinds.packages.diff import Snapshot, diff
from nebula.kinds.packages.types import Observed, reveal
from nebula.secrets import open_vault
from nebula.secrets.keys import KeyFile
from nebula.store import Store

TARGET_MS = 50.0
PHASES = ("resolve", "plan", "reveal")


def write_repo(root: Path, installations: int, per: int, secret: bool) -> Path:
    (root / "packages").mkdir(parents=True)
    (root / "nebula.yaml").write_text("defaults: {bind_address: 127.0.0.1}\n")
    for i in range(installations):
        env = "\n".join(
            f"        VAR_{j:02}: "
            + (f"${{secret:s{i * per + j:04}}}" if secret else f"plain-value-{i * per + j:04}")
            for j in range(per)
        )
        (root / "packages" / f"app{i:03}.yaml").write_text(
            "compose:\n  services:\n    web:\n      image: busybox:1\n"
            f"      command: [sleep, '3600']\n      environment:\n{env}\n"
        )
    return root


def fill_vault(url: str, key: Path, count: int) -> None:
    with Store(url) as store:
        vault = open_vault(store, KeyFile(key))
        vault.init()
        for n in range(count):
            vault.set(f"s{n:04}", f"value-{n:04}-{'x' * 24}")


class Run:
    """One pass over one repo; each phase's seconds."""

    def __init__(self, repo: Path, url: str | None, key: Path) -> None:
        self.phases: dict[str, float] = {}
        self.cpu = 0.0  # seconds of this process's CPU over all phases

        def fingerprints() -> dict[str, str]:  # called only for a repo that mentions secrets
            with Store(url or "sqlite://") as store:
                return open_vault(store).fingerprints()

        desired = self._time("resolve", lambda: load_desired(repo, fingerprints))
        snapshot = Snapshot(
            desired, Observed(), self._time("plan", lambda: diff(desired.installations, Observed()))
        )
        if url is None:
            self.phases["reveal"] = 0.0
            return
        with Store(url) as store:

            def reveal_all() -> int:
                revealed = _reveal(snapshot, open_vault(store, KeyFile(key)))
                swapped = [
                    [f"{k}={reveal(v, revealed)}" for k, v in c.environment]
                    for d in desired.installations
                    for c in d.containers
                ]
                return len(swapped)

            self._time("reveal", reveal_all)

    def _time(self, phase: str, fn: Callable[[], Any]) -> Any:
        started, cpu = time.perf_counter(), time.process_time()
        value = fn()
        self.phases[phase] = time.perf_counter() - started
        self.cpu += time.process_time() - cpu
        return value

    @property
    def total(self) -> float:
        return sum(self.phases.values())


def main() -> None:
    parser = stacks.base_parser((__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--installations", type=int, default=100)
    parser.add_argument("--per-installation", type=int, default=10)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    refs = args.installations * args.per_installation
    load_before = stacks.machine()
    with stacks.scratch_dir("nebula-bench-") as tmp:
        url = f"sqlite:///{tmp / 'nebula.db'}"
        key = tmp / "keys" / "master.key"
        fill_vault(url, key, refs)
        secret_repo = write_repo(tmp / "secret", args.installations, args.per_installation, True)
        plain_repo = write_repo(tmp / "plain", args.installations, args.per_installation, False)
        Run(secret_repo, url, key), Run(plain_repo, None, key)  # warm the imports and caches
        series = {
            name: {phase: stacks.Series(f"{name} {phase}") for phase in (*PHASES, "total", "cpu")}
            for name in ("secrets", "plain")
        }
        for _ in range(args.runs):  # interleaved, so drift of the machine hits both alike
            for name, run in (
                ("secrets", lambda: Run(secret_repo, url, key)),
                ("plain", lambda: Run(plain_repo, None, key)),
            ):
                done = run()
                for phase, seconds in done.phases.items():
                    series[name][phase].add(seconds)
                series[name]["total"].add(done.total)
                series[name]["cpu"].add(done.cpu)
    extra_ms = (series["secrets"]["total"].median - series["plain"]["total"].median) * 1000
    extra_cpu_ms = (series["secrets"]["cpu"].median - series["plain"]["cpu"].median) * 1000
    stacks.print_table(
        f"{args.installations} installations, {refs} environment values; ms, median of {args.runs}",
        ["repo", "resolve", "plan", "reveal", "total", "× plain", "CPU"],
        [
            [
                name,
                *(f"{series[name][p].median * 1000:.1f}" for p in (*PHASES, "total")),
                f"{stacks.ratio(series[name]['total'].median, series['plain']['total'].median):.2f}×",
                f"{series[name]['cpu'].median * 1000:.1f}",
            ]
            for name in ("secrets", "plain")
        ],
    )
    stacks.print_table(
        "Against the issue's target",
        ["figure", "measured", "target", "verdict"],
        [
            [
                f"{refs} secret references, extra time",
                f"{extra_ms:.1f} ms",
                f"< {TARGET_MS:.0f} ms",
                stacks.verdict(extra_ms < TARGET_MS),
            ],
            [
                "the same in CPU time of this process (load of other processes aside)",
                f"{extra_cpu_ms:.1f} ms",
                "",
                "",
            ],
        ],
    )
    stacks.emit_json(
        {
            "benchmark": "secret_refs",
            "installations": args.installations,
            "references": refs,
            "runs": args.runs,
            "machine_before": load_before,
            "machine_after": stacks.machine(),
            "series": {
                name: {phase: s.to_dict() for phase, s in phases.items()}
                for name, phases in series.items()
            },
            "extra_ms": round(extra_ms, 1),
            "extra_cpu_ms": round(extra_cpu_ms, 1),
            "target_ms": TARGET_MS,
            "pass": extra_ms < TARGET_MS,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
