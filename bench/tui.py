"""`nebula tui` with 500 installations: key press to the next screen drawn, daemon event to the
row updated (p95, target under 100 ms each), and the TUI process's memory.

    python3 bench/tui.py [--installations 500] [--runs 100] [--json PATH]

Each time runs to the last frame handed to the terminal's driver once the app is idle again,
so Pilot's own wait for idle (tens of ms, a key that does nothing costs it too) is not counted.
Measures the TUI's own side, in-process under Textual's Pilot at 80x24: the app gets the
records and events its feed would bring (the API's shapes: installations with containers and
health checks, `health` events), so the figures are the dashboard's, not the daemon's API or
Docker's (those have their own benchmarks). No daemon or Docker needed: the feed finds no
daemon at a temporary socket and shows its banner meanwhile. Memory is the process's peak
resident size after the run (the interpreter, Textual and the 500 rows).
"""

from __future__ import annotations

import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import stacks
from nebula.cli.client import DaemonClient
from nebula.tui.app import Fed, NebulaApp
from nebula.tui.feed import Loaded, Streamed

TARGET_MS = 100.0
SCREENS = ("1", "2", "3", "4", "5")


def installation(n: int) -> dict[str, Any]:
    name = f"app{n:03d}"
    return {
        "name": name, "package": "inline", "version": None, "status": "running",
        "reason": None, "commit": "0123456789abcdef" * 2 + "01234567", "updated_at": None,
        "containers": [{"name": f"{name}-{name}", "state": "running", "health": "healthy"}],
        "health": [{"check": "http", "status": "healthy", "detail": "200"}],
    }  # fmt: skip


async def measure(count: int, runs: int) -> tuple[stacks.Series, stacks.Series]:
    socket = Path(tempfile.mkdtemp()) / "nebulad.sock"  # nothing listens: no feed items arrive
    app = NebulaApp(lambda: DaemonClient(socket), retry=3600)
    keys, events = stacks.Series("key → screen"), stacks.Series("event → row")
    frames: list[float] = []  # when each frame was handed to the terminal's driver
    display = app._display

    def drawn(screen: Any, update: Any) -> None:
        if update is not None:
            frames.append(time.perf_counter())
        display(screen, update)

    app._display = drawn  # type: ignore[method-assign]
    async with app.run_test(size=(80, 24)) as pilot:
        app.post_message(Fed(Loaded("installations", [installation(n) for n in range(count)])))
        await pilot.pause()
        table = app.table("installations")
        for run in range(runs):
            started = time.perf_counter()
            await pilot.press(SCREENS[run % len(SCREENS)])
            await pilot.pause()
            if frames[-1] > started:  # a key that changed nothing drew no frame: not a switch
                keys.add(frames[-1] - started)
        await pilot.press("2")
        for run in range(runs):
            name, status = f"app{run % count:03d}", "unhealthy" if run % 2 == 0 else "healthy"
            data = {"installation": name, "check": "http", "status": status, "detail": "x"}
            started = time.perf_counter()
            app.post_message(Fed(Streamed("health", data)))
            shown = "unhealthy: http" if status == "unhealthy" else "1 healthy"
            while table.cell(name, "health") != shown:
                await pilot.pause(0)
            await pilot.pause()
            events.add(frames[-1] - started)
    return keys, events


def main() -> None:
    parser = stacks.base_parser(__doc__ or "")
    parser.add_argument("--installations", type=int, default=500)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    keys, events = asyncio.run(measure(args.installations, args.runs))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result: dict[str, Any] = {"installations": args.installations, "target_ms": TARGET_MS,
                              "peak_rss_mb": round(peak_mb, 1)}  # fmt: skip
    for series in (keys, events):
        p95 = series.percentile(95) * 1000
        verdict = "ok" if p95 < TARGET_MS else "over"
        print(f"{series.name:<14} median {series.median * 1000:7.1f} ms  p95 {p95:7.1f} ms  "
              f"{verdict} (target {TARGET_MS:.0f} ms)", file=sys.stderr)  # fmt: skip
        result[series.name] = series.to_dict()
    print(f"peak memory    {peak_mb:.0f} MB", file=sys.stderr)
    stacks.emit_json(result, args.json)


if __name__ == "__main__":
    main()
