"""Device commands: `mimamori check-config` and `mimamori device run`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mimamori.edge import preflight
from mimamori.edge.config import EXIT_BAD_CONFIG, load_config
from mimamori.edge.errors import ConfigError, OutboxError

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "check-config",
        help="validate a device config file",
        description="Validate a device TOML file without starting anything: every value, and "
        "every file it names (certificate readable and signed by the CA, key matching it, not "
        "expired; signing key, model, camera files). Prints one line per problem as "
        "`section.key: what is wrong` and exits 78 if any.",
    )
    p.add_argument("config", type=Path, help="device TOML file, e.g. /etc/mimamori/device.toml")
    p.set_defaults(func=check_config)

    d = sub.add_parser(
        "device",
        help="run the device service",
        description="Device service: the MQTT link to the hub, the store-and-forward outbox "
        "and the app of the device's role.",
    )
    dsub = d.add_subparsers(dest="device_command", metavar="ACTION")
    dsub.required = True
    run = dsub.add_parser(
        "run",
        help="run the device service in the foreground (what the systemd unit starts)",
        description=f"Run until SIGTERM. Exits {EXIT_BAD_CONFIG} on a bad config so systemd does "
        "not restart-loop on it.",
    )
    run.add_argument("config", type=Path, help="device TOML file")
    run.set_defaults(func=run_device)


def check_config(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
        preflight.check(cfg, str(args.config))
    except ConfigError as e:
        print(f"{e.source}: invalid", file=sys.stderr)
        for problem in e.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    print(f"{args.config}: ok (device {cfg.device.id}, role {cfg.device.role})")
    return 0


def run_device(args: argparse.Namespace) -> int:
    from mimamori.edge.service import Service, install_signal_handlers

    try:
        cfg = load_config(args.config)
        preflight.check(cfg, str(args.config))
    except ConfigError as e:
        log.error("bad config %s", e)
        return EXIT_BAD_CONFIG
    try:
        service = Service(cfg)
    except OutboxError as e:
        log.error("%s", e)
        return 1
    install_signal_handlers(service)
    service.run()
    return 0
