"""Remove the seed's secrets from a Pi once its first boot has put them in place.

``mimamori provision image`` ships this file inside ``user-data`` (as
``/opt/mimamori/wipe-seed``) and first boot runs it as root with ``python3`` right after the
project's wheel is installed. It is standalone on purpose: only the standard library and PyYAML,
which cloud-init itself depends on.

What it does, under ``--root`` (``/`` on the Pi, a directory tree in tests):

1. Learns the secrets from the seed on the FAT boot partition: the ``write_files`` contents of
   ``user-data`` that ``user-data.redacted`` leaves out (the device's private key) and every
   ``password`` in ``network-config`` (the Wi-Fi passphrase).
2. Deletes cloud-init's copies of the raw user-data in every ``/var/lib/cloud/instances/*/``:
   ``user-data.txt``, ``user-data.txt.i``, ``cloud-config.txt`` and ``obj.pkl`` (the pickled
   datasource, which holds the raw user-data and the network config). Later boots rebuild them
   from the redacted seed; the instance id is unchanged, so nothing runs again.
3. Scrubs any other file under ``/var/lib/cloud`` and ``/run/cloud-init`` and the
   ``/var/log/cloud-init*.log`` files that still holds a secret (cloud-init logs the network
   config it applies, passphrase included): text is redacted in place, anything else deleted.
4. Deletes the wheel (``mimamori-*.whl``) from the boot partition.
5. Last, replaces ``user-data`` and ``network-config`` on the boot partition with their redacted
   copies. While ``user-data.redacted`` is still there the wipe has not finished, so running the
   script again (by hand, or after a power cut) completes it.

Files holding a secret are overwritten with zeros before they are unlinked or replaced, so the
freed FAT clusters do not keep the key. The legitimate copies stay: the key in
``/etc/mimamori/device.key`` and the passphrase in the network manager's own configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

BOOT = "boot/firmware"
CLOUD_DIRS = ("var/lib/cloud", "run/cloud-init")
RAW_USER_DATA = ("user-data.txt", "user-data.txt.i", "cloud-config.txt", "obj.pkl")
REDACTED = b"[redacted]"
MIN_LINE = 16  # lines of a secret at least this long are looked for on their own


def _load(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_bytes())
    except (OSError, yaml.YAMLError):
        return None


def _passwords(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k == "password" and isinstance(v, str) and v]
        for v in node.values():
            found += _passwords(v)
        return found
    if isinstance(node, list):
        return [p for v in node for p in _passwords(v)]
    return []


def secrets(boot: Path) -> list[str]:
    """The secret strings the seed on the boot partition carries."""
    found = _passwords(_load(boot / "network-config"))
    full, redacted = _load(boot / "user-data"), _load(boot / "user-data.redacted")
    if isinstance(full, dict) and isinstance(redacted, dict):
        public = {f.get("path") for f in redacted.get("write_files") or []}
        found += [
            f["content"]
            for f in full.get("write_files") or []
            if f.get("path") not in public and isinstance(f.get("content"), str)
        ]
    return [s for s in found if s.strip()]


def needles(secret: str) -> set[bytes]:
    """The byte strings that betray ``secret``: itself, escaped, and each of its long lines."""
    forms = {secret, secret.strip(), json.dumps(secret)[1:-1], repr(secret)[1:-1]}
    forms |= {line.strip() for line in secret.splitlines() if len(line.strip()) >= MIN_LINE}
    return {f.encode() for f in forms if f}


def _overwrite(path: Path) -> None:
    """Zero the file's bytes where they lie, so the freed blocks do not keep them."""
    with path.open("r+b") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        f.write(b"\0" * size)
        f.flush()
        os.fsync(f.fileno())


def _wipe(path: Path) -> None:
    if path.is_file() and not path.is_symlink():
        _overwrite(path)
        path.unlink()


def _scrub(path: Path, found: set[bytes]) -> None:
    data = path.read_bytes()
    hits = [n for n in found if n in data]
    if not hits:
        return
    try:
        data.decode()
    except UnicodeDecodeError:
        _wipe(path)
        return
    for n in sorted(hits, key=len, reverse=True):
        data = data.replace(n, REDACTED)
    _overwrite(path)
    with path.open("r+b") as f:
        f.write(data)
        f.truncate()
        os.fsync(f.fileno())


def _files(root: Path) -> list[Path]:
    out = []
    for top in CLOUD_DIRS:
        for dirpath, _dirs, names in os.walk(root / top):
            out += [Path(dirpath, n) for n in names]
    out += sorted((root / "var/log").glob("cloud-init*.log*"))
    return [p for p in out if p.is_file() and not p.is_symlink()]


def wipe(root: Path) -> None:
    boot = root / BOOT
    found = {n for s in secrets(boot) for n in needles(s)}
    for instance in sorted((root / "var/lib/cloud/instances").glob("*")):
        if instance.is_dir() and not instance.is_symlink():
            for name in RAW_USER_DATA:
                _wipe(instance / name)
    for path in _files(root):
        _scrub(path, found)
    for wheel in boot.glob("mimamori-*.whl"):
        _wipe(wheel)
    for name in ("network-config", "user-data"):
        redacted = boot / f"{name}.redacted"
        if redacted.is_file():
            if (boot / name).is_file():
                _overwrite(boot / name)
            os.replace(redacted, boot / name)
    os.sync()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--root", type=Path, default=Path("/"), help="filesystem root (default: /)")
    wipe(p.parse_args(argv).root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
