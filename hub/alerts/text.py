"""What an alert says, in Japanese and English: pure functions of what was seen."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from mimamori.hub.clock import zone

ALERT_TITLE = "Monkeys / サル出没"
#: LINE carries a short text only: a short title too
LINE_TITLE = "サル出没"
TAKEN_TITLE = "Monkeys: someone is going / 対応中"


def hhmm(ts: datetime) -> str:
    return ts.astimezone(zone()).strftime("%H:%M")


def alert_text(
    dev: str, score: float, frames: int, seen: datetime, late: bool, received: datetime
) -> str:
    """The first alert of a troop; a late one says when it was seen and when delivered."""
    when = (
        f"seen {hhmm(seen)}, delivered {hhmm(received)} (held by a coverage gap)"
        if late
        else f"seen {hhmm(seen)}"
    )
    return f"サルが出ました / monkeys at {dev}: {when}. Score {score:.2f}, {frames} frames."


def escalation_text(cameras: Sequence[str], started: datetime) -> str:
    return (
        f"Nobody has taken this yet (escalated): monkeys at "
        f"{', '.join(cameras)}, seen {hhmm(started)}."
    )


def taken_text(name: str, cameras: Sequence[str], started: datetime) -> str:
    """What the others hear when ``name`` takes an incursion."""
    return f"{name} is going to {', '.join(cameras)} (seen {hhmm(started)})."


def with_link(body: str, link: str) -> str:
    """The whole alert with its "I'm on it" link."""
    return f"{body}\nI'm on it: {link}"


def line_text(body: str, link: str) -> str:
    """LINE's short form: the first sentence and the link (the picture is behind it)."""
    return f"{body.split('. ')[0]}. {link}"
