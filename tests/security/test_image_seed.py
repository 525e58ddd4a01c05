"""Attacks on the Pi image seed (`mimamori provision image`) as it lands on the SD card.

The seed is written into a real partitioned image by the real CLI and read back with mtools.
First boot is then played for real in a directory tree standing in for the Pi's root
filesystem: cloud-init's ``write_files`` are written there and the seed's own ``runcmd`` steps
run with their absolute paths moved under that tree (``systemctl`` and ``sync`` left out).

- A stranger's package: a package index on loopback serves, like the public index, an
  unrelated project called ``mimamori`` (and stub packages for every other name). First boot
  must install this project's wheel and its dependencies from the seed's wheelhouse, never
  ask the index for anything, and refuse a wheel that does not match the pinned hash.
- Secrets left behind: after first boot no file in the tree (boot partition, cloud-init's
  instance directory, its run directory and logs) may hold the device's private key or the
  Wi-Fi passphrase, except the two places that must: ``/etc/mimamori/device.key`` and the
  network manager's own configuration.
"""

from __future__ import annotations

import base64
import email.mime.multipart
import email.mime.text
import hashlib
import io
import json
import os
import pickle
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from mimamori.provisioning import image, wheelhouse
from mimamori.provisioning.fleet import Fleet
from tests.provisioning.test_image import make_image

ROOT = Path(__file__).resolve().parents[2]
WIFI_SSID = "orchard-net"
WIFI_PASSWORD = "Sarugaoka-4711-wifi"
PROJECT_VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

pytestmark = pytest.mark.skipif(
    not (shutil.which("mcopy") and shutil.which("sfdisk") and shutil.which("mkfs.vfat")),
    reason="mtools, fdisk and dosfstools are installed by ./run.sh test",
)


# -- the seed as flashed -------------------------------------------------------------------


