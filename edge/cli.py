"""The `mimamori` command: one entry point, each package adds its own subcommands.

Each command module exposes ``register(subparsers)``, which adds its parsers (a command
with several actions through ``command_group``) and sets ``func`` (called with the parsed
args, returns the exit status). Modules are imported only
when the command line needs them, so `mimamori check-config` never imports the hub.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

#: command name -> module providing register(subparsers)
COMMANDS = {
    "check-config": "mimamori.edge.commands",
    "device": "mimamori.edge.commands",
    "wildlife": "mimamori.edge.wildlife.cli",
    "ridership": "mimamori.edge.ridership.cli",
    "kiosk": "mimamori.kiosk.cli",
    "hub": "mimamori.hub.cli",
    "provision": "mimamori.provisioning.cli",
    "demo": "mimamori.provisioning.demo",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mimamori",
        description="mimamori: field appliances for rural towns, managed over MQTT.",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    seen: set[str] = set()
    for name, module in COMMANDS.items():
        if module in seen or (only and name != only):
            continue
        seen.add(module)
        importlib.import_module(module).register(sub)
    return parser


Actions = argparse._SubParsersAction  # what add_subparsers() returns


def command_group(
    sub: Actions[argparse.ArgumentParser], name: str, *, help: str, description: str
) -> Actions[argparse.ArgumentParser]:
    """Add a command whose work is one of several actions (``mimamori wildlife scan``);
    returns the actions' subparsers. An action is required: the bare command prints usage."""
    parser = sub.add_parser(name, help=help, description=description)
    actions = parser.add_subparsers(dest=f"{name}_command", metavar="ACTION")
    actions.required = True
    return actions


def setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * verbose if verbose else logging.INFO
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("paho").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(first if first in COMMANDS else None)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
