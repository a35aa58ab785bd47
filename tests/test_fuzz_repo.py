"""Fuzzing `validate` and `plan` with mutated config repos: whatever the files hold, the answer is
a plan or a `ConfigError` whose every issue names file:line, within 5 s and 500 MB.

The repos are examples/homelab with a few text mutations each (YAML syntax, tricky values,
anchors and tags spliced in, lines duplicated or cut), or one of its files swapped for a bomb of
tests/test_hardening_spec.py. Deterministic (derandomized, a fixed number of examples).
"""

from __future__ import annotations

import resource
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nebula.engine.load import load_desired
from nebula.errors import ConfigError
from nebula.kinds.packages.diff import diff
from nebula.kinds.packages.types import Observed
from test_hardening_spec import BOMBS

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "homelab"
FILES = {
    path.relative_to(EXAMPLE).as_posix(): path.read_text()
    for path in sorted(EXAMPLE.rglob("*.yaml"))
}
SECONDS = 5
MEMORY = 500 * 1024 * 1024

TOKENS = [
    *(":", ": ", "- ", "{", "}", "[", "]", ",", "'", '"', "\n", "  ", "\t", "#", "? ", "|", ">"),
    *("---\n", "...\n", "%YAML 1.1\n", "~", "null", "true", "0x1f", "2026-01-01", "1_000"),
    *("&a ", "*a", "<<: *a\n", "&b [*a, *a, *a]", "!!python/object/apply:os.system [id] ", "!foo "),
    *("!!binary aGk= ", "!!set {a}", "!!int x", "${FOO", "${", "${}", "$$", "${secret:x}"),
    *(".inf", ".nan", "-1", "1e29", "100000000000000000000000000000", "999999999h", "-5s"),
    *("999.1.1.1", "999.1.1.1:8080:80", "８０:80", "🌌app", "\ufeff", "\x00", "é"),
    *("[" * 200, "x" * 5_000, "a:\n" * 50, "on-failure:٣", "0.0.0.0:80:80", "busybox:1.36"),
]


@st.composite
def repos(draw: st.DrawFn) -> dict[str, str]:
    """examples/homelab, its files mutated: tokens spliced in, slices cut, lines repeated."""
    files = dict(FILES)
    if draw(st.integers(0, 9)) == 0:  # now and then, one file is a bomb
        files[draw(st.sampled_from(sorted(files)))] = BOMBS[draw(st.sampled_from(sorted(BOMBS)))][0]
        return files
    for _ in range(draw(st.integers(1, 4))):
        name = draw(st.sampled_from(sorted(files)))
        text = files[name]
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "replace", "cut", "repeat line"]))
        if kind == "repeat line":
            start = text.rfind("\n", 0, at) + 1
            end = text.find("\n", at) + 1 or len(text)
            text = text[:end] + text[start:end] * draw(st.integers(1, 3)) + text[end:]
        elif kind == "cut":
            text = text[:at] + text[at + draw(st.integers(1, 40)) :]
        else:
            token = draw(st.sampled_from(TOKENS))
            end = at + (draw(st.integers(1, 12)) if kind == "replace" else 0)
            text = text[:at] + token + text[end:]
        files[name] = text
    return files


@contextmanager
def bounded() -> Iterator[None]:
    """At most `SECONDS` (then a TimeoutError) and `MEMORY` more address space (then a
    MemoryError) for what runs inside."""

    def timeout(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"still running after {SECONDS} s")

    with open("/proc/self/statm") as statm:
        in_use = int(statm.read().split()[0]) * resource.getpagesize()
    limits = resource.getrlimit(resource.RLIMIT_AS)
    previous = signal.signal(signal.SIGALRM, timeout)
    resource.setrlimit(resource.RLIMIT_AS, (in_use + MEMORY, limits[1]))
    signal.alarm(SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        resource.setrlimit(resource.RLIMIT_AS, limits)
        signal.signal(signal.SIGALRM, previous)


def validate_and_plan(files: dict[str, str]) -> None:
    """What `nebula validate` and the pure part of `nebula plan` do with a repo of `files`."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text, encoding="utf-8")
        try:
            with bounded():
                desired = load_desired(root)
                diff(desired.installations, Observed()).to_dict()
        except ConfigError as exc:
            assert exc.issues
            for issue in exc.issues:
                assert issue.file in files, issue
                assert issue.line >= 1 and issue.column >= 1, issue
                assert issue.message, issue


@settings(
    derandomize=True,
    database=None,
    max_examples=500,
    deadline=SECONDS * 1000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(repos())
def test_mutated_repos_give_a_plan_or_errors_at_file_line(files: dict[str, str]) -> None:
    validate_and_plan(files)


def test_every_bomb_in_every_file_is_an_error_at_file_line() -> None:
    for name in FILES:
        for text, _ in BOMBS.values():
            validate_and_plan({**FILES, name: text})
