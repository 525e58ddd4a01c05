"""The device service: config + outbox + link + the role's app, driven from one loop.

The app is found by role in ``edge.apps`` (never imported here) and driven through the
``edge.app.App`` interface: ``step()`` from the loop, its commands added to the link's, its
``telemetry()`` in every ``tele``. Starting and restarting it happen on this loop only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import sdnotify

from mimamori.edge import contract, download, health, updates
from mimamori.edge.app import App, Emitter, Telemetry
from mimamori.edge.apps import APP_SECTIONS, create_app
from mimamori.edge.camera import CameraError
from mimamori.edge.config import DeviceConfig, apply_patch, remote_view
from mimamori.edge.errors import MimamoriError, UpdateFailed
from mimamori.edge.link import Link
from mimamori.edge.outbox import Outbox

log = logging.getLogger(__name__)

SW_VERSION = "0.1.0"


#: builds the app for a config (the registry's ``create_app``; tests pass their own)
AppFactory = Callable[[DeviceConfig, Emitter], App | None]


class Service:
    def __init__(
        self,
        cfg: DeviceConfig,
        *,
        app_factory: AppFactory = create_app,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = contract.utcnow,
        notifier: Notifier | None = None,
        watchdog_s: float | None = None,
    ) -> None:
        self.notifier = notifier or sdnotify.SystemdNotifier()
        self.watchdog_s = watchdog_s or watchdog_interval()
        self.base_cfg = cfg
        self.cfg = cfg
        self.clock = clock
        self.boot_id = uuid.uuid4().hex
        self.data_dir = Path(cfg.device.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._twin_file = self.data_dir / "twin.json"
        self.outbox = Outbox(
            self.data_dir / "outbox.sqlite", max_bytes=_mb(cfg.outbox.max_mb), wall=wall
        )
        self.link = Link(
            cfg,
            self.outbox,
            birth=self._birth,
            on_desired=self._apply_desired,
            commands={
                "ping": self._cmd_ping,
                "snapshot-config": self._cmd_snapshot_config,
                "restart-app": self._cmd_restart_app,
                "model-rollback": self._cmd_model_rollback,
            },
            on_job=self._on_job,
        )
        self.models = updates.ModelStore(self.data_dir / "models")
        self._jobs_file = self.data_dir / "jobs.json"
        self.emit = Emitter(self.outbox, self.link)
        self._app_factory = app_factory
        self._restore_twin()
        self.app: App | None = None
        self._app_lock = threading.Lock()
        self._stop = threading.Event()
        self._started = clock()
        #: set from the link's thread (twin change, restart-app), acted on by the loop
        self._restart_wanted = threading.Event()
        self._fresh_update: str | None = None  # a model installed since the app last started

    # -- twin ----------------------------------------------------------------------------

    def _restore_twin(self) -> None:
        try:
            saved = json.loads(self._twin_file.read_text())
            self._set_cfg(apply_patch(self.base_cfg, saved["config"]))
            self.link.twin_version = int(saved["version"])
            log.info("restored twin config version %d", self.link.twin_version)
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError) as e:
            log.warning("ignoring saved twin config %s: %s", self._twin_file, e)

    def _apply_desired(self, version: int, patch: dict[str, Any]) -> dict[str, Any]:
        new = apply_patch(self.base_cfg, patch)  # raises ConfigError: old config stays
        tmp = self._twin_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": version, "config": patch}))
        tmp.replace(self._twin_file)
        restart = any(getattr(new, k) != getattr(self.cfg, k) for k in APP_SECTIONS)
        self._set_cfg(new)
        if restart:
            self._restart_wanted.set()  # on the service loop, not on the link's thread
        log.info("applied twin config version %d", version)
        return remote_view(new)

    def _set_cfg(self, cfg: DeviceConfig) -> None:
        self.cfg = cfg
        self.link.cfg = cfg
        self.outbox.max_bytes = _mb(cfg.outbox.max_mb)

    def _birth(self) -> dict[str, Any]:
        return {
            "role": self.cfg.device.role,
            "sw_version": SW_VERSION,
            "model": self._model(),
            "config_version": self.link.twin_version,
            "boot_id": self.boot_id,
            "capabilities": ["twin", "cmd"],
            "location": self.cfg.device.location,
        }

    # -- jobs ----------------------------------------------------------------------------

    def _finished_jobs(self) -> dict[str, dict[str, Any]]:
        try:
            return dict(json.loads(self._jobs_file.read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def _on_job(self, job: contract.JobDocument) -> None:
        done = self._finished_jobs().get(job.job_id)
        if done is not None:  # the retained job again, after a reconnect
            self.link.report_job(contract.JobStatus.model_validate(done))
            return
        threading.Thread(
            target=self._run_job, args=(job,), name=f"job-{job.job_id}", daemon=True
        ).start()

    def _run_job(self, job: contract.JobDocument) -> None:
        if self.cfg.updates is None:
            final = contract.JobStatus(
                job_id=job.job_id,
                status="REJECTED",
                reason="no model-signing key configured ([updates])",
            )
            self.link.report_job(final)
        else:
            try:
                key = updates.load_public_key(self.cfg.updates.public_key_file)
            except (OSError, ValueError) as e:
                final = contract.JobStatus(
                    job_id=job.job_id,
                    status="FAILED",
                    reason=f"cannot read the model-signing key: {e}",
                )
                self.link.report_job(final)
            else:
                tls = self.cfg.mqtt.tls
                fetch = download.https_fetch(
                    tls.ca_file if tls else None,
                    tls.cert_file if tls else None,
                    tls.key_file if tls else None,
                )
                final = updates.run_job(job, self.models, key, self.link.report_job, fetch=fetch)
                if final.status == "SUCCEEDED":
                    # the app loads the installed update when it starts again; if it cannot
                    # start with it, restart_app switches back to the version before
                    self._fresh_update = job.update.manifest.name
                    self._restart_wanted.set()
        finished = self._finished_jobs()
        finished[job.job_id] = final.model_dump(mode="json")
        tmp = self._jobs_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(finished))
        tmp.replace(self._jobs_file)

    def _model(self) -> dict[str, Any] | None:
        """The model the app has loaded; before it has, the newest installed update."""
        app = self.app
        if app is not None and app.model_info is not None:
            return app.model_info.model_dump(mode="json")
        if not self.models.root.is_dir():
            return None
        for slot in sorted(self.models.root.iterdir()):
            current = self.models.current(slot.name)
            if current is not None:
                return {
                    "name": slot.name,
                    "version": self.models.installed_version(slot.name),
                    "sha256": hashlib.sha256(current.read_bytes()).hexdigest(),
                    "source": "update",
                }
        return None

    # -- commands ------------------------------------------------------------------------

    def _cmd_ping(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "pong": True,
            "uptime_s": round(self.clock() - self._started, 1),
            "host": platform.node(),
            "link": asdict(self.link.stats),  # connects, acks, bad messages, last backoff
        }

    def _cmd_snapshot_config(self, args: dict[str, Any]) -> dict[str, Any]:
        dumped = self.cfg.model_dump(mode="json")
        dumped["mqtt"].pop("password_file", None)
        return {"config_version": self.link.twin_version, "config": dumped}

    def _cmd_restart_app(self, args: dict[str, Any]) -> dict[str, Any]:
        # loading models and opening cameras takes seconds: never on the link's network thread
        self._restart_wanted.set()
        return {"restart": "queued"}

    def _cmd_model_rollback(self, args: dict[str, Any]) -> dict[str, Any]:
        """Switch a model slot back to the version before the current one (kept on disk)."""
        name = str(args.get("name", ""))
        if not name or name not in {p.name for p in self.models.root.glob("*")}:
            raise ValueError(f"no model slot {name!r} on this device")
        version = self.models.rollback(name)
        self._restart_wanted.set()  # the app loads the version now current
        return {"name": name, "version": version}

    def _undo_update(self, name: str, why: Exception) -> None:
        """The app would not start on a model just installed: back to the version before."""
        try:
            version = self.models.rollback(name)
        except UpdateFailed as e:
            log.error("cannot roll %s back: %s", name, e)
            return
        message = f"model {name}: the app did not start with the update ({why}); back to version {version}"
        log.error("%s", message)
        self.emit("device.notice", {"level": "error", "message": message})
        try:
            self.app = self._app_factory(self.cfg, self.emit)
        except (MimamoriError, CameraError, OSError, ImportError) as e:
            log.error("app not started after the rollback either: %s", e)
            self.app = None

    def restart_app(self) -> None:
        with self._app_lock:
            if self.app is not None:
                self.app.close()
            fresh, self._fresh_update = self._fresh_update, None
            try:
                self.app = self._app_factory(self.cfg, self.emit)
            except (MimamoriError, CameraError, OSError, ImportError) as e:
                # the link stays up so the hub sees why and can send a fix
                log.error("app not started: %s", e)
                self.app = None
                self.emit("device.notice", {"level": "error", "message": f"app not started: {e}"})
                if fresh is not None:
                    self._undo_update(fresh, e)
            self.link.app_commands = dict(self.app.commands) if self.app is not None else {}

    # -- running -------------------------------------------------------------------------

    def start(self) -> None:
        self.link.start()
        self.restart_app()

    def stop(self) -> None:
        self._stop.set()

    def run(self, tick_s: float = 0.1) -> None:
        """Run until stop() or SIGTERM; then stop cleanly (death certificate, close db)."""
        self.start()
        self.notifier.notify("READY=1")
        next_tele = next_ping = self.clock()
        try:
            while not self._stop.is_set():
                if self._restart_wanted.is_set():
                    self._restart_wanted.clear()
                    self.restart_app()
                now = self.clock()
                with self._app_lock:
                    if self.app is not None:
                        self.app.step(now)
                if now >= next_ping:
                    # pinged only from this loop: a hung app.step() stops the pings and
                    # systemd (WatchdogSec=) restarts the service
                    next_ping = now + self.watchdog_s
                    self.notifier.notify("WATCHDOG=1")
                    self.notifier.notify(f"STATUS={self.status()}")
                if now >= next_tele:
                    # until the link is up, try again every second rather than every interval
                    sent = self.send_tele()
                    next_tele = now + (self.cfg.telemetry.interval_s if sent else 1.0)
                # an app that paces itself on its camera (tick_s = 0) is stepped at once
                self._stop.wait(self.app.tick_s if self.app is not None else tick_s)
        finally:
            self.notifier.notify("STOPPING=1")
            with self._app_lock:
                if self.app is not None:
                    self.app.close()
            self.link.stop()
            self.outbox.close()

    def status(self) -> str:
        link = "connected" if self.link.connected else "offline"
        hub = ", hub online" if self.link.hub_online else ""
        return f"{link}{hub}, outbox {self.outbox.depth()}"

    def send_tele(self) -> bool:
        with self._app_lock:
            app = self.app.telemetry() if self.app is not None else Telemetry()
            model = self.app.model_info if self.app is not None else None
        return self.link.publish_tele(
            health.sample(
                self.data_dir,
                outbox_depth=self.outbox.depth(),
                outbox_dropped=self.outbox.dropped(),
                fps=app.fps,
                inference_ms=app.inference_ms,
                model=model,
            )
        )


class Notifier(Protocol):
    """The sd_notify seam (``sdnotify.SystemdNotifier``; a no-op outside systemd)."""

    def notify(self, state: str) -> None: ...


def watchdog_interval(default: float = 5.0) -> float:
    """Half of systemd's WatchdogSec (``WATCHDOG_USEC``), as sd_watchdog_enabled(3) advises."""
    try:
        return max(0.5, int(os.environ["WATCHDOG_USEC"]) / 2e6)
    except (KeyError, ValueError):
        return default


def _mb(value: float) -> int:
    return int(value * 2**20)


def install_signal_handlers(service: Service) -> None:
    def _stop(signum: int, frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        service.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
