"""Package hooks: shell lines run on the node, with the installation's variables as environment."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

from nebula.resources import MASK


@dataclass(frozen=True)
class HookRun:
    ok: bool
    output: str


def run_hooks(
    lines: tuple[str, ...],
    env: tuple[tuple[str, str], ...],
    timeout: float,
    secrets: tuple[str, ...],
) -> HookRun:
    """Run each line with `sh -c` in order; stop at the first failure. Secrets are scrubbed."""
    outputs = []
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **dict(env)}
    for line in lines:
        try:
            done = subprocess.run(
                ["sh", "-c", line],
                env=environment,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            outputs.append(f"$ {line}\n(timed out after {timeout:g}s)")
            return HookRun(False, scrub("\n".join(outputs), secrets))
        outputs.append(f"$ {line}\n{(done.stdout + done.stderr).strip()}".rstrip())
        if done.returncode != 0:
            outputs.append(f"(exit code {done.returncode})")
            return HookRun(False, scrub("\n".join(outputs), secrets))
    return HookRun(True, scrub("\n".join(outputs), secrets))


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with every secret value replaced by the mask."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text