def provision(fleet: Fleet, img: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    pw = fleet.root / "wifi.txt"
    pw.write_text(WIFI_PASSWORD + "\n")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mimamori.edge.cli",
            "provision",
            "image",
            "--fleet",
            str(fleet.root),
            "--device",
            "field-09",
            "--image",
            str(img),
            "--wifi-ssid",
            WIFI_SSID,
            "--wifi-password-file",
            str(pw),
            *extra,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def boot_files(img: Path) -> dict[str, bytes]:
    """Every file on the image's FAT boot partition, read back with mtools."""
    env = {"MTOOLS_SKIP_CHECK": "1"}
    start = image.boot_partition(img).start
    listing = subprocess.run(
        ["mdir", "-/", "-b", "-i", f"{img}@@{start}", "::/"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    names = [
        line.removeprefix("::/")
        for line in listing.split()
        if line.startswith("::/") and not line.endswith("/")
    ]
    return {
        n: subprocess.run(
            ["mtype", "-i", f"{img}@@{start}", f"::/{n}"], check=True, capture_output=True, env=env
        ).stdout
        for n in names
    }


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """This checkout's wheel and a wheelhouse with it and a stub wheel for each runtime
    dependency (pure Python, so first boot can be played on this machine)."""
    folder = tmp_path_factory.mktemp("wheelhouse")
    own = image.build_wheel(folder)
    for dep in wheelhouse.runtime_dependencies():
        req = Requirement(dep)
        version = next(v for v in sorted(stub_versions()) if req.specifier.contains(v))
        filename, data = stub_wheel(
            req.name, version, {f"{req.name.replace('-', '_')}_stub.py": ""}
        )
        (folder / filename).write_bytes(data)
    reqs = wheelhouse.requirements_text(sorted(folder.glob("*.whl")))
    (folder / wheelhouse.REQUIREMENTS).write_text(reqs)
    return own, folder


@pytest.fixture
def flashed(fleet: Fleet, tmp_path: Path, wheels: tuple[Path, Path]) -> dict[str, bytes]:
    """The boot partition of an image seeded by the CLI, plus Wi-Fi."""
    fleet.add_device("field-09", "wildlife", location="north orchard")
    img = tmp_path / "raspios.img"
    make_image(img)
    own, house = wheels
    res = provision(fleet, img, "--package", str(own), "--wheelhouse", str(house))
    assert res.returncode == 0, res.stderr
    return boot_files(img)


def user_data(boot: dict[str, bytes]) -> dict[str, Any]:
    doc = yaml.safe_load(boot["user-data"])
    assert isinstance(doc, dict)
    return doc


# -- first boot, played in a directory tree ------------------------------------------------

PI_DIRS = re.compile(r"(?<![\w./-])/(?=(?:boot|opt|etc|var|run|usr)/)")


def on_tree(root: Path, arg: str) -> str:
    """``arg`` with the Pi's absolute paths moved under ``root``."""
    return str(root) if arg == "/" else PI_DIRS.sub(f"{root}/", arg)


def lay_out(root: Path, boot: dict[str, bytes], doc: dict[str, Any]) -> None:
    """The boot partition as flashed and cloud-init's write_files (deferred ones included)."""
    fw = root / "boot/firmware"
    fw.mkdir(parents=True)
    for name, data in boot.items():
        (fw / name).parent.mkdir(parents=True, exist_ok=True)
        (fw / name).write_bytes(data)
    for f in doc.get("write_files") or []:
        path = root / f["path"].lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f["content"])
        path.chmod(int(f.get("permissions", "0644"), 8))


def run_steps(
    root: Path, steps: list[Any], env: dict[str, str]
) -> list[subprocess.CompletedProcess[str]]:
    done = []
    for step in steps:
        argv = (
            [on_tree(root, a) for a in step]
            if isinstance(step, list)
            else ["sh", "-c", on_tree(root, step)]
        )
        if argv[0] in ("systemctl", "sync"):
            continue
        if argv[0] == "python3":
            argv[0] = sys.executable
        done.append(subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300))
    return done


def is_install(step: Any) -> bool:
    return any(".venv" in str(a) for a in (step if isinstance(step, list) else [step]))


# -- a package index that serves a stranger's "mimamori" -----------------------------------


def stub_wheel(name: str, version: str, files: dict[str, str]) -> tuple[str, bytes]:
    dist = re.sub(r"[-_.]+", "_", name)
    info = f"{dist}-{version}.dist-info"
    files = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest())
            record.append(f"{path},sha256={digest.rstrip(b'=').decode()},{len(text.encode())}")
        z.writestr(f"{info}/RECORD", "\n".join([*record, f"{info}/RECORD,,"]) + "\n")
    return f"{dist}-{version}-py3-none-any.whl", buf.getvalue()


STRANGER = stub_wheel(
    "mimamori", "99.0", {"stranger.py": "print('not the town project')\n", "edge/__init__.py": ""}
)


class Index:
    """A PEP 503 index on loopback: the stranger's mimamori, and a stub for any other name."""

    def __init__(self, versions: set[str]) -> None:
        self.requests: list[str] = []
        self.files: dict[str, bytes] = {}
        index = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                index.requests.append(self.path)
                body, ctype = index.answer(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", ctype)
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: object) -> None:
                pass

        self.versions = versions
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str) -> tuple[bytes | None, str]:
        if path.startswith("/files/"):
            return self.files.get(path.removeprefix("/files/")), "application/octet-stream"
        m = re.fullmatch(r"/simple/([a-z0-9-]+)/", path)
        if m is None:
            return None, "text/plain"
        name = m[1]
        wheels = (
            [STRANGER]
            if name == "mimamori"
            else [
                stub_wheel(name, v, {f"{name.replace('-', '_')}_stub.py": ""})
                for v in self.versions
            ]
        )
        links = []
        for filename, data in wheels:
            self.files[filename] = data
            links.append(f'<a href="/files/{filename}">{filename}</a>')
        return f"<html><body>{''.join(links)}</body></html>".encode(), "text/html"


def stub_versions() -> set[str]:
    """Every version the dependencies' ranges name, and 99.0."""
    deps = wheelhouse.runtime_dependencies()
    return {"99.0"} | {s.version for d in deps for s in Requirement(d).specifier}


