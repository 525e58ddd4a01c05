"""systemd units verified by systemd-analyze; the watchdog seen from a real notify socket."""

from __future__ import annotations

import configparser
import shutil
import socket
import subprocess
import sys
import threading
from contextlib import ExitStack, closing
from pathlib import Path

import pytest

from mimamori.edge.app import App
from mimamori.edge.config import EXIT_BAD_CONFIG, load_config
from mimamori.edge.service import Service
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import ROOT, add_device
from tests.mqtt_probe import wait_until
from tests.running import RunningService

UNITS = sorted((ROOT / "systemd").glob("*.service"))


def unit(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


def test_one_unit_per_service() -> None:
    assert [u.name for u in UNITS] == [
        "mimamori-hub.service",
        "mimamori-kiosk.service",
        "mimamori-ridership.service",
        "mimamori-wildlife.service",
    ]


@pytest.mark.skipif(
    not shutil.which("systemd-analyze"), reason="systemd is installed by ./run.sh test"
)
def test_every_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    for path in UNITS:
        # the units point at /opt/mimamori, which a build machine does not have
        text = path.read_text().replace("/opt/mimamori/.venv/bin/mimamori", sys.executable)
        (tmp_path / path.name).write_text(text)
    res = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *sorted(tmp_path.glob("*"))],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip() == "" and res.stdout.strip() == "", res.stderr + res.stdout


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.stem)
def test_units_are_notify_watchdog_hardened_and_stop_on_bad_config(path: Path) -> None:
    s = unit(path)["Service"]
    assert s["Type"] == "notify" and int(s["WatchdogSec"]) > 0
    assert s["Restart"] == "on-failure"
    assert s["RestartPreventExitStatus"] == str(EXIT_BAD_CONFIG)
    assert s["ProtectSystem"] == "strict" and s["ReadWritePaths"] == "/var/lib/mimamori"
    assert s["NoNewPrivileges"] == "yes" and s["PrivateTmp"] == "yes"
    groups = set(s.get("SupplementaryGroups", "").split())
    assert ("video" in groups) == (path.stem != "mimamori-hub")


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        import time

        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data))

    def pings_after(self, t: float) -> int:
        return sum(1 for ts, m in self.messages if ts > t and m == "WATCHDOG=1")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def test_watchdog_pings_stop_when_the_main_loop_hangs(
    fleet: Fleet, broker: MosquittoProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    import sdnotify

    notify = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    hang, stuck, release = threading.Event(), threading.Event(), threading.Event()

    class HangingApp(App):
        def step(self, now: float) -> None:
            if hang.is_set():
                stuck.set()
                release.wait(30)  # a stuck camera read or model call

        def close(self) -> None:
            pass

    svc = Service(
        load_config(add_device(fleet, "field-01")),
        app_factory=lambda c, e: HangingApp(),
        notifier=sdnotify.SystemdNotifier(),
        watchdog_s=0.2,
    )
    with closing(notify), RunningService(svc), ExitStack() as unstick:
        unstick.callback(release.set)
        wait_until(lambda: any(m == "READY=1" for _, m in notify.messages), 10, "READY=1")
        start = time.monotonic()
        wait_until(lambda: notify.pings_after(start) >= 3, 5, "watchdog pings")
        assert any(m.startswith("STATUS=") for _, m in notify.messages)
        hang.set()
        assert stuck.wait(5), "the loop never entered the hung step"
        hung_at = time.monotonic() + 0.2  # a ping already on its way may still land
        time.sleep(1.5)  # several ping intervals with the loop stuck
        assert notify.pings_after(hung_at) == 0  # systemd would now restart the service
        hang.clear()
        release.set()
        wait_until(lambda: notify.pings_after(hung_at) >= 1, 5, "pings resume")
    assert any(m == "STOPPING=1" for _, m in notify.messages)
