"""A voice call that only works through the town's TURN server.

The whole counter runs as in ``test_browser.py`` (broker, hub, kiosk, in this network
namespace), but each browser runs in a network namespace of its own: the resident's screen in
one, the staff console in the other. Each namespace has one veth to this namespace and no
other route, so the two browsers cannot reach each other; coturn (Debian's ``turnserver``)
listens on both veths and relays from a third address neither namespace can reach, so the
only path that works is relay to relay. With the TURN entries the call connects over that
path (WebRTC stats: the selected candidate pair is ``relay`` on both sides, audio arrives
both ways), once with a password per side and once with credentials each side mints from
coturn's shared secret; without the entries the same call never connects, which proves
there is no other way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import tomllib
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from gpiozero.pins.mock import MockFactory
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from mimamori.hub.cli import Hub, build
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import free_port, free_ports
from tests.kiosk.conftest import idle_at_hub, staff_account, start_kiosk
from tests.kiosk.test_browser import CHROMIUM, FAKE_MEDIA, staff_page
from tests.mqtt_probe import wait_until

# one worker takes the whole module (run.sh: --dist loadgroup): one pair of namespaces and
# coturns for all three calls
pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.xdist_group("turn")]

TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"
USERS = {"kiosk-01": "kiosk-pass", "suzuki": "staff-pass"}
SECRET = "town-turn-secret"


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (ip netns)"
    if not shutil.which("ip") or subprocess.run(["ip", "netns", "list"]).returncode:
        return "needs `ip netns` (iproute2)"
    if not Path(TURNSERVER).exists():
        return "needs coturn's turnserver (./run.sh test installs it)"
    if not CHROMIUM.exists():
        return f"needs {CHROMIUM}"
    return None


@dataclass(frozen=True)
class Side:
    """A network namespace joined to this one by a veth: ``gw`` here, ``addr`` there."""

    ns: str
    gw: str
    addr: str


@dataclass(frozen=True)
class Net:
    kiosk: Side
    staff: Side
    #: coturn by auth: "password" (lt-cred-mech, a user per side) and "secret"
    #: (use-auth-secret, credentials minted from SECRET)
    ports: dict[str, int]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    """Two namespaces without a route between them, coturn between them."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    tag = f"{os.getpid() % 10000}"
    subnet = 100 + os.getpid() % 100  # 10.SUBNET.{1,2,3}.x: distinct per test process
    kiosk = Side(f"mmk-k{tag}", f"10.{subnet}.1.1", f"10.{subnet}.1.2")
    staff = Side(f"mmk-s{tag}", f"10.{subnet}.2.1", f"10.{subnet}.2.2")
    relay_ip, relay_link = f"10.{subnet}.3.1", f"mmk-r{tag}"
    with ExitStack() as undo:
        for side, link in ((kiosk, f"mmk-vk{tag}"), (staff, f"mmk-vs{tag}")):
            ip("netns", "add", side.ns)
            undo.callback(ip, "netns", "del", side.ns)
            ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", side.ns)
            undo.callback(subprocess.run, ["ip", "link", "del", link], capture_output=True)
            ip("addr", "add", f"{side.gw}/24", "dev", link)
            ip("link", "set", link, "up")
            ip("-n", side.ns, "addr", "add", f"{side.addr}/24", "dev", "eth0")
            ip("-n", side.ns, "link", "set", "eth0", "up")
            ip("-n", side.ns, "link", "set", "lo", "up")
        # the relay address: here, but routed from neither namespace
        ip("link", "add", relay_link, "type", "veth", "peer", "name", f"{relay_link}p")
        undo.callback(subprocess.run, ["ip", "link", "del", relay_link], capture_output=True)
        ip("link", "set", f"{relay_link}p", "up")
        ip("addr", "add", f"{relay_ip}/32", "dev", relay_link)
        ip("link", "set", relay_link, "up")
        auth = {
            "password": ["--lt-cred-mech", *(f"--user={u}:{p}" for u, p in USERS.items())],
            "secret": ["--use-auth-secret", f"--static-auth-secret={SECRET}"],
        }
        ports = {}
        # coturn also listens on an alternative port, by default its port + 1: with ports
        # handed out in order that would be the other coturn's, so each gets one of its own
        chosen = free_ports(2 * len(auth))
        for n, (mode, args) in enumerate(auth.items()):
            ports[mode], alt = chosen[2 * n], chosen[2 * n + 1]
            turn = subprocess.Popen(
                [
                    TURNSERVER,
                    "-n",  # no config file: everything is here
                    f"--listening-ip={kiosk.gw}",
                    f"--listening-ip={staff.gw}",
                    f"--listening-port={ports[mode]}",
                    f"--alt-listening-port={alt}",
                    f"--relay-ip={relay_ip}",
                    f"--min-port={49160 + 200 * n}",
                    f"--max-port={49359 + 200 * n}",
                    "--realm=mimamori.test",
                    *args,
                    "--fingerprint",
                    "--no-tls",
                    "--no-dtls",
                    "--no-cli",
                    "--no-tcp-relay",
                    "--log-file=stdout",
                    "--simple-log",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
            undo.callback(turn.wait, 5)
            undo.callback(turn.terminate)
            time.sleep(0.5)
            assert turn.poll() is None, f"turnserver ({mode}) exited"
        yield Net(kiosk, staff, ports)


@pytest.fixture(scope="module")
def playwright(net: Net) -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


def browser_in(p: Playwright, ns: str, tmp: Path, origin: str, stack: ExitStack) -> Browser:
    """Headless Chromium inside network namespace ``ns`` (fake camera and microphone); the
    page at ``origin`` is plain http on a veth, so it is declared a secure origin."""
    wrapper = tmp / f"chromium-{ns}"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {ns} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    browser = p.chromium.launch(
        executable_path=str(wrapper),
        args=[*FAKE_MEDIA, f"--unsafely-treat-insecure-origin-as-secure={origin}"],
    )
    stack.callback(browser.close)
    return browser


def start_hub(fleet: Fleet, net: Net, ice_servers: list[dict[str, Any]]) -> Hub:
    """The hub's staff pages on the staff side's veth, with these ICE servers."""
    path = fleet.hub_config
    toml = tomllib.loads(path.read_text())
    toml["web"].update({"bind": net.staff.gw, "secure_cookies": False})
    toml["counter"] = {"ice_servers": ice_servers}
    path.write_text(tomli_w.dumps(toml))
    hub = build(path).start(web=True)
    assert hub.ingest.wait_connected(10) and hub.relay.wait_connected(10)
    return hub


def stats(page: Page) -> dict[str, Any]:
    return dict(page.evaluate("async () => await window.voiceStats()"))


def ice_servers(net: Net, side: Side, user: str, auth: str | None, tmp: Path) -> list[Any]:
    """One side's entry for coturn (by the address that side reaches it at), or none."""
    if auth is None:
        return []
    entry: dict[str, Any] = {"urls": f"turn:{side.gw}:{net.ports[auth]}"}
    if auth == "password":
        entry.update(username=user, credential=USERS[user])
    else:
        secret = tmp / "turn-secret"
        secret.write_text(SECRET + "\n")
        entry["secret_file"] = str(secret)
    return [entry]


def call(
    p: Playwright, fleet: Fleet, pins: MockFactory, net: Net, tmp_path: Path, auth: str | None
) -> tuple[Page, Page, ExitStack]:
    """Ring from the resident's screen and answer in the staff console, each browser in its
    own namespace; with ``auth``, both sides list the coturn of that kind."""
    stack = ExitStack()
    hub_ice = ice_servers(net, net.staff, "suzuki", auth, tmp_path)
    kiosk_ice = ice_servers(net, net.kiosk, "kiosk-01", auth, tmp_path)
    try:
        hub = start_hub(fleet, net, hub_ice)
        stack.callback(hub.stop)
        kiosk = start_kiosk(
            fleet, pins, screen_host=net.kiosk.gw, screen_port=free_port(), ice_servers=kiosk_ice
        )
        stack.callback(kiosk.stop)
        wait_until(lambda: idle_at_hub(hub, kiosk.dev), 10, "kiosk's idle state at the hub")
        staff_account(hub, "suzuki")
        web = f"http://{net.staff.gw}:{hub.cfg.web.port}"
        console = staff_page(browser_in(p, net.staff.ns, tmp_path, web, stack), hub, "suzuki")
        origin = kiosk.screen_url.rstrip("/")
        screen = browser_in(p, net.kiosk.ns, tmp_path, origin, stack).new_page()
        screen.goto(kiosk.screen_url)
        screen.click("#call")
        console.wait_for_selector(f"#queue li[data-call] >> text={kiosk.dev}", timeout=10000)
        console.click("#queue li button")
        screen.wait_for_selector("#camera:visible", timeout=10000)
        return screen, console, stack
    except BaseException:
        stack.close()
        raise


@pytest.mark.parametrize("auth", ["password", "secret"])
def test_voice_connects_through_the_towns_turn_server_relay_to_relay(
    auth: str,
    playwright: Playwright,
    net: Net,
    fleet: Fleet,
    broker: MosquittoProcess,
    pins: MockFactory,
    tmp_path: Path,
) -> None:
    screen, console, stack = call(playwright, fleet, pins, net, tmp_path, auth)
    with stack:
        try:
            wait_until(
                lambda: stats(screen)["audioBytes"] > 0 and stats(console)["audioBytes"] > 0,
                30,
                "audio both ways",
            )
        except AssertionError:
            raise AssertionError(
                f"no audio: staff {stats(console)}, kiosk {stats(screen)}"
            ) from None
        for side in (screen, console):
            s = stats(side)
            assert s["connected"] and s["route"] == ["relay", "relay"], s


def test_without_the_turn_entries_the_same_call_never_connects(
    playwright: Playwright,
    net: Net,
    fleet: Fleet,
    broker: MosquittoProcess,
    pins: MockFactory,
    tmp_path: Path,
) -> None:
    """Offer and answer go through the hub as before, but no candidate pair works: the
    namespaces really have no route between them."""
    screen, console, stack = call(playwright, fleet, pins, net, tmp_path, None)
    with stack:
        wait_until(lambda: stats(console).get("signaling") == "stable", 20, "answer applied")
        wait_until(lambda: stats(screen).get("signaling") == "stable", 20, "answer at the kiosk")
        time.sleep(15)  # through TURN the same call connected within a few seconds
        for side in (screen, console):
            s = stats(side)
            # audioBytes and packets count from the start: not one audio packet ever arrived
            assert not s["connected"] and s["audioBytes"] == 0 and not s.get("packets"), s
            # Chromium may report its unanswered checks as "disconnected" before "failed"
            assert s["ice"] in ("new", "checking", "disconnected", "failed"), s