@pytest.fixture
def stranger_index() -> Iterator[Index]:
    index = Index(stub_versions())
    yield index
    index.server.shutdown()
    index.server.server_close()


def pip_env(index: Index) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(("PIP_", "HTTP", "NO_PROXY"))
    }
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_INDEX_URL=index.url,
        PIP_NO_CACHE_DIR="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_RETRIES="0",
        PIP_TIMEOUT="10",
        NO_PROXY="127.0.0.1",
    )
    return env


def site_packages(root: Path) -> Path:
    found = list((root / "opt/mimamori/.venv/lib").glob("python3*/site-packages"))
    assert len(found) == 1, found
    return found[0]


# -- the attacks -------------------------------------------------------------------------


@pytest.mark.slow  # 8-20 s: the default run keeps its margin under five minutes
def test_first_boot_installs_the_shipped_wheel_not_the_index_namesake(
    flashed: dict[str, bytes], stranger_index: Index, tmp_path: Path
) -> None:
    doc = user_data(flashed)
    root = tmp_path / "pi"
    lay_out(root, flashed, doc)
    for res in run_steps(root, doc["runcmd"], pip_env(stranger_index)):
        assert res.returncode == 0, res.args
    site = site_packages(root)
    assert not (site / "stranger.py").exists(), "first boot installed the index's mimamori"
    assert not list(site.glob("mimamori-99.0.dist-info"))
    assert (site / f"mimamori-{PROJECT_VERSION}.dist-info").is_dir()
    installed = (site / "mimamori" / "edge" / "cli.py").read_bytes()
    assert installed == (ROOT / "edge" / "cli.py").read_bytes()
    assert not stranger_index.requests, stranger_index.requests  # the index is never asked
    assert (site / "paho_mqtt_stub.py").exists()  # dependencies come from the seed's wheels


@pytest.mark.slow  # 8-20 s: the default run keeps its margin under five minutes
def test_a_wheel_swapped_on_the_boot_partition_is_refused(
    flashed: dict[str, bytes], stranger_index: Index, tmp_path: Path
) -> None:
    doc = user_data(flashed)
    shipped = [n for n in flashed if n.endswith(".whl") and "/mimamori-" in n]
    assert shipped == [f"mimamori-wheels/mimamori-{PROJECT_VERSION}-py3-none-any.whl"], shipped
    for name, forged in (
        ("stranger", STRANGER[1]),
        ("one byte", flashed[shipped[0]][:-1] + bytes([flashed[shipped[0]][-1] ^ 1])),
    ):
        root = tmp_path / name
        lay_out(root, {**flashed, shipped[0]: forged}, doc)
        install = [s for s in doc["runcmd"] if is_install(s)]
        results = run_steps(root, install[:2], pip_env(stranger_index))
        assert results[-1].returncode != 0, name
        assert "DO NOT MATCH THE HASHES" in results[-1].stdout + results[-1].stderr, name
        site = site_packages(root)
        assert not list(site.glob("mimamori-*.dist-info")), name
        assert not (site / "stranger.py").exists(), name


@pytest.mark.parametrize("package", ["mimamori", "mimamori==0.1.0", "mimamori[postgres]"])
def test_a_package_name_is_refused(fleet: Fleet, tmp_path: Path, package: str) -> None:
    fleet.add_device("field-09", "wildlife")
    img = tmp_path / "raspios.img"
    make_image(img)
    before = img.read_bytes()
    res = provision(fleet, img, "--package", package)
    assert res.returncode == 78, res.stdout + res.stderr
    assert "not a wheel file" in res.stderr and "package index" in res.stderr
    assert img.read_bytes() == before


