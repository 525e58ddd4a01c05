"""Pi image seed written into a real partitioned image file with mtools, read back."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mimamori.provisioning import image
from mimamori.provisioning import wheelhouse as wheelhouse_mod
from mimamori.provisioning.fleet import Fleet

MB = 1024 * 1024
pytestmark = pytest.mark.skipif(
    not (shutil.which("mcopy") and shutil.which("sfdisk") and shutil.which("mkfs.vfat")),
    reason="mtools, fdisk and dosfstools are installed by ./run.sh test",
)


def make_image(path: Path) -> tuple[int, int]:
    """A 96 MiB image: a 64 MiB FAT16 boot partition (type 0x0c; Raspberry Pi OS's is 512 MiB,
    and the seed's wheels with the models take about 45 MiB) and a Linux partition of random
    data."""
    boot_start, boot_sectors, root_start, root_sectors = 2048, 131072, 133120, 61440
    with path.open("wb") as f:
        f.truncate(96 * MB)
    subprocess.run(
        ["sfdisk", "--quiet", str(path)],
        input=f"label: dos\nstart={boot_start}, size={boot_sectors}, type=c\n"
        f"start={root_start}, size={root_sectors}, type=83\n".encode(),
        check=True,
    )
    fat = path.with_suffix(".fat")
    subprocess.run(
        ["mkfs.vfat", "-F", "16", "-C", str(fat), str(boot_sectors // 2)],
        check=True,
        capture_output=True,
    )
    with path.open("r+b") as f:
        f.seek(boot_start * 512)
        f.write(fat.read_bytes())
        f.seek(root_start * 512)
        f.write(hashlib.shake_256(b"rootfs").digest(root_sectors * 512))
    return root_start * 512, root_sectors * 512


def read_back(img: Path, name: str) -> bytes:
    """A file from the image's boot partition, read with mtools' own mtype."""
    part = image.boot_partition(img)
    return subprocess.run(
        ["mtype", "-i", f"{img}@@{part.start}", f"::/{name}"],
        check=True,
        capture_output=True,
        env={"MTOOLS_SKIP_CHECK": "1"},
    ).stdout


def digest(path: Path, start: int, size: int) -> str:
    with path.open("rb") as f:
        f.seek(start)
        return hashlib.sha256(f.read(size)).hexdigest()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout's wheel, built once for the module."""
    return image.build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """A wheelhouse as `provision wheelhouse` leaves it: this project's wheel and a
    dependency's (a stand-in: the seed only carries and pins it), with requirements.txt."""
    folder = tmp_path_factory.mktemp("wheelhouse")
    (folder / wheel.name).write_bytes(wheel.read_bytes())
    (folder / "tiny_dep-1.0-py3-none-any.whl").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    (folder / wheelhouse_mod.REQUIREMENTS).write_text(
        wheelhouse_mod.requirements_text(sorted(folder.glob("*.whl")))
    )
    return folder


@pytest.fixture
def pi_image(tmp_path: Path) -> tuple[Path, int, int]:
    img = tmp_path / "raspios.img"
    start, size = make_image(img)
    return img, start, size


def test_seed_is_written_and_read_back_byte_identical(
    fleet: Fleet, pi_image, wheel, wheelhouse
) -> None:
    img, root_start, root_size = pi_image
    fleet.add_device("field-07", "wildlife", location="east orchard")
    mbr_before = img.read_bytes()[:512]
    root_before = digest(img, root_start, root_size)
    seed = image.build_seed(
        fleet, "field-07", image.Network("townnet", "s3cret"), wheel=wheel, wheelhouse=wheelhouse
    )
    part = image.write_files(img, seed)
    assert part.index == 1 and part.start == 2048 * 512
    for name, data in seed.items():
        assert read_back(img, name) == data
    assert digest(img, root_start, root_size) == root_before  # the root partition untouched
    assert img.read_bytes()[:512] == mbr_before


def test_user_data_has_what_cloud_init_needs_and_key_leaves_boot(
    fleet: Fleet, wheel, wheelhouse
) -> None:
    fleet.add_device("bus-03", "ridership")
    seed = image.build_seed(fleet, "bus-03", image.Network(), wheel=wheel, wheelhouse=wheelhouse)
    user = yaml.safe_load(seed["user-data"])
    assert seed["user-data"].startswith(b"#cloud-config\n")
    assert user["hostname"] == "bus-03"
    paths = {f["path"]: f for f in user["write_files"]}
    key = (fleet.root / "devices" / "bus-03" / "device.key").read_text()
    assert paths["/etc/mimamori/device.key"]["content"] == key
    assert paths["/etc/mimamori/device.key"]["permissions"] == "0600"
    assert 'data_dir = "/var/lib/mimamori"' in paths["/etc/mimamori/device.toml"]["content"]
    assert paths["/opt/mimamori/wipe-seed"]["content"] == (
        Path(image.__file__).with_name("wipe_seed.py").read_text()
    )
    runcmd = user["runcmd"]
    assert ["systemctl", "enable", "--now", "mimamori-ridership.service"] in runcmd
    # every shipped wheel, checked against its sha256, installed without any index
    seeded = {n for n in seed if n.startswith("mimamori-wheels/")}
    assert seeded == {f"mimamori-wheels/{w.name}" for w in wheelhouse.glob("*.whl")}
    assert seed[f"mimamori-wheels/{wheel.name}"] == wheel.read_bytes()
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    pins = paths["/opt/mimamori/requirements.txt"]["content"].splitlines()
    assert f"mimamori==0.1.0 --hash=sha256:{sha}" in pins and len(pins) == 2
    assert runcmd[1] == [
        "/opt/mimamori/.venv/bin/pip",
        "install",
        "--require-hashes",
        "--no-index",
        "--find-links",
        "/boot/firmware/mimamori-wheels",
        "-r",
        "/opt/mimamori/requirements.txt",
    ]
    # the wipe runs once the wheels are in; then the wheels leave the boot partition
    assert runcmd[2] == ["python3", "/opt/mimamori/wipe-seed", "--root", "/"]
    assert runcmd[3] == ["rm", "-rf", "/boot/firmware/mimamori-wheels"]
    assert user["updates"] == {"network": {"when": ["boot-new-instance"]}}
    redacted = seed["user-data.redacted"]
    assert b"PRIVATE KEY" not in redacted and b"PRIVATE KEY" in seed["user-data"]
    assert yaml.safe_load(redacted)["runcmd"] == runcmd
    net = yaml.safe_load(seed["network-config"])
    assert net == {"version": 2, "ethernets": {"eth0": {"dhcp4": True, "optional": True}}}
    assert seed["network-config.redacted"] == seed["network-config"]
    meta = yaml.safe_load(seed["meta-data"])
    assert meta["local-hostname"] == "bus-03" and meta["instance-id"].startswith("mimamori-bus-03-")


@pytest.mark.skipif(
    not shutil.which("cloud-init"), reason="cloud-init is installed by ./run.sh test"
)
def test_user_data_passes_cloud_init_schema(
    fleet: Fleet, tmp_path: Path, wheel, wheelhouse
) -> None:
    fleet.add_device("kiosk-02", "kiosk")
    seed = image.build_seed(
        fleet, "kiosk-02", image.Network("office", "pw"), wheel=wheel, wheelhouse=wheelhouse
    )
    wifi = yaml.safe_load(seed["network-config"])["wifis"]["wlan0"]["access-points"]
    assert wifi == {"office": {"password": "pw"}}
    redacted = yaml.safe_load(seed["network-config.redacted"])["wifis"]["wlan0"]
    assert redacted["access-points"] == {"office": {}}
    # the kiosk's screen is Japanese: its image brings a Japanese font
    assert "fonts-noto-cjk" in yaml.safe_load(seed["user-data"])["packages"]
    for name in ("user-data", "user-data.redacted"):
        path = tmp_path / name
        path.write_bytes(seed[name])
        res = subprocess.run(
            ["cloud-init", "schema", "-c", str(path)], capture_output=True, text=True
        )
        assert res.returncode == 0, res.stdout + res.stderr
        assert "Valid cloud-config" in res.stdout


@pytest.mark.slow  # 8-20 s: the default run keeps its margin under five minutes
def test_cli_writes_into_image_and_refuses_non_images(
    fleet: Fleet, pi_image, tmp_path: Path, wheel, wheelhouse
) -> None:
    img, _, _ = pi_image
    fleet.add_device("field-08", "wildlife")
    cli = [
        sys.executable,
        "-m",
        "mimamori.edge.cli",
        "provision",
        "image",
        "--fleet",
        str(fleet.root),
    ]
    cli += ["--wheelhouse", str(wheelhouse)]
    ok = subprocess.run(
        [*cli, "--device", "field-08", "--image", str(img), "--package", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert b"hostname: field-08" in read_back(img, "user-data")
    assert read_back(img, f"mimamori-wheels/{wheel.name}") == wheel.read_bytes()
    assert b"--require-hashes" in read_back(img, "user-data")
    other = tmp_path / "other-1.0-py3-none-any.whl"
    other.write_bytes(wheel.read_bytes())
    wrong = subprocess.run(
        [*cli, "--device", "field-08", "--image", str(img), "--package", str(other)],
        capture_output=True,
        text=True,
    )
    assert wrong.returncode == 78 and "not a mimamori wheel file" in wrong.stderr
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\0" * 4096)
    bad = subprocess.run(
        [*cli, "--device", "field-08", "--image", str(junk)], capture_output=True, text=True
    )
    assert bad.returncode == 78 and "no MBR partition table" in bad.stderr
    missing = subprocess.run(
        [*cli, "--device", "nobody", "--image", str(img)], capture_output=True, text=True
    )
    assert missing.returncode == 78 and "'nobody' is not in the inventory" in missing.stderr
