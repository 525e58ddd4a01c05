"""`mimamori provision`: create a fleet, issue and revoke devices, bridge a town to its
prefecture, seed Pi images, sign models."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from mimamori.edge.config import EXIT_BAD_CONFIG
from mimamori.provisioning.fleet import Fleet, FleetError

Handler = Callable[[argparse.Namespace], int]


def reports_errors(handler: Handler) -> Handler:
    """Print a fleet, file or value error as one `error: ...` line and exit 78."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (FleetError, OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_BAD_CONFIG

    return run


def fleet_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fleet", type=Path, default=Path("."), help="fleet directory (default: .)")


def position_options(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument(
        "--lat", type=float, required=required, help="latitude, degrees north (e.g. 36.2)"
    )
    p.add_argument(
        "--lon", type=float, required=required, help="longitude, degrees east (e.g. 137.25)"
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "provision",
        help="create a fleet, issue and revoke devices",
        description="Fleet provisioning. A fleet directory holds the CA, the broker config, the "
        "hub's and every device's credentials: keep it on the admin machine.",
    )
    psub = p.add_subparsers(dest="provision_command", metavar="ACTION")
    psub.required = True

    init = psub.add_parser(
        "init",
        help="create a new fleet directory",
        description="Create FLEET: a certificate authority (its key never leaves FLEET), the "
        "broker's TLS certificate and Mosquitto config (anonymous access off, certificate "
        "identities, pattern ACL), the hub's certificate and the model-signing key.",
    )
    init.add_argument("dir", type=Path, help="fleet directory to create")
    init.add_argument(
        "--broker-host",
        default="localhost",
        help="broker address as the devices reach it (default: %(default)s)",
    )
    init.add_argument("--port", type=int, default=1883, help="broker port (default: %(default)s)")
    init.add_argument(
        "--bind", default="127.0.0.1", help="address the broker listens on (default: %(default)s)"
    )
    init.set_defaults(func=_init)

    dev = psub.add_parser(
        "device",
        help="issue a device's certificate and config",
        description="Issue NAME's key and certificate (CN = NAME), write "
        "FLEET/devices/NAME/device.toml and record it in the inventory. The broker accepts it "
        "at once: no reload is needed.",
    )
    dev.add_argument("name", help="device id, e.g. field-03 (a-z, 0-9, '-')")
    dev.add_argument("--role", required=True, choices=["wildlife", "ridership", "kiosk"])
    dev.add_argument("--location", default="", help="where it stands, shown at the hub")
    position_options(dev)
    fleet_option(dev)
    dev.set_defaults(func=_device)

    place = psub.add_parser(
        "place",
        help="record where a device stands",
        description="Record NAME's position (WGS 84 degrees, as a phone map shows them): the "
        "hub's alerts page draws its cameras on a map from these. Nothing changes on the device.",
    )
    place.add_argument("name", help="device id")
    position_options(place, required=True)
    fleet_option(place)
    place.set_defaults(func=_place)

    rev = psub.add_parser(
        "revoke",
        help="refuse a device at the broker",
        description="Add NAME's certificate to the CRL and withdraw its ACL rights; reload the "
        "broker to apply (systemctl reload mosquitto): other sessions stay connected.",
    )
    rev.add_argument("name")
    fleet_option(rev)
    rev.set_defaults(func=_revoke)

    img = psub.add_parser(
        "image",
        help="write a device's cloud-init seed into a Raspberry Pi OS image",
        description="Write user-data, network-config, meta-data and this project's wheel for "
        "NAME into the FAT boot partition of a Raspberry Pi OS .img file, with mtools: no root, "
        "no loop mount. The seed carries every wheel the Pi needs (Raspberry Pi OS 64-bit, "
        "Python 3.11, aarch64) and their sha256; first boot installs them with pip "
        "--require-hashes --no-index, never a name from a package index; then it removes the "
        "private key and the Wi-Fi passphrase from the boot partition and from cloud-init's "
        "state and logs.",
    )
    img.add_argument("--device", required=True, help="device id from the inventory")
    img.add_argument("--image", required=True, type=Path, help="Raspberry Pi OS .img file")
    fleet_option(img)
    img.add_argument("--wifi-ssid", help="Wi-Fi network (default: wired DHCP)")
    img.add_argument(
        "--wifi-password-file",
        type=Path,
        help="file holding the Wi-Fi passphrase (kept out of shell history)",
    )
    img.add_argument(
        "--package",
        metavar="WHEEL",
        help="a prebuilt mimamori .whl to ship in the seed (default: build one from this "
        "checkout with pip wheel); a package name is refused",
    )
    img.add_argument(
        "--wheelhouse",
        type=Path,
        metavar="DIR",
        help="the Pi's wheels and their requirements.txt, built before (default: download "
        "them now into a scratch folder with pip download for aarch64, through pip's cache)",
    )
    img.set_defaults(func=_image)

    bridge = psub.add_parser(
        "bridge",
        help="bridge this town's broker to the prefecture broker",
        description="Forward this town's alarms and ridership summaries (and nothing else) to "
        "the prefecture broker with Mosquitto's bridge, TLS both ways. The town's bridge "
        "certificate is issued by the prefecture CA in PREFECTURE (created with the "
        "prefecture broker's certificate and config if absent). Writes "
        "FLEET/broker/conf.d/bridge.conf; restart the town broker to apply.",
    )
    bridge.add_argument("--town", required=True, help="town name (a-z, 0-9, '-')")
    bridge.add_argument("--prefecture-host", required=True, help="prefecture broker address")
    bridge.add_argument(
        "--prefecture-port", type=int, default=8883, help="its port (default: %(default)s)"
    )
    bridge.add_argument(
        "--prefecture",
        type=Path,
        default=Path("prefecture"),
        help="the prefecture's directory: its CA and broker config (default: %(default)s)",
    )
    fleet_option(bridge)
    bridge.set_defaults(func=_bridge)

    house = psub.add_parser(
        "wheelhouse",
        help="download the wheels a Pi needs, with their sha256",
        description="Write into DIR this project's wheel, every wheel of its runtime "
        "dependencies for Raspberry Pi OS 64-bit (Python 3.11, aarch64; pip download "
        "--only-binary, through pip's cache) and requirements.txt pinning each by sha256, for "
        "`provision image --wheelhouse DIR`. A dependency without such a wheel fails here, "
        "named.",
    )
    house.add_argument("dir", type=Path, help="folder to fill")
    house.add_argument(
        "--package", metavar="WHEEL", help="a prebuilt mimamori .whl (default: build one)"
    )
    house.set_defaults(func=_wheelhouse)

    sign = psub.add_parser(
        "sign-model",
        help="sign a model file for a model-update job",
        description="Write MODEL.manifest.json: name, version, sha256, size and expiry, signed "
        "with the fleet's Ed25519 model-signing key. Then `mimamori hub push-model`.",
    )
    sign.add_argument("model", type=Path, help="the .onnx file")
    sign.add_argument("--name", required=True, help="model slot, e.g. monkey")
    sign.add_argument("--version", required=True, type=int, help="must exceed the installed one")
    sign.add_argument("--min-version", type=int, default=0, help="rollback floor (default 0)")
    sign.add_argument(
        "--valid-days",
        type=int,
        default=30,
        help="the manifest expires after this many days (default: %(default)s)",
    )
    fleet_option(sign)
    sign.set_defaults(func=_sign_model)


@reports_errors
def _init(args: argparse.Namespace) -> int:
    fleet = Fleet.init(args.dir, broker_host=args.broker_host, port=args.port, bind=args.bind)
    print(f"fleet created in {fleet.root}")
    print(f"  broker config: {fleet.broker_conf}")
    print(f"  hub config:    {fleet.hub_config}")
    return 0


@reports_errors
def _device(args: argparse.Namespace) -> int:
    path = Fleet.open(args.fleet).add_device(
        args.name, args.role, location=args.location, lat=args.lat, lon=args.lon
    )
    print(f"device {args.name} issued: {path}")
    return 0


@reports_errors
def _place(args: argparse.Namespace) -> int:
    Fleet.open(args.fleet).place(args.name, args.lat, args.lon)
    print(f"device {args.name} placed at {args.lat}, {args.lon}")
    return 0


@reports_errors
def _revoke(args: argparse.Namespace) -> int:
    live = Fleet.open(args.fleet).revoke(args.name)
    print(
        f"device {args.name} revoked: "
        + (
            "the broker dropped its session; reload it to apply the CRL to new handshakes"
            if live
            else "no broker answered; it applies the revocation when it starts"
        )
    )
    return 0


@reports_errors
def _image(args: argparse.Namespace) -> int:
    import tempfile

    from mimamori.provisioning import wheelhouse
    from mimamori.provisioning.image import (
        Network,
        boot_partition,
        build_seed,
        requirements,
        seed_wheel,
        write_files,
    )

    password = args.wifi_password_file.read_text().strip() if args.wifi_password_file else None
    fleet = Fleet.open(args.fleet)
    boot_partition(args.image)  # a wrong file is refused before the wheel is built
    with tempfile.TemporaryDirectory() as tmp:
        wheel = seed_wheel(args.package, Path(tmp) / "own")
        house = args.wheelhouse or wheelhouse.build(
            Path(tmp) / "wheels", wheel, requirements(wheel)
        )
        network = Network(args.wifi_ssid, password)
        seed = build_seed(fleet, args.device, network, wheel=wheel, wheelhouse=house)
    part = write_files(args.image, seed)
    print(
        f"wrote {', '.join(seed)} into partition {part.index} of {args.image} "
        f"(offset {part.start} bytes)"
    )
    return 0


@reports_errors
def _bridge(args: argparse.Namespace) -> int:
    from mimamori.provisioning.bridge import Prefecture, bridge_town

    fleet = Fleet.open(args.fleet)
    pref = Prefecture.open_or_create(args.prefecture, args.prefecture_host, args.prefecture_port)
    conf = bridge_town(
        fleet.broker_conf.parent, pref, args.town, args.prefecture_host, args.prefecture_port
    )
    print(f"town {args.town} bridged to {args.prefecture_host}:{args.prefecture_port}: {conf}")
    print(f"  prefecture broker config: {pref.conf}")
    return 0


@reports_errors
def _wheelhouse(args: argparse.Namespace) -> int:
    import tempfile

    from mimamori.provisioning import wheelhouse
    from mimamori.provisioning.image import requirements, seed_wheel

    with tempfile.TemporaryDirectory() as tmp:
        wheel = seed_wheel(args.package, Path(tmp))
        wheelhouse.build(args.dir, wheel, requirements(wheel))
    print(f"wheelhouse for Raspberry Pi OS 64-bit in {args.dir}")
    return 0


@reports_errors
def _sign_model(args: argparse.Namespace) -> int:
    from mimamori.provisioning.signing import sign_model

    signed = sign_model(
        Fleet.open(args.fleet).signing_key,
        args.model.read_bytes(),
        name=args.name,
        version=args.version,
        min_version=args.min_version,
        valid_for=timedelta(days=args.valid_days),
    )
    out = args.model.with_name(args.model.name + ".manifest.json")
    out.write_text(signed.model_dump_json(indent=2))
    print(f"signed {args.name} v{args.version} (sha256 {signed.manifest.sha256[:12]}…): {out}")
    return 0
