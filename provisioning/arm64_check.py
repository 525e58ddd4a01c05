"""Install the project on a Raspberry Pi OS-like arm64 root under qemu-user, and run it.

Builds (once, then reuses) a minimal Debian bookworm arm64 root with ``debootstrap`` — the
Python 3.11 of Raspberry Pi OS 64-bit — and runs it through ``qemu-aarch64-static`` and the
kernel's binfmt_misc. Into it go the wheelhouse the image seed would carry
(``provisioning.wheelhouse``), installed exactly as first boot does (``pip install
--require-hashes --no-index --find-links``), a freshly issued wildlife device with its
config, the models and a sample image. Then ``mimamori check-config`` and ``mimamori wildlife
scan`` run on the emulated aarch64 CPU.

Needs root (chroot, mounting /proc), ``debootstrap``, ``qemu-user-static`` and a binfmt_misc
entry for aarch64; ``problem()`` says which is missing. Slow: minutes for the root, minutes for
the install and the scan under emulation.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import tomli_w

from mimamori.provisioning import wheelhouse
from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.image import build_wheel, requirements

CHECKOUT = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = Path("/var/tmp/mimamori-arm64-root")
DEFAULT_IMAGE = CHECKOUT.parent / "shared" / "media" / "monkeys" / "images" / "monkey_139.jpg"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
SUITE, MIRROR = "bookworm", "http://deb.debian.org/debian"
#: what the wheels need beyond a minimal root: the Python of Raspberry Pi OS, C++ and OpenMP
PACKAGES = "python3,python3-venv,libstdc++6,libgomp1"
APP = "/opt/mimamori"


def problem() -> str | None:
    """Why an arm64 root cannot run here, or None."""
    if platform.machine() == "aarch64":
        return None
    if os.geteuid() != 0:
        return "needs root (debootstrap, chroot and mounting /proc)"
    if not shutil.which("debootstrap"):
        return "debootstrap not installed (apt-get install debootstrap)"
    if not Path("/usr/bin/qemu-aarch64-static").exists():
        return "qemu-aarch64-static not installed (apt-get install qemu-user-static)"
    entry = BINFMT / "qemu-aarch64"
    if not entry.exists():
        return (
            f"no binfmt_misc entry {entry}: mount binfmt_misc on {BINFMT} and register "
            "/usr/lib/binfmt.d/qemu-aarch64.conf (a container must allow it)"
        )
    if "enabled" not in entry.read_text().splitlines()[0]:
        return f"{entry} is disabled"
    return None


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    print("$", " ".join(cmd), flush=True)
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if res.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({res.returncode}):\n{res.stdout}{res.stderr}")
    return res


def ensure_root(root: Path) -> None:
    """A bookworm arm64 root at ``root`` (kept for the next run)."""
    if (root / "usr/bin/python3").exists():
        return
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    _run(
        ["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={PACKAGES}"]
        + [SUITE, str(partial), MIRROR]
    )
    partial.rename(root)


def _chroot(root: Path, *cmd: str) -> str:
    return _run(["chroot", str(root), *cmd]).stdout


def check(root: Path, image: Path, wheels: Path | None = None) -> str:
    """Install into ``root`` and run the two commands; return their output."""
    ensure_root(root)
    work = root / "opt" / "check"
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(root / APP.lstrip("/"), ignore_errors=True)
    work.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        if wheels is None:
            wheel = build_wheel(Path(tmp) / "own")
            wheels = wheelhouse.build(Path(tmp) / "wheels", wheel, requirements(wheel))
        shutil.copytree(wheels, work / "wheels")
        fleet = Fleet.init(Path(tmp) / "fleet")
        fleet.add_device("field-01", "wildlife", data_dir=Path("/opt/check/data"))
        shutil.copytree(Path(tmp) / "fleet" / "devices" / "field-01", work / "device")
    shutil.copy(image, work / image.name)
    config = work / "device" / "device.toml"
    cfg = tomllib.loads(config.read_text())
    cfg["wildlife"] = {"source": f"/opt/check/{image.name}"}
    config.write_text(tomli_w.dumps(cfg))
    proc = root / "proc"
    _run(["mount", "-t", "proc", "proc", str(proc)])
    try:
        out = _chroot(root, "uname", "-m")
        _chroot(root, "python3", "-m", "venv", f"{APP}/.venv")
        _chroot(
            root,
            f"{APP}/.venv/bin/pip",
            "install",
            "--require-hashes",
            "--no-index",
            "--find-links",
            "/opt/check/wheels",
            "-r",
            "/opt/check/wheels/requirements.txt",
        )
        # the wheel does not carry models/, and edge.vision.manifest looks for it beside the
        # installed packages: put the checkout's there, where a Pi must have them too
        site = next((root / APP.lstrip("/") / ".venv" / "lib").glob("python3*/site-packages"))
        shutil.copytree(CHECKOUT / "models", site / "models", dirs_exist_ok=True)
        cli = f"{APP}/.venv/bin/mimamori"
        out += _chroot(root, cli, "check-config", "/opt/check/device/device.toml")
        out += _chroot(
            root,
            cli,
            "wildlife",
            "scan",
            f"/opt/check/{image.name}",
        )
    finally:
        _run(["umount", str(proc)])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m mimamori.provisioning.arm64_check",
        description="Install mimamori from the image seed's wheels into a Debian bookworm "
        "arm64 root run under qemu-user (Raspberry Pi OS 64-bit's Python 3.11, aarch64), then "
        "run `mimamori check-config` and `mimamori wildlife scan` there. Needs root, "
        "debootstrap, qemu-user-static and binfmt_misc.",
    )
    p.add_argument(
        "--root", type=Path, default=DEFAULT_ROOT, help="arm64 root, built once (%(default)s)"
    )
    p.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="sample image to scan")
    p.add_argument("--wheelhouse", type=Path, help="a built wheelhouse (default: build one now)")
    args = p.parse_args(argv)
    why = problem()
    if why:
        print(f"arm64 check cannot run here: {why}", file=sys.stderr)
        return 2
    try:
        print(check(args.root, args.image, args.wheelhouse))
    except (RuntimeError, wheelhouse.WheelhouseError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
