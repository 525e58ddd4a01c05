"""Model delivery: the 18.6 MB default monkey model from the hub's model server to a device.

The real model server (HTTPS, client certificate, Range) with certificates from
provisioning, and the device's download (``edge.download``: capped, hashed, resumed) with the
device's certificate, over a clean loopback and through the bad-link proxy with rural
settings (delay and jitter, a rate cap, stalls, and the session cut every so often). Prints
the time, the rate and the number of resumes of each.

Usage: python bench/model_delivery.py [--kbit 2000] [--cut-every 30] [--model FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._fleet import throwaway_fleet  # noqa: E402
from mimamori.edge.download import download, https_fetch  # noqa: E402
from mimamori.hub.config import load_hub_config  # noqa: E402
from mimamori.hub.model_server import ModelServer  # noqa: E402
from mimamori.hub.rollouts import Rollouts  # noqa: E402
from mimamori.hub.store import Store  # noqa: E402
from mimamori.provisioning.signing import sign_model  # noqa: E402
from tests.reliability.badlink import BadLink  # noqa: E402

MODEL = Path(__file__).resolve().parent.parent / "models" / "efficientnet-lite0.onnx"


class Resumes:
    """The download's progress callback: keeps the number of resumes."""

    n = 0

    def __call__(self, got: int, resumes: int) -> None:
        self.n = resumes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=MODEL)
    ap.add_argument("--kbit", type=float, default=2000, help="rural link rate (kbit/s)")
    ap.add_argument("--delay", type=float, default=0.8, help="one-way delay (s)")
    ap.add_argument("--jitter", type=float, default=0.4, help="delay jitter (s)")
    ap.add_argument("--cut-every", type=float, default=30, help="mean s between cuts")
    ap.add_argument("--stall-every", type=float, default=15, help="mean s between stalls")
    args = ap.parse_args()

    fleet = throwaway_fleet((("field-01", "wildlife"),))
    cfg = load_hub_config(fleet.hub_config)
    assert cfg.models is not None
    store = Store(cfg.store.url).create()
    rollouts = Rollouts(store, cfg.models)
    server = ModelServer(cfg.models, rollouts.target).start()
    signed = sign_model(fleet.signing_key, args.model.read_bytes(), name="monkey", version=1)
    rollout = rollouts.add(args.model, signed, "wildlife", "field-01")
    dev = fleet.root / "devices" / "field-01"
    fetch = https_fetch(dev / "ca.crt", dev / "device.crt", dev / "device.key")
    size = signed.manifest.size
    print(f"model {args.model.name}: {size / 1e6:.1f} MB")
    print(f"{'link':<58} {'time':>8} {'rate':>11} {'resumes':>8} {'cuts':>5}")
    try:
        links = [
            ("clean loopback", None),
            (
                f"rural: {args.delay * 1000:.0f} ± {args.jitter * 1000:.0f} ms, "
                f"{args.kbit:.0f} kbit/s, cut ~{args.cut_every:.0f} s, "
                f"stall ~{args.stall_every:.0f} s",
                BadLink(
                    ("127.0.0.1", server.port),
                    delay_s=args.delay,
                    jitter_s=args.jitter,
                    kbit_s=args.kbit,
                    cut_every_s=args.cut_every,
                    stall_every_s=args.stall_every,
                ),
            ),
        ]
        for name, link in links:
            port = link.start().port if link else server.port
            job = rollouts.job(rollout, "field-01")
            url = f"https://127.0.0.1:{port}/jobs/{job.job_id}"
            seen = Resumes()
            slot = fleet.root.parent / "device" / name.split(":")[0].replace(" ", "-")
            t0 = time.monotonic()
            try:
                path = download(
                    signed.manifest,
                    url,
                    fetch,
                    slot,
                    progress=seen,
                )
            finally:
                if link:
                    link.stop()
            took = time.monotonic() - t0
            assert path.stat().st_size == size
            cuts = link.stats.cuts if link else 0
            print(
                f"{name:<58} {took:>7.1f}s {size * 8 / took / 1000:>6.0f} kbit/s "
                f"{seen.n:>8} {cuts:>5}"
            )
    finally:
        server.stop()
        store.close()


if __name__ == "__main__":
    main()
