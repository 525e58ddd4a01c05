"""Monkey alerts at the hub: troop incursions, subscribers, delivery through Apprise.

* One **troop incursion** per visit: a ``wildlife.incursion`` from a camera within
  ``MERGE_WINDOW`` of an open troop incursion at another camera joins it (the cameras are kept
  in order: the direction of travel) and sends no second alert. A repeated message (same
  device and incursion id) changes nothing.
* **Subscribers** (hunters, farmers) have an Apprise URL (e-mail, ntfy, LINE, Slack,
  Telegram, webhooks...), the cameras they follow and quiet hours. Each gets one alert per troop
  incursion with the snapshot attached and an "I'm on it" link; taking it tells the others who
  is going.
* An alert held in a device's outbox during a coverage gap says so: "seen 14:02, delivered
  14:31", never presented as live.
* Delivery runs on a small thread pool so a slow mail server never holds up ingest; a
  failed delivery is logged and retried, never dropped silently.
* **A device is not trusted with time or place**: when a monkey was seen is the hub's own
  receive time less the event's ``age_s`` (the device's monotonic clock, bounded), never the
  device's wall clock, so an event "from 2099" cannot hold a troop open; a troop takes in only
  neighbouring cameras (``[alerts] areas`` in hub.toml) seen within ``MERGE_WINDOW`` of its
  last sighting and no longer than ``MAX_TROOP_SPAN`` after it began. Only wildlife-role
  devices reach this package at all (ingest checks the roster).
* The "I'm on it" link expires after ``TAKE_VALID``.

Modules, each importing only those listed before it (and ``hub.store``, ``hub.config``,
``hub.clock``, ``edge.contract``):

* ``rules``    pure decisions: when seen and late, quiet hours, following, troop merging,
               the LINE budget, escalation, the retry schedule
* ``text``     pure message text, Japanese and English
* ``tables``   the alert tables
* ``notify``   the ``Notifier`` protocol and ``AppriseNotifier``
* ``service``  ``Alerts``: applies the rules to the tables and sends through a notifier
* ``timeline`` one camera's incursions joined with their ends, by day (the timeline page)
"""

from mimamori.hub.alerts.service import Alerts

__all__ = ["Alerts"]