def cloud_init_leftovers(root: Path, raw: bytes, doc: dict[str, Any], net: dict[str, Any]) -> None:
    """What cloud-init keeps of a first boot, as cloud-init 22-24 lays it out."""
    iid = "mimamori-field-09-0001"
    inst = root / "var/lib/cloud/instances" / iid
    (inst / "scripts").mkdir(parents=True)
    (inst / "sem").mkdir()
    (inst / "user-data.txt").write_bytes(raw)
    mime = email.mime.multipart.MIMEMultipart()
    mime.attach(email.mime.text.MIMEText(raw.decode(), "cloud-config"))
    (inst / "user-data.txt.i").write_text(mime.as_string())
    (inst / "cloud-config.txt").write_text("#cloud-config\n" + yaml.safe_dump(doc))
    (inst / "obj.pkl").write_bytes(pickle.dumps({"userdata_raw": raw, "network_config": net}))
    (inst / "network-config.json").write_text(json.dumps(net))
    runcmd = "".join(
        " ".join(shlex.quote(a) for a in s) + "\n" if isinstance(s, list) else s + "\n"
        for s in doc["runcmd"]
    )
    (inst / "scripts/runcmd").write_text("#!/bin/sh\n" + runcmd)
    (inst / "sem/config_runcmd").write_text("")
    (root / "var/lib/cloud/instance").symlink_to(inst)
    (root / "var/lib/cloud/data").mkdir()
    (root / "var/lib/cloud/data/instance-id").write_text(iid + "\n")
    run = root / "run/cloud-init"
    run.mkdir(parents=True)
    (run / "combined-cloud-config.json").write_text(json.dumps(doc, indent=1))
    (run / "instance-data-sensitive.json").write_text(json.dumps({"ds": {"network": net}}))
    log = root / "var/log"
    log.mkdir(parents=True)
    (log / "cloud-init.log").write_text(
        "2025-04-01 09:00:01,120 - stages.py[INFO]: Applying network configuration from ds "
        f"bringup=False: {net!r}\n"
    )
    (log / "cloud-init-output.log").write_text("Cloud-init v. 24.1 running 'modules:final'\n")
    # the legitimate copy: the network manager needs the passphrase to join the network
    netplan = root / "etc/netplan/50-cloud-init.yaml"
    netplan.parent.mkdir(parents=True)
    netplan.write_text(yaml.safe_dump({"network": net}))


def test_first_boot_leaves_no_key_or_wifi_password_behind(
    flashed: dict[str, bytes], fleet: Fleet, tmp_path: Path
) -> None:
    key = (fleet.root / "devices/field-09/device.key").read_text()
    key_lines = [ln for ln in key.splitlines() if len(ln) >= 16 and not ln.startswith("-----")]
    doc = user_data(flashed)
    assert key_lines and key in [f["content"] for f in doc["write_files"]]
    assert all(ln.encode() in flashed["user-data"] for ln in key_lines)
    assert WIFI_PASSWORD.encode() in flashed["network-config"]
    root = tmp_path / "pi"
    lay_out(root, flashed, doc)
    cloud_init_leftovers(root, flashed["user-data"], doc, yaml.safe_load(flashed["network-config"]))
    steps = [s for s in doc["runcmd"] if not is_install(s)]
    for res in run_steps(root, steps, dict(os.environ)):
        assert res.returncode == 0, (res.args, res.stderr)

    keeps = {root / "etc/mimamori/device.key", root / "etc/netplan/50-cloud-init.yaml"}
    leaks = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        data = path.read_bytes()
        found = [s for s in [WIFI_PASSWORD, *key_lines] if s.encode() in data]
        if found and path not in keeps:
            leaks.append(f"{path.relative_to(root)}: {found[0][:20]}")
    assert not leaks, "secrets left after first boot:\n" + "\n".join(leaks)

    assert (root / "etc/mimamori/device.key").read_text() == key
    fw = root / "boot/firmware"
    assert yaml.safe_load((fw / "user-data").read_bytes())["hostname"] == "field-09"
    wifi = yaml.safe_load((fw / "network-config").read_bytes())["wifis"]["wlan0"]
    assert WIFI_SSID in wifi["access-points"]
    assert not list(fw.rglob("*.whl")) and not list(fw.glob("*.redacted"))
    assert not (fw / "mimamori-wheels").exists()
