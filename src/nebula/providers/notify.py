"""Notifications through Apprise: a channel name stands for one or more Apprise URLs
(`discord://ID/TOKEN`, `mailto://…`, `ntfy://…`, Slack, Telegram, Gotify, …).

Apprise URLs carry credentials, and the log lines of a send print them: Apprise's Discord
plugin logs the webhook URL, token included, and urllib3 logs each request's path. So Apprise's
records never reach Nebula's logs, nor urllib3's while a notification is sent: the warnings that
say why a send failed are kept per thread, stripped of the URL's secret parts, and become the
`Delivery`'s error.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

import apprise
from apprise.logger import LOGGER_NAME

log = logging.getLogger(__name__)

MASK = "••••"
INVALID = (
    "not a URL Apprise can send to: check its form for the service"
    " (https://github.com/caronc/apprise/wiki)"
)


@dataclass(frozen=True)
class Delivery:
    """What became of one notification to one channel."""

    channel: str
    ok: bool
    attempts: int  # sends tried (0: nothing could be tried, e.g. an unknown channel)
    error: str | None = None  # why it was not delivered; never holds a URL's secret parts


class _Reasons(logging.Handler):
    """Keeps the warnings Apprise logs on the calling thread while `collect` is open."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        lines: list[str] | None = getattr(self._local, "lines", None)
        if lines is not None:
            lines.append(record.getMessage())

    def collecting(self) -> bool:
        return hasattr(self._local, "lines")

    @contextlib.contextmanager
    def collect(self) -> Iterator[list[str]]:
        lines: list[str] = []
        self._local.lines = lines
        try:
            yield lines
        finally:
            del self._local.lines


class _NotWhileSending(logging.Filter):
    def __init__(self, reasons: _Reasons) -> None:
        super().__init__()
        self._reasons = reasons

    def filter(self, record: logging.LogRecord) -> bool:
        return not self._reasons.collecting()


def _quiet_apprise() -> _Reasons:
    apprise_log = logging.getLogger(LOGGER_NAME)
    apprise_log.propagate = False
    apprise_log.setLevel(logging.WARNING)
    reasons = _Reasons()
    apprise_log.addHandler(reasons)
    for name in ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry"):
        logging.getLogger(name).addFilter(_NotWhileSending(reasons))
    return reasons


_REASONS = _quiet_apprise()


class _Target:
    """One Apprise URL of a channel: its plugin, and how to name it without its secrets."""

    def __init__(self, plugin: apprise.NotifyBase, url: str) -> None:
        self.plugin = plugin
        private: str = plugin.url(privacy=True)  # type: ignore[no-untyped-call]  # unannotated
        self.name = private.split("?", 1)[0]
        self._secrets = _secret_parts(url, private)
        self._lock = threading.Lock()  # a plugin keeps state (rate limits): one send at a time

    def deliver(self, title: str, body: str) -> str | None:
        """One try; None when delivered, else why not."""
        with self._lock, _REASONS.collect() as lines:
            try:
                if self.plugin.notify(body=body, title=title):
                    return None
            except Exception as exc:
                lines.append(f"{type(exc).__name__}: {exc}")
        reason = lines[-1] if lines else "not delivered"
        for secret in self._secrets:
            reason = reason.replace(secret, MASK)
        return reason


@dataclass(frozen=True)
class _Channel:
    targets: list[_Target]  # the URLs Apprise can send to
    invalid: list[str]  # the others, named without their secrets


def _channel(urls: Sequence[str]) -> _Channel:
    channel = _Channel([], [])
    for url in urls:
        with _REASONS.collect():  # Apprise logs a URL it cannot parse, whole
            plugin = apprise.Apprise.instantiate(url)
        if plugin is None:
            scheme = url.split("://", 1)[0] if "://" in url else "?"
            channel.invalid.append(f"{scheme}://{MASK}")
        else:
            channel.targets.append(_Target(plugin, url))
    return channel


def _secret_parts(url: str, private: str) -> list[str]:
    """The parts of `url` its private form (Apprise's `url(privacy=True)`) does not show:
    passwords, tokens, webhook IDs. Longest first, so a part inside another is masked too."""
    try:
        parts = urlsplit(url)
        pieces = [parts.username, parts.password, parts.hostname, *parts.path.split("/")]
    except ValueError:
        return [url]
    pieces += [value for _, value in parse_qsl(parts.query)]
    found = {form for piece in pieces if piece for form in (piece, unquote(piece))}
    return sorted((p for p in found if len(p) >= 4 and p not in private), key=len, reverse=True)


class Notifier:
    """Sends notifications to named channels, retrying failed sends with exponential backoff.

    `channels` maps a channel name to its Apprise URLs, secrets already revealed. A channel is
    delivered when every one of its URLs is; a retry sends again only to the URLs that failed.
    """

    def __init__(
        self,
        channels: Mapping[str, Sequence[str]],
        attempts: int = 4,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {attempts}")
        self._channels = {name: _channel(urls) for name, urls in channels.items()}
        self._attempts = attempts
        self._backoff = backoff
        self._sleep = sleep

    def send(self, channel: str, title: str, body: str) -> Delivery:
        """Send to one channel; never raises: what went wrong is in the `Delivery`."""
        found = self._channels.get(channel)
        if found is None:
            known = ", ".join(sorted(self._channels)) or "none"
            return Delivery(
                channel,
                ok=False,
                attempts=0,
                error=f"no notification channel {channel!r}: declare it under"
                f" `notifications:` in nebula.yaml (declared: {known})",
            )
        if not found.targets and not found.invalid:
            return Delivery(
                channel,
                ok=False,
                attempts=0,
                error=f"notification channel {channel!r} has no URLs: give it at least one"
                " under `notifications:` in nebula.yaml",
            )
        # An invalid URL stays invalid: it is reported, never tried.
        failed = [(name, INVALID) for name in found.invalid]
        pending = found.targets
        attempts = 0
        tried: list[tuple[_Target, str | None]] = []
        while pending and attempts < self._attempts:
            if attempts:
                self._sleep(self._backoff * 2 ** (attempts - 1))
            attempts += 1
            tried = [(target, target.deliver(title, body)) for target in pending]
            pending = [target for target, reason in tried if reason is not None]
        failed += [(target.name, reason) for target, reason in tried if reason is not None]
        if not failed:
            return Delivery(channel, ok=True, attempts=attempts)
        error = "; ".join(f"{name}: {reason}" for name, reason in failed)
        log.warning("notification to %s not delivered (attempts: %d): %s", channel, attempts, error)
        return Delivery(channel, ok=False, attempts=attempts, error=error)

    def send_many(self, channels: Iterable[str], title: str, body: str) -> list[Delivery]:
        """Send to several channels at once, one `Delivery` each in their order; a slow or
        broken channel delays none of the others' sends."""
        names = list(dict.fromkeys(channels))
        if not names:
            return []
        with ThreadPoolExecutor(len(names), thread_name_prefix="notify") as pool:
            return list(pool.map(lambda name: self.send(name, title, body), names))
