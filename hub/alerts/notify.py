"""The notifier seam: how one message reaches one subscriber's URL.

``Notifier`` is the protocol ``hub.alerts.service.Alerts`` sends through; ``AppriseNotifier``
is the real one (Apprise: e-mail, ntfy, LINE, Slack, Telegram, webhooks ...).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Protocol

import apprise

log = logging.getLogger(__name__)


class Notifier(Protocol):
    def accepts(self, url: str) -> bool:
        """Is ``url`` a notification URL this notifier can send to?"""

    def send(self, url: str, title: str, body: str, snapshot: bytes | None) -> bool:
        """Deliver one message (with the JPEG ``snapshot`` attached, if any); True if it
        was accepted. Never raises for a failed delivery."""


class AppriseNotifier:
    def accepts(self, url: str) -> bool:
        return bool(apprise.Apprise().add(url))

    def send(self, url: str, title: str, body: str, snapshot: bytes | None) -> bool:
        notifier = apprise.Apprise()
        notifier.add(url)
        with tempfile.TemporaryDirectory() as tmp:
            attach = None
            if snapshot is not None:
                path = Path(tmp) / "snapshot.jpg"
                path.write_bytes(snapshot)
                attach = apprise.AppriseAttachment()
                attach.add(str(path))
            try:
                return bool(notifier.notify(title=title, body=body, attach=attach))
            except Exception:
                log.exception("notification to %s failed", url.split("://", 1)[0])
                return False
