"""`mimamori demo`: a whole fleet on one machine.

Provisions a local fleet (once, in ``var/demo`` by default), starts Mosquitto with the
generated config, the hub, and one simulated device per role, then prints the URL to open.
Every piece is the real program started as its own process; Ctrl-C stops them all.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import tomli_w

from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.mosquitto import BrokerNotFound, wait_port

log = logging.getLogger(__name__)

DEMO_ADMIN = "admin"
#: sample photographs shipped beside the repository (see its README for provenance)
MEDIA = Path(__file__).resolve().parent.parent.parent / "shared" / "media"
VTEST = MEDIA / "opencv" / "vtest.avi"
BUS_LINE = (320.0, 330.0, 320.0, 120.0)  # the door line on the walking clip
BUS_STOP_S = 20.0  # the demo bus stands 18 s at each stop
#: what each demo device runs on the sample media, and the files that needs; without them
#: the device runs a stand-in that only sends notices
NEEDS = {
    "field-01": (
        "the monkey watch on sample photographs",
        ["camera-trap/sample-dzf-01.jpg", "monkeys/images/*.jpg"],
    ),
    "bus-01": ("the bus counter on the walking clip", ["opencv/vtest.avi"]),
    "kiosk-01": (
        "the counter kiosk on a sample face and page",
        ["opencv/messi5.jpg", "opencv/sudoku.png"],
    ),
}
DEMO_DEVICES = [
    ("field-01", "wildlife", "North paddy, Kamiyama"),
    ("bus-01", "ridership", "Route 3 bus, front door"),
    ("kiosk-01", "kiosk", "Shimo branch office"),
]
#: where the demo's field camera stands (the alerts page draws it on the camera map)
DEMO_POSITIONS = {"field-01": (36.2071, 137.2496)}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="run broker, hub and simulated devices locally",
        description="Start a local Mosquitto, the hub and simulated devices (one per role), "
        "all on loopback, and print the URL of the fleet page. Ctrl-C stops everything.",
    )
    p.add_argument(
        "--dir",
        type=Path,
        default=Path("var/demo"),
        help="where the demo fleet lives (default: %(default)s)",
    )
    p.add_argument("--port", type=int, default=18830, help="broker port (default: %(default)s)")
    p.add_argument("--web-port", type=int, default=8080, help="hub web port (default: %(default)s)")
    p.add_argument(
        "--screen-port",
        type=int,
        default=8090,
        help="the kiosk's resident screen (default: %(default)s)",
    )
    p.add_argument(
        "--media",
        type=Path,
        default=MEDIA,
        help="the sample media folder (default: %(default)s); without it the devices send "
        "simulated notices only",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=0,
        help="stop after this many seconds (default: run until Ctrl-C)",
    )
    p.set_defaults(func=run)


def missing(media: Path, name: str) -> list[str]:
    """The sample files device ``name`` needs that are not in ``media``."""
    return [f for f in NEEDS[name][1] if not any(media.glob(f))]


def describe(media: Path) -> list[str]:
    """One line per demo device: what it runs, or what it misses."""
    lines = []
    for name, _, _ in DEMO_DEVICES:
        gone = missing(media, name)
        what = NEEDS[name][0]
        lines.append(
            f"{name:<9} {what}"
            if not gone
            else f"{name:<9} simulated notices only: {what} needs {', '.join(gone)}"
        )
    return lines


def demo_bus(folder: Path, media: Path) -> dict[str, object]:
    """A made-up route (GTFS) driven stop by stop (NMEA), counting the people walking in the
    OpenCV sample clip. The door opens at each stop when the clip shows what a real trip
    looks like: people get on in the first half of the trip and off in the second, and the
    bus ends its trip empty (``plan_doors``, on the counter's own crossings of the clip)."""
    from mimamori.edge.ridership.count import count_video
    from mimamori.edge.ridership.gtfs import load_feed
    from mimamori.edge.ridership.sim import demo_gps_log, demo_trips, plan_doors, write_feed

    video = media / "opencv" / "vtest.avi"
    feed = load_feed(write_feed(folder / "gtfs"))
    gps = demo_gps_log(feed, folder / "bus.nmea", stop_s=BUS_STOP_S)
    stops = sum(len(t.stop_times) for t in demo_trips(feed))
    clip = count_video(video, BUS_LINE)
    crossings = [(c.frame, c.dir) for c in clip.crossings]
    plan = plan_doors(crossings, clip.frames, stops, stop_s=BUS_STOP_S)
    return {
        "vehicle": "3号車",
        "gtfs": str(folder / "gtfs"),
        "gps": str(gps),
        "tail_s": 0.5,
        "doors": [
            {
                "name": "front",
                "source": str(video),
                "fps": plan.fps,
                "loop": True,
                "line": list(BUS_LINE),
                "schedule": [list(w) for w in plan.windows],
                "schedule_period_s": plan.period_s,
            }
        ],
    }


def demo_field(folder: Path, media: Path) -> Path | None:
    """A looping field sequence from the shared sample media, if it is there."""
    if missing(media, "field-01"):
        return None
    empty = media / "camera-trap" / "sample-dzf-01.jpg"
    monkeys = sorted((media / "monkeys" / "images").glob("*.jpg"))
    troops = [monkeys[i : i + 6] for i in range(0, len(monkeys), 6)]  # each pass a new troop
    sequence = [empty] * 10
    for troop in troops:
        sequence += troop + [empty] * 40
    folder.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(sequence):
        shutil.copyfile(src, folder / f"{i:03d}.jpg")
    return folder


def demo_kiosk(screen_port: int, media: Path) -> dict[str, object] | None:
    """The counter kiosk on the sample pictures, open around the clock (it is a demo)."""
    if missing(media, "kiosk-01"):
        return None
    return {
        "office": "下分室 Shimo branch",
        "phone": "0120-000-000",
        "face_source": str(media / "opencv" / "messi5.jpg"),
        "doc_source": str(media / "opencv" / "sudoku.png"),
        "days": [0, 1, 2, 3, 4, 5, 6],
        "opens": "00:00",
        "closes": "24:00",
        "screen_port": screen_port,
    }


def provision(
    root: Path, port: int, web_port: int, screen_port: int = 8090, media: Path = MEDIA
) -> Fleet:
    plan = root / "demo-plan.txt"  # what the devices were set up to run, from which media
    wanted = "\n".join([str(media), *describe(media)])
    if (root / "fleet.toml").exists():
        fleet = Fleet.open(root)
        hub_web = tomllib.loads(fleet.hub_config.read_text())["web"]["port"]
        kiosk = tomllib.loads(fleet.device_config("kiosk-01").read_text()).get("kiosk", {})
        if (
            fleet.settings["broker"]["port"] == port
            and "hub_port" in fleet.settings["broker"]  # made before the hub listener
            and hub_web == web_port
            and kiosk.get("screen_port", screen_port) == screen_port
            and plan.is_file()
            and plan.read_text() == wanted
        ):
            return fleet
        log.info("demo fleet in %s was set up otherwise (ports or media): making a new one", root)
        shutil.rmtree(root)
    fleet = Fleet.init(
        root,
        broker_host="127.0.0.1",
        port=port,
        web_port=web_port,
        broker_user="root" if os.geteuid() == 0 else getpass.getuser(),
    )
    for name, role, location in DEMO_DEVICES:
        extra: dict[str, object] = {"telemetry": {"interval_s": 10}}
        field = demo_field(fleet.root / "media" / name, media) if role == "wildlife" else None
        if field is not None:  # replay real photographs: a troop comes by every minute or so
            extra["wildlife"] = {
                "source": str(field),
                "fps": 1,
                "loop": True,
                "quiet_s": 5,
                "cooldown_s": 20,
                "motion": False,
            }
        elif role == "ridership" and not missing(media, name):  # real people, made-up route
            extra["ridership"] = demo_bus(fleet.root / "media" / name, media)
        elif role == "kiosk" and (kiosk := demo_kiosk(screen_port, media)) is not None:
            extra["kiosk"] = kiosk
        else:
            extra["sim"] = {"event_interval_s": 20}
        lat, lon = DEMO_POSITIONS.get(name, (None, None))
        fleet.add_device(name, role, location=location, lat=lat, lon=lon, extra=extra)
    feed = fleet.root / "media" / "bus-01" / "gtfs"
    if feed.is_dir():  # the hub names the demo route's stops, routes and directions from it
        hub = tomllib.loads(fleet.hub_config.read_text())
        hub["ridership"] = {"gtfs": str(feed)}
        fleet.hub_config.write_text(tomli_w.dumps(hub))
    plan.write_text(wanted)
    password = fleet.root / "hub" / "demo-admin-password"
    password.touch(mode=0o600)
    password.write_text(secrets.token_urlsafe(12) + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mimamori.edge.cli",
            "hub",
            "add-user",
            DEMO_ADMIN,
            "--role",
            "admin",
            "--config",
            str(fleet.hub_config),
            "--password-file",
            str(password),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return fleet


def run(args: argparse.Namespace) -> int:
    fleet = provision(args.dir, args.port, args.web_port, args.screen_port, args.media)
    logs = fleet.root / "logs"
    logs.mkdir(exist_ok=True)
    try:
        broker = fleet.broker_process(log_file=logs / "mosquitto.log")
        broker.start()
    except BrokerNotFound as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    procs: dict[str, subprocess.Popen[bytes]] = {}
    exe = [sys.executable, "-m", "mimamori.edge.cli"]

    def spawn(name: str, *argv: str) -> None:
        with (logs / f"{name}.log").open("ab") as out:
            procs[name] = subprocess.Popen([*exe, *argv], stdout=out, stderr=subprocess.STDOUT)

    stopping = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        spawn("hub", "hub", "--config", str(fleet.hub_config))
        web_port = args.web_port
        wait_port("127.0.0.1", web_port, timeout=20)
        for name, _, _ in DEMO_DEVICES:
            spawn(name, "device", "run", str(fleet.device_config(name)))
        password = (fleet.root / "hub" / "demo-admin-password").read_text().strip()
        print(f"\nmimamori demo is running: open http://127.0.0.1:{web_port}/")
        print(f"  sign in as {DEMO_ADMIN} / {password}\n")
        if "kiosk" in tomllib.loads(fleet.device_config("kiosk-01").read_text()):
            print(f"  resident screen: http://127.0.0.1:{args.screen_port}/  (press the button,")
            print("                   then answer on the hub's Counter page)")
        print("  devices:")
        for line in describe(args.media):
            print(f"    {line}")
        if any(missing(args.media, n) for n, _, _ in DEMO_DEVICES):
            print(
                f"  warning: sample media missing in {args.media} (see README, 'Two commands'); "
                "the broker, the hub and its pages run, the devices above marked 'simulated' "
                "only send notices",
                file=sys.stderr,
            )
        print(f"  fleet directory: {fleet.root}")
        print(f"  logs:            {logs}/")
        print("\nPress Ctrl-C to stop.", flush=True)
        deadline = time.monotonic() + args.duration if args.duration else None
        while not stopping and (deadline is None or time.monotonic() < deadline):
            for name, proc in procs.items():
                if proc.poll() is not None:
                    log_file = logs / f"{name}.log"
                    print(
                        f"error: {name} exited with status {proc.returncode}; see {log_file}",
                        file=sys.stderr,
                    )
                    return 1
            time.sleep(0.5)
        return 0
    except TimeoutError as e:
        print(f"error: the hub did not start ({e}); see {logs / 'hub.log'}", file=sys.stderr)
        return 1
    finally:
        print("stopping...", file=sys.stderr)
        for proc in reversed(list(procs.values())):
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        broker.stop()
