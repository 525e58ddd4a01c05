"""Field-reliability report: runs tests/reliability and prints one table of what each fault
test injected and what came out.

Usage: python bench/reliability.py          # the CI-sized run (about 5 minutes)
       python bench/reliability.py --soak   # full size: 1,000 events over the rural link,
                                            # 200 power cuts, 500 devices in the herd,
                                            # a 10-minute restart soak with 50 devices
       python bench/reliability.py --table  # print the table of the last run only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "var" / "reliability.jsonl"
MAIN = ("sent", "stored", "lost", "duplicates", "worst_latency_s", "peak_rss_mb")


def table(rows: list[dict]) -> str:
    head = "| test | injected | sent | stored | lost | dup. | worst latency (s) | peak RSS (MB) | other figures |"
    out = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        main = [str(r.get(k, "–")) for k in MAIN]
        other = "; ".join(
            f"{k.replace('_', ' ')} {v}"
            for k, v in r.items()
            if k not in (*MAIN, "test", "injected", "soak")
        )
        out.append(f"| {r['test']} | {r['injected']} | {' | '.join(main)} | {other} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--soak", action="store_true", help="full-size faults (about 25 minutes)")
    ap.add_argument("--table", action="store_true", help="only print the last run's table")
    args = ap.parse_args()
    rc = 0
    if not args.table:
        REPORT.unlink(missing_ok=True)
        env = {**os.environ, "MIMAMORI_SOAK": "1" if args.soak else "0"}
        print(f"running tests/reliability ({'soak' if args.soak else 'CI size'}) ...", flush=True)
        rc = subprocess.call(
            [
                sys.executable,
                "-m",
                "pytest",
                "tests/reliability",
                "-m",
                "soak",
                "-q",
                "-p",
                "no:cacheprovider",
            ],
            cwd=ROOT,
            env=env,
        )
    if not REPORT.exists():
        print("no figures recorded", file=sys.stderr)
        return rc or 1
    rows = [json.loads(line) for line in REPORT.read_text().splitlines() if line.strip()]
    print()
    print(table(rows))
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
