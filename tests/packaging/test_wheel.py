"""The wheel as a town installs it: built from the checkout's files, installed into a fresh
virtualenv, run from another folder. A template, a static file, a migration or the model left
out of the wheel fails here, not on a Pi or at city hall."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
import tomllib
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from mimamori.provisioning.fleet import Fleet
from mimamori.provisioning.image import build_wheel
from mimamori.provisioning.mosquitto import MosquittoProcess
from tests.conftest import add_device
from tests.running import killed_after

ROOT = Path(__file__).resolve().parents[2]
SETUP = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
FOLDERS = ("edge", "hub", "kiosk", "provisioning")
MONKEY = ROOT.parent / "shared" / "media" / "monkeys" / "images" / "monkey_139.jpg"


def test_every_package_folder_is_listed_under_the_import_root() -> None:
    found = {
        "mimamori." + ".".join(init.parent.relative_to(ROOT).parts)
        for top in FOLDERS
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert set(SETUP["packages"]) == found | {"mimamori.models"}
    assert SETUP["package-dir"] == {f"mimamori.{d}": d for d in (*FOLDERS, "models")}


def test_the_checkout_has_no_folder_that_shadows_the_import_root() -> None:
    # a `mimamori/` folder here would be imported instead of the installed packages
    assert not (ROOT / "mimamori").exists()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel and its dependencies from the package index."""
    home = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(home)], check=True)
    subprocess.run(
        [str(home / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        timeout=900,
    )
    return home


def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


@pytest.mark.slow
def test_the_wheel_installs_one_import_root_with_its_data(wheel: Path) -> None:
    names = wheel_names(wheel)
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"mimamori"}
    data = [
        *(ROOT / "hub").glob("templates/*.html"),
        *(ROOT / "hub").glob("static/*"),
        *(ROOT / "hub").glob("migrations/versions/*.py"),
        ROOT / "hub" / "migrations" / "script.py.mako",
        *(ROOT / "kiosk").glob("templates/*"),
        *(ROOT / "kiosk").glob("static/*"),
        *(ROOT / "provisioning").glob("guard/*.c"),
        *(ROOT / "models").glob("*.onnx"),
        *(ROOT / "models").glob("*.toml"),
        *(ROOT / "models").glob("*.txt"),
    ]
    assert len(data) > 20
    missing = [
        str(p.relative_to(ROOT)) for p in data if f"mimamori/{p.relative_to(ROOT)}" not in names
    ]
    assert missing == []


def run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "mimamori"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_the_installed_cli_runs_outside_the_checkout(
    venv: Path, fleet: Fleet, tmp_path: Path
) -> None:
    python = str(venv / "bin" / "python")
    where = subprocess.run(
        [
            python,
            "-c",
            "import mimamori.edge.cli as c, importlib.util as u; print(c.__file__); "
            "print([n for n in ('edge', 'hub', 'kiosk', 'provisioning') if u.find_spec(n)])",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert where[0].startswith(str(venv)), where  # not the checkout's copy
    assert where[1] == "[]"  # no generic top-level names installed
    assert importlib.util.find_spec("mimamori.edge.cli") is not None

    out = run(venv, "--help", cwd=tmp_path)
    assert out.returncode == 0 and "wildlife" in out.stdout and "hub" in out.stdout

    cfg = add_device(fleet, "field-01")
    out = run(venv, "check-config", str(cfg), cwd=tmp_path)
    assert out.returncode == 0, out.stderr

    image = MONKEY
    if not image.is_file():  # any photo proves the shipped model loads and runs
        image = tmp_path / "field.jpg"
        cv2.imwrite(str(image), np.full((480, 640, 3), 90, np.uint8))
    out = run(venv, "wildlife", "scan", str(image), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert str(image) in out.stdout


@pytest.fixture
def hub_process(
    venv: Path, fleet: Fleet, broker: MosquittoProcess, tmp_path: Path
) -> Iterator[int]:
    """The installed hub with its web pages, against the fleet's broker; yields the web port."""
    config = fleet.hub_config
    port = tomllib.loads(config.read_text())["web"]["port"]
    out = run(venv, "hub", "--config", str(config), "db", "upgrade", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    proc = subprocess.Popen(
        [str(venv / "bin" / "mimamori"), "hub", "--config", str(config)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "hub.log").open("w"),  # noqa: SIM115 (kept open for the child)
        text=True,
    )
    with killed_after(proc):
        yield port


def get(url: str, deadline_s: float = 30) -> tuple[int, bytes]:
    end = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, resp.read()
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


@pytest.mark.slow
def test_the_installed_hub_serves_its_pages_and_static_files(hub_process: int) -> None:
    base = f"http://127.0.0.1:{hub_process}"
    status, page = get(f"{base}/login")
    assert status == 200 and b"<form" in page
    status, css = get(f"{base}/static/style.css")
    assert status == 200 and len(css) == (ROOT / "hub" / "static" / "style.css").stat().st_size
