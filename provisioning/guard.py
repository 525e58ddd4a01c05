"""The broker guard: a small Mosquitto plugin (``guard/mimamori_guard.c``) that holds every
device to the contract's limits before the broker stores or queues a message.

Mosquitto 2.0 itself has no per-topic size limit, no way to refuse a retained message on some
topics, and no per-client rate limit, so a device could grow the broker's memory and
persistence without bound while the hub is away. The plugin adds exactly those three rules,
configured from the contract's channel table (``edge.contract.CHANNELS``). It is compiled
once per broker machine from the source shipped here (``gcc`` and Debian's ``mosquitto-dev`` and
``libmosquitto-dev`` headers; ``./run.sh`` installs them) into the fleet's ``broker/`` folder.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from mimamori.edge import contract

SOURCE = Path(__file__).resolve().parent / "guard" / "mimamori_guard.c"
PLUGIN = "mimamori_guard.so"
HEADERS = (Path("/usr/include/mosquitto_broker.h"), Path("/usr/include/mosquitto.h"))

#: sustained bytes per second a device may send (live views not counted): ~2.8 GB a day,
#: hundreds of times what a busy camera or bus sends
RATE_BYTES = 32 * 1024
#: a burst large enough for a device to drain a full outbox (64 MB by default) after an outage
BURST_BYTES = 96 * 1024 * 1024


class GuardBuildError(RuntimeError):
    """The plugin could not be compiled (no compiler or no Mosquitto headers)."""


def build(broker_dir: Path) -> Path:
    """Compile the plugin into ``broker_dir`` unless an up-to-date build is there."""
    out = broker_dir / PLUGIN
    if out.exists() and out.stat().st_mtime >= SOURCE.stat().st_mtime:
        return out
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or not all(h.exists() for h in HEADERS):
        raise GuardBuildError(
            "building the broker guard needs a C compiler and Mosquitto's plugin headers: "
            "`sudo apt-get install gcc mosquitto-dev libmosquitto-dev` (./run.sh does this for you)"
        )
    tmp = out.with_name(out.name + ".tmp")
    done = subprocess.run(
        [cc, "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared", str(SOURCE), "-o", str(tmp)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise GuardBuildError(f"compiling {SOURCE.name} failed:\n{done.stderr.strip()}")
    tmp.replace(out)
    return out


def conf_lines(plugin: Path, exempt: list[str]) -> str:
    """The mosquitto.conf lines that load the guard with the contract's limits."""
    limits = "".join(
        f"plugin_opt_limit_{c} {contract.device_limit(c)}\n" for c in contract.device_channels()
    )
    unbudgeted = sorted({c.channel for c in contract.CHANNELS if not c.budgeted})
    return (
        f"plugin {plugin}\n"
        f"plugin_opt_root {contract.ROOT}\n"
        f"plugin_opt_exempt {' '.join(exempt)}\n"
        f"{limits}"
        f"plugin_opt_retain {' '.join(contract.retained_channels())}\n"
        f"plugin_opt_unbudgeted {' '.join(unbudgeted)}\n"
        f"plugin_opt_rate_bytes {RATE_BYTES}\n"
        f"plugin_opt_burst_bytes {BURST_BYTES}\n"
    )
