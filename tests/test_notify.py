"""Notifications through Apprise, against real protocols: mail through a real SMTP server
(aiosmtpd) and Discord's webhook API through a local double that enforces its status codes and
its 429 `retry_after`. Time passes only when the notifier sleeps (`Time`), so nothing waits."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
from apprise.plugins.discord import NotifyDiscord

from discord_double import DiscordDouble, discord_double
from nebula.providers.notify import Notifier
from servers import SmtpServer, free_port, smtp_server

WEBHOOK_ID = "1180002233445566778"
TOKEN = "Xq9-hookTokenThatMustNotLeak_4aZ"


class Time:
    """A clock that moves only when the notifier sleeps; the Discord double reads it."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def time_() -> Time:
    return Time()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def discord(time_: Time, monkeypatch: pytest.MonkeyPatch) -> Iterator[DiscordDouble]:
    with discord_double(clock=lambda: time_.now) as double:
        double.add_webhook(WEBHOOK_ID, TOKEN)
        # Apprise's Discord plugin posts to discord.com; point it at the double instead.
        monkeypatch.setattr(NotifyDiscord, "notify_url", double.api)
        yield double


def discord_url(webhook_id: str = WEBHOOK_ID, token: str = TOKEN) -> str:
    return f"discord://{webhook_id}/{token}"


def test_mail_arrives_through_a_real_smtp_server(smtp: SmtpServer, time_: Time) -> None:
    notifier = Notifier({"email": [smtp.apprise_url("ops@example.org")]}, sleep=time_.sleep)

    delivery = notifier.send("email", "blog is unhealthy", "blog-web failed its health check")

    assert (delivery.ok, delivery.attempts, delivery.error) == (True, 1, None)
    [mail] = smtp.mails
    assert mail.recipients == ["ops@example.org"]
    assert mail.sender == "nebula@example.org"
    assert mail.message["Subject"] == "blog is unhealthy"
    text = mail.message.get_body(preferencelist=("plain",))
    assert text is not None
    assert "blog-web failed its health check" in text.get_content()


def test_discord_message_arrives(discord: DiscordDouble, time_: Time) -> None:
    notifier = Notifier({"discord": [discord_url()]}, sleep=time_.sleep)

    delivery = notifier.send("discord", "blog is unhealthy", "restarted blog-web")

    assert (delivery.ok, delivery.attempts) == (True, 1)
    [message] = discord.messages
    posted = str(message.get("content", "")) + str(message.get("embeds", ""))
    assert "blog is unhealthy" in posted
    assert "restarted blog-web" in posted
    assert time_.slept == []


def test_discord_webhook_url_form_is_accepted(discord: DiscordDouble, time_: Time) -> None:
    url = f"https://discord.com/api/webhooks/{WEBHOOK_ID}/{TOKEN}"
    notifier = Notifier({"discord": [url]}, sleep=time_.sleep)

    assert notifier.send("discord", "title", "body").ok
    assert len(discord.messages) == 1


@pytest.mark.parametrize(("retry_after", "attempts"), [(0.5, 2), (2.5, 3)])
def test_rate_limited_discord_is_delivered_once_after_retry_after(
    discord: DiscordDouble, time_: Time, retry_after: float, attempts: int
) -> None:
    """Apprise does not read Discord's retry_after; the notifier's backoff (1 s, 2 s, ...)
    waits it out: the double refuses every post until retry_after has passed."""
    notifier = Notifier({"discord": [discord_url()]}, sleep=time_.sleep)
    discord.throttle(retry_after)

    delivery = notifier.send("discord", "blog is unhealthy", "restarted blog-web")

    assert (delivery.ok, delivery.attempts) == (True, attempts)
    assert len(discord.messages) == 1
    statuses = [status for _, status in discord.requests]
    assert statuses[0] == 429
    assert statuses[-1] == 204
    assert statuses.count(204) == 1
    assert sum(time_.slept) >= retry_after


@pytest.mark.parametrize(
    ("webhook_id", "token", "status"),
    [("999000111222333444", TOKEN, "404"), (WEBHOOK_ID, "wrong-token-1234", "401")],
)
def test_refused_webhook_is_tried_a_bounded_number_of_times(
    discord: DiscordDouble, time_: Time, webhook_id: str, token: str, status: str
) -> None:
    notifier = Notifier({"discord": [discord_url(webhook_id, token)]}, sleep=time_.sleep)

    delivery = notifier.send("discord", "blog is unhealthy", "restarted blog-web")

    assert not delivery.ok
    assert delivery.attempts == 4
    assert time_.slept == [1.0, 2.0, 4.0]
    assert delivery.error is not None
    assert delivery.error.startswith("discord://")
    assert f"error={status}" in delivery.error
    assert token not in delivery.error
    assert webhook_id not in delivery.error
    assert discord.messages == []


