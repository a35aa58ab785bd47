"""Package hooks: shell lines run on the node, with the installation's variables as environment.

Each hook kind's lines run with `sh -c` in order and stop at the first failure. The environment
holds PATH, the variables hooks may see (every non-secret one, and secret ones the package marks
`expose_to_hooks`), `NEBULA_INSTALLATION` and `NEBULA_HOOK`, and for upgrades
`NEBULA_FROM_VERSION` / `NEBULA_TO_VERSION`. Output is captured, every secret value (and its
base64, hex and URL encodings) scrubbed from it, and only its last `OUTPUT_LIMIT` characters
kept.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass

from nebula.stand_ins import MASK
from nebula.store.mask import secret_replacer

OUTPUT_LIMIT = 4000


@dataclass(frozen=True)
class HookRun:
    ok: bool
    output: str  # scrubbed and bounded
    exit_code: int | None = None  # of the last line run; None when it timed out
    timed_out: bool = False

    def reason(self, hook: str) -> str:
        """Why the hook failed, for the installation's status."""
        cause = "timed out" if self.timed_out else f"exit code {self.exit_code}"
        return f"{hook} hook failed ({cause}):\n{self.output}"


def run_hooks(
    lines: tuple[str, ...],
    env: tuple[tuple[str, str], ...],
    timeout: float,
    secrets: tuple[str, ...],
) -> HookRun:
    """Run each line with `sh -c` in order, each within `timeout`; stop at the first failure."""
    outputs = []
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **dict(env)}
    code: int | None = 0
    for line in lines:
        finished = _run(line, environment, timeout)
        if finished is None:
            outputs.append(f"$ {line}\n(timed out after {timeout:g}s; stopped)")
            return HookRun(False, _bounded(outputs, secrets), None, timed_out=True)
        code, output = finished
        outputs.append(f"$ {line}\n{output.strip()}".rstrip())
        if code != 0:
            outputs.append(f"(exit code {code})")
            return HookRun(False, _bounded(outputs, secrets), code)
    return HookRun(True, _bounded(outputs, secrets), code)


def _run(line: str, env: dict[str, str], timeout: float) -> tuple[int, str] | None:
    """(exit code, stdout+stderr) of `sh -c line`, or None after killing everything it started
    (its own process group) when it ran past `timeout`."""
    with subprocess.Popen(
        ["sh", "-c", line],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    ) as process:
        try:
            out, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            return None
    return process.returncode, out.decode(errors="replace")


def _bounded(outputs: list[str], secrets: tuple[str, ...]) -> str:
    text = scrub("\n".join(outputs), secrets)
    return text if len(text) <= OUTPUT_LIMIT else "…" + text[-OUTPUT_LIMIT:]


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with every secret value, and its common encodings, replaced by the mask."""
    return secret_replacer(dict.fromkeys(secrets, MASK))(text)
