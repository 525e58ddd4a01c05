"""Each event kind as a sentence a member of staff reads (the raw data stays one click away)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from mimamori.hub.clock import duration, local

Data = dict[str, Any]


def _hhmm(iso: str | datetime | None) -> str:
    return local(iso).strftime("%H:%M") if iso else "?"


def _seconds(a: str | None, b: str | None) -> float | None:
    if not a or not b:
        return None
    return (local(b) - local(a)).total_seconds()


def _notice(d: Data) -> str:
    return f"{str(d.get('level', 'info')).capitalize()}: {d.get('message', '')}"


def _incursion(d: Data) -> str:
    where = d.get("location") or d.get("camera") or "the camera"
    return (
        f"Monkeys seen at {where} {_hhmm(d.get('started'))}, score {d.get('score', 0):.2f} "
        f"({d.get('label', '?')}), {d.get('frames', 0)} frames"
        + (", at night" if d.get("night") else "")
    )


def _incursion_end(d: Data) -> str:
    return (
        f"Monkeys gone: seen {_hhmm(d.get('started'))}–{_hhmm(d.get('ended'))}, "
        f"best {d.get('max_score', 0):.2f}, {d.get('frames', 0)} frames"
    )


def _stop_visit(d: Data) -> str:
    stop = (
        f"Stop {d['stop_sequence']} ({d.get('stop_name') or d.get('stop_id')})"
        if d.get("stop_sequence") is not None
        else d.get("stop_name") or d.get("stop_id") or "No stop matched"
    )
    doors = _seconds(d.get("arrival"), d.get("departure"))
    text = (
        f"{stop}: {d.get('boardings', 0)} on, {d.get('alightings', 0)} off"
        + (f", doors {duration(doors)}" if doors is not None else "")
        + f" ({d.get('vehicle', '?')})"
    )
    return text + (" — cut off, partial" if d.get("partial") else "")


def _call(d: Data) -> str:
    rang = _hhmm(d.get("rang"))
    reason = str(d.get("reason", "")).replace("_", " ")
    if d.get("answered"):
        wait = _seconds(d.get("rang"), d.get("answered"))
        talk = _seconds(d.get("answered"), d.get("ended"))
        return (
            f"Call at {rang} answered by {d.get('staff') or '?'} after {duration(wait)}, "
            f"talked {duration(talk)} ({reason}); {d.get('stills', 0)} stills"
        )
    return f"Call at {rang} not answered ({reason})"


SENTENCES: dict[str, Callable[[Data], str]] = {
    "device.notice": _notice,
    "wildlife.incursion": _incursion,
    "wildlife.incursion_end": _incursion_end,
    "ridership.stop_visit": _stop_visit,
    "kiosk.call": _call,
}


def sentence(kind: str, data: Data) -> str:
    """The event as one line; the kind itself for a kind this hub has no sentence for."""
    make = SENTENCES.get(kind)
    if make is None:
        return kind
    try:
        return make(data)
    except (KeyError, TypeError, ValueError):
        return kind  # stored data is schema-checked; this is for rows from older versions


SOURCES = {"image": "with the image", "update": "update", "local": "file set in the config"}


def model_label(model: dict[str, Any]) -> str:
    """'efficientnet-lite0 (with the image)', 'monkey v3 (update)': what a device runs."""
    name = str(model.get("name", "?"))
    if model.get("version"):
        name += f" v{model['version']}"
    source = SOURCES.get(str(model.get("source")))
    return f"{name} ({source})" if source else name