def test_a_retry_goes_only_to_the_urls_that_failed(
    smtp: SmtpServer, discord: DiscordDouble, time_: Time
) -> None:
    notifier = Notifier(
        {"ops": [smtp.apprise_url("ops@example.org"), discord_url("999000111222333444")]},
        attempts=3,
        sleep=time_.sleep,
    )

    delivery = notifier.send("ops", "blog is down", "details")

    assert (delivery.ok, delivery.attempts) == (False, 3)
    assert delivery.error is not None
    assert delivery.error.startswith("discord://")
    assert "mailto" not in delivery.error
    assert len(smtp.mails) == 1  # mailed once, not once per try


def test_one_broken_channel_does_not_stop_the_others(
    smtp: SmtpServer, discord: DiscordDouble, time_: Time
) -> None:
    broken = f"json://127.0.0.1:{free_port()}/hook?token=hookSecret9876"
    notifier = Notifier(
        {
            "email": [smtp.apprise_url("ops@example.org")],
            "webhook": [broken],
            "discord": [discord_url()],
        },
        attempts=2,
        sleep=time_.sleep,
    )

    deliveries = notifier.send_many(["email", "webhook", "discord"], "blog is down", "details")

    assert [(d.channel, d.ok) for d in deliveries] == [
        ("email", True),
        ("webhook", False),
        ("discord", True),
    ]
    error = deliveries[1].error
    assert error is not None
    assert error.startswith("json://127.0.0.1:")
    assert "Connection error" in error
    assert "hookSecret9876" not in error
    assert deliveries[1].attempts == 2
    assert len(smtp.mails) == 1
    assert len(discord.messages) == 1


def test_a_slow_channel_does_not_hold_the_others(
    smtp: SmtpServer, discord: DiscordDouble, time_: Time
) -> None:
    notifier = Notifier(
        {"email": [smtp.apprise_url("ops@example.org")], "discord": [discord_url()]},
        sleep=time_.sleep,
    )
    smtp.gate.clear()  # the SMTP server holds the mail unanswered
    deliveries = []
    sender = threading.Thread(
        target=lambda: deliveries.extend(notifier.send_many(["email", "discord"], "t", "b"))
    )
    sender.start()
    try:
        for _ in range(200):  # Discord's message arrives while the mail is still held
            if discord.messages:
                break
            threading.Event().wait(0.05)
        assert len(discord.messages) == 1
        assert smtp.mails == []
    finally:
        smtp.gate.set()
        sender.join()
    assert [(d.channel, d.ok) for d in deliveries] == [("email", True), ("discord", True)]
    assert len(smtp.mails) == 1


def test_secrets_stay_out_of_logs_and_errors(
    discord: DiscordDouble, time_: Time, caplog: pytest.LogCaptureFixture
) -> None:
    """Apprise logs a Discord webhook's URL, token included, and whole URLs it cannot parse:
    none of it reaches Nebula's logs, whatever their level."""
    caplog.set_level(logging.DEBUG)
    smtp_url = (
        f"mailto://nebula:mailPass5150@127.0.0.1:{free_port()}"
        "?mode=insecure&from=nebula@example.org&to=ops@example.org"
    )
    notifier = Notifier(
        {
            "discord": [discord_url("999000111222333444")],
            "email": [smtp_url],
            "typo": ["discrod://999000111222333444/typoToken77"],
        },
        attempts=1,
        sleep=time_.sleep,
    )

    deliveries = notifier.send_many(["discord", "email", "typo"], "title", "body")

    assert not any(d.ok for d in deliveries)
    typo = deliveries[2]
    assert typo.attempts == 0
    assert typo.error is not None
    assert "not a URL Apprise can send to" in typo.error
    assert deliveries[1].error is not None
    assert "Connection error" in deliveries[1].error
    errors = " ".join(d.error or "" for d in deliveries)
    warnings = [r.getMessage() for r in caplog.records if r.name == "nebula.providers.notify"]
    assert len(warnings) == 3
    assert "notification to discord not delivered" in caplog.text
    for secret in (TOKEN, "999000111222333444", "mailPass5150", "typoToken77"):
        assert secret not in caplog.text
        assert secret not in errors


def test_unknown_channel_names_the_declared_ones(time_: Time) -> None:
    notifier = Notifier({"email": ["mailto://a:b@127.0.0.1?mode=insecure"]}, sleep=time_.sleep)

    delivery = notifier.send("pager", "title", "body")

    assert (delivery.ok, delivery.attempts) == (False, 0)
    assert delivery.error == (
        "no notification channel 'pager': declare it under `notifications:` in nebula.yaml"
        " (declared: email)"
    )
