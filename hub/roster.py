"""The fleet roster: which devices exist and what each may say, as provisioning issued them.

A device's birth message claims a role, but a device is not the hub: a stolen wildlife
camera could claim to be a kiosk. The hub therefore takes each device's role (and, for a bus,
its vehicle) from ``devices.json``, which ``mimamori provision`` writes into the fleet's
``hub/`` folder beside ``hub.toml`` every time a device is added or revoked. The file is
re-read when it changes, so a new device is known without restarting the hub. Where a
camera stands (``lat``/``lon``, given at provisioning) comes from here too, never from the
device.

A device missing from the roster, or revoked, may say nothing the hub will store.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from mimamori.edge import contract

log = logging.getLogger(__name__)

ROSTER_FILE = "devices.json"


@dataclass(frozen=True)
class Entry:
    role: str
    vehicle: str | None = None
    revoked: bool = False
    position: tuple[float, float] | None = None  # (lat, lon), WGS 84 degrees


def _position(info: dict[str, object]) -> tuple[float, float] | None:
    lat, lon = info.get("lat"), info.get("lon")
    if not (isinstance(lat, int | float) and isinstance(lon, int | float)):
        return None  # not given, or not numbers
    if isinstance(lat, bool) or isinstance(lon, bool):
        return None
    return (float(lat), float(lon)) if -90 <= lat <= 90 and -180 <= lon <= 180 else None


class Roster:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._entries: dict[str, Entry] = {}
        self._warned = False

    def _load(self) -> dict[str, Entry]:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            if not self._warned:
                log.error(
                    "no device roster at %s: every device message will be refused "
                    "(`mimamori provision device` writes it)",
                    self.path,
                )
                self._warned = True
            self._entries, self._mtime = {}, None
            return self._entries
        if mtime != self._mtime:
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))["devices"]
                self._entries = {
                    name: Entry(
                        role=str(info["role"]),
                        vehicle=info.get("vehicle") or None,
                        revoked=bool(info.get("revoked")),
                        position=_position(info),
                    )
                    for name, info in raw.items()
                }
                self._mtime = mtime
                self._warned = False
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                # keep what was known before: a half-written file must not unknow the fleet
                log.error(
                    "device roster %s unreadable (%s); keeping the previous one", self.path, e
                )
        return self._entries

    def get(self, dev: str) -> Entry | None:
        """The device's entry if it is known and not revoked."""
        with self._lock:
            entry = self._load().get(dev)
        return entry if entry is not None and not entry.revoked else None

    def positions(self, role: str) -> dict[str, tuple[float, float]]:
        """(lat, lon) of every device of ``role`` in the fleet that has one."""
        with self._lock:
            entries = self._load()
        return {
            dev: e.position
            for dev, e in sorted(entries.items())
            if e.role == role and not e.revoked and e.position is not None
        }

    def role(self, dev: str) -> str | None:
        entry = self.get(dev)
        return entry.role if entry else None

    def check(self, t: contract.Topic) -> Entry:
        """The device's entry; ContractError (``unknown_device``, ``not_allowed``) unless it
        is in the fleet and its role may use ``t``."""
        entry = self.get(t.dev)
        if entry is None:
            raise contract.ContractError(
                f"device {t.dev!r} is not in the fleet roster (unknown or revoked)",
                reason=contract.Reason.UNKNOWN_DEVICE,
            )
        contract.check_role(entry.role, t)
        return entry
