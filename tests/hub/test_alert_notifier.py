"""The notifier seam: the real Alerts on a real store, sending through a notifier that keeps
what it was given, and the real Apprise notifier against a real local webhook (the webhook
and the incursion message are those of the alert attack tests)."""

from __future__ import annotations

import base64
import threading
from datetime import UTC, datetime, timedelta

import pytest

from mimamori.edge import contract
from mimamori.hub.alerts import Alerts
from mimamori.hub.alerts.notify import AppriseNotifier
from mimamori.hub.store import Store
from tests.conftest import free_port
from tests.security.test_alert_attacks import JPEG as SNAPSHOT
from tests.security.test_alert_attacks import Webhook, incursion

JPEG = base64.b64decode(SNAPSHOT)


class Kept:
    """A notifier that delivers into a list."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str, bytes | None]] = []

    def accepts(self, url: str) -> bool:
        return "://" in url

    def send(self, url: str, title: str, body: str, snapshot: bytes | None) -> bool:
        self.sent.append((url, title, body, snapshot))
        return True


def test_alerts_send_through_the_notifier_they_are_given(store: Store) -> None:
    kept = Kept()
    alerts = Alerts(store, public_url="http://hub/", secret=b"s" * 32, notifier=kept)
    with pytest.raises(ValueError, match="not one Apprise understands"):
        alerts.add_subscriber("nobody", "no url")
    alerts.add_subscriber("mail", "mailto://farmer@example.org")
    alerts.add_subscriber("line", "line://token/U1")
    alerts.handle(incursion("field-01", contract.utcnow()), datetime.now(UTC))
    alerts.close()
    by_url = {url: (title, body, snap) for url, title, body, snap in kept.sent}
    title, body, snap = by_url["mailto://farmer@example.org"]
    assert title == "Monkeys / サル出没" and snap == JPEG
    assert "monkeys at field-01" in body and "I'm on it: http://hub/alerts/take/" in body
    title, body, snap = by_url["line://token/U1"]
    assert title == "サル出没" and snap is None and "\n" not in body and "Score" not in body
    troop = alerts.recent()[0]["id"]
    assert alerts.told(troop) == {"mail": True, "line": True}


def test_apprise_notifier_delivers_text_and_snapshot() -> None:
    hook = Webhook()
    url, posts = hook.url, hook.posts
    notifier = AppriseNotifier()
    assert notifier.accepts(url) and not notifier.accepts("no url")
    assert notifier.send(url, "Monkeys", "at field-01", JPEG)
    (post,) = posts
    assert post["title"] == "Monkeys" and post["message"] == "at field-01"
    assert base64.b64decode(post["attachments"][0]["base64"]) == JPEG
    down = f"json://127.0.0.1:{free_port()}/hook"
    assert notifier.send(down, "Monkeys", "nobody listens", None) is False
    hook.server.shutdown()


class Slow(Kept):
    """Delivers to a URL with "backup" in it only when let go: a server taking its time."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()

    def send(self, url: str, title: str, body: str, snapshot: bytes | None) -> bool:
        if "backup" in url:
            assert self.go.wait(10)
        return super().send(url, title, body, snapshot)


def test_an_escalation_still_being_sent_is_not_sent_again(store: Store) -> None:
    slow = Slow()
    alerts = Alerts(store, public_url="http://hub/", secret=b"s" * 32, notifier=slow)
    alerts.add_subscriber("first", "mailto://first@example.org")
    alerts.add_subscriber("backup", "mailto://backup@example.org", duty=1)
    alerts.handle(incursion("field-01", contract.utcnow()), datetime.now(UTC))
    later = datetime.now(UTC) + alerts.escalate_after + timedelta(seconds=1)
    try:
        assert alerts.escalate(now=later) == 1
        # the checker comes round again while the first attempt waits on the mail server
        assert alerts.escalate(now=later) == 0
        assert alerts.escalate(now=later + timedelta(seconds=5)) == 0
    finally:
        slow.go.set()
        alerts.close()
    assert [url for url, *_ in slow.sent].count("mailto://backup@example.org") == 1
    assert alerts.escalate(now=later) == 0  # and once it is recorded, never again


def test_line_messages_still_being_sent_count_against_the_budget(store: Store) -> None:
    slow = Slow()  # holds every message to a URL with "backup" in it
    alerts = Alerts(store, public_url="http://hub/", secret=b"s" * 32, notifier=slow)
    alerts.line_monthly_budget = 2
    alerts.add_subscriber("group", "line://token/Ubackup")
    now = datetime.now(UTC)
    try:
        for hours in (3, 2, 1):  # three visits, hours apart: three alerts
            alerts.handle(incursion("field-01", now - timedelta(hours=hours)), now)
        assert len(alerts.recent()) == 3
    finally:
        slow.go.set()
        alerts.close()
    assert len(slow.sent) == 2  # the third was over budget while two were still being sent
    assert alerts.line_used() == 2
