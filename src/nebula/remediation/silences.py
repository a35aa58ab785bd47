"""Silences: alerts whose labels match a silence's matchers are muted (no incident opened, no
runbook run, no notification) until it ends; the timeline of an open incident says so.

Matchers work like Alertmanager's: `label=value`, `label!=value`, `label=~regex` and
`label!~regex`, the regex anchored at both ends; a label an alert lacks has the value "".
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from nebula.store import Store
from nebula.store.incidents import IncidentStore
from nebula.store.records import Matcher, SilenceInfo

__all__ = ["Matcher", "SilenceInfo", "Silences", "matches", "parse_matcher"]

_OPERATORS = ("!~", "=~", "!=", "=")  # longest first: `a!=b` is not `a!` = `b`
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_matcher(text: str) -> Matcher:
    """`installation=blog`, `severity!=info`, `service=~web|db`; `ValueError` saying why not."""
    found = [(text.find(op), op) for op in _OPERATORS if op in text]
    if not found:
        raise ValueError(f"matcher {text!r}: write LABEL=VALUE (or !=, =~, !~)")
    at, op = min(found, key=lambda f: (f[0], -len(f[1])))
    return _checked((text[:at].strip(), op, text[at + len(op) :].strip()))


def matches(silence: SilenceInfo, labels: Mapping[str, str]) -> bool:
    """Whether `labels` match every matcher of `silence`."""
    return all(_match(matcher, labels.get(matcher[0], "")) for matcher in silence.matchers)


def _match(matcher: Matcher, value: str) -> bool:
    _, op, wanted = matcher
    if op in ("=", "!="):
        return (value == wanted) == (op == "=")
    return (re.fullmatch(wanted, value) is not None) == (op == "=~")


def _checked(matcher: Matcher) -> Matcher:
    label, op, value = matcher
    if op not in _OPERATORS:
        raise ValueError(f"matcher {label}{op}{value}: the operator is one of =, !=, =~, !~")
    if not _LABEL.fullmatch(label):
        raise ValueError(f"matcher {label}{op}{value}: {label!r} is not a label name")
    if op in ("=~", "!~"):
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"matcher {label}{op}{value}: bad regular expression: {exc}") from None
    return matcher


class Silences:
    """The silences of the store; `clock` gives the time (seconds since the epoch)."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = IncidentStore(store)
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def add(
        self,
        matchers: Mapping[str, str] | Sequence[Matcher],
        duration: float,
        comment: str,
        actor: str,
    ) -> SilenceInfo:
        """Silence what matches from now for `duration` seconds. `matchers`: label -> value
        (equality), or matchers as `parse_matcher` makes them."""
        listed = (
            [(label, "=", value) for label, value in matchers.items()]
            if isinstance(matchers, Mapping)
            else list(matchers)
        )
        if not listed:
            raise ValueError("a silence needs at least one matcher (it would silence everything)")
        if duration <= 0:
            raise ValueError(f"a silence lasts a positive time, not {duration} seconds")
        now = self._now()
        return self._store.add_silence(
            tuple(_checked(m) for m in listed),
            starts_at=now,
            ends_at=now + timedelta(seconds=duration),
            comment=comment,
            created_by=actor,
        )

    def remove(self, silence_id: str, actor: str) -> None:
        """End a silence now; `StoreError` when no such silence is in force."""
        self._store.end_silence(silence_id, self._now(), actor)

    def active(self) -> list[SilenceInfo]:
        return self._store.silences(self._now())

    def matching(self, labels: Mapping[str, str]) -> SilenceInfo | None:
        """The first silence in force that matches `labels`, if any."""
        return next((s for s in self.active() if matches(s, labels)), None)
