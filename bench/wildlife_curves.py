"""Monkey watch: recall and false alarms per stage, per set and per condition.

Runs the two-stage watch (YOLOX-nano proposals -> primate classifier on square crops at their
own resolution; whole frame + 3x3 tiles beside it) on every labelled set of
``bench/wildlife_sets.py`` under every condition of ``edge/wildlife/conditions.py`` and prints

1. the proposer's recall (stage 1: a proposal crop covers the labelled monkey) and the
   classifier's recall on those crops (stage 2), per set and condition;
2. per stage (proposal crops, tiles, both) and per condition: recall on the monkey sets and
   false alarms per frame on the negative sets, at thresholds 0.3 ... 0.9;
3. the operating point: per day / night condition group, the lowest threshold that keeps
   false alarms per frame at or under the target on every negative set, and the recall there.

Usage: python bench/wildlife_curves.py [--sets macaques,negatives,people,small]
       [--conditions day,gray,...] [--scores scores.json] [--fa 0.02]
``--scores`` keeps the per-image scores in a JSON file and reuses it on the next run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.wildlife_sets import SETS, Box  # noqa: E402
from mimamori.edge.wildlife.conditions import CONDITIONS, NIGHT  # noqa: E402

THRESHOLDS = [round(0.3 + 0.05 * i, 2) for i in range(13)]
STAGES = ("proposal", "tiles", "both")


def hit(crop: Box, truth: Box) -> bool:
    """The crop shows the labelled animal: it holds the animal's centre and at least half of it."""
    cx, cy = (truth[0] + truth[2]) / 2, (truth[1] + truth[3]) / 2
    if not (crop[0] <= cx <= crop[2] and crop[1] <= cy <= crop[3]):
        return False
    ix = max(0, min(crop[2], truth[2]) - max(crop[0], truth[0]))
    iy = max(0, min(crop[3], truth[3]) - max(crop[1], truth[1]))
    area = max(1, (truth[2] - truth[0]) * (truth[3] - truth[1]))
    return ix * iy / area >= 0.5


def score_all(sets: list[str], conditions: list[str]) -> list[dict[str, object]]:
    from mimamori.edge.wildlife.watch import load_watch

    watch = load_watch(threads=2)
    rows: list[dict[str, object]] = []
    for sname in sets:
        samples = list(SETS[sname]())
        for cond in conditions:
            t0 = time.perf_counter()
            for s in samples:
                look = watch.look(CONDITIONS[cond](s.image, s.name))
                proposed = [sc for box, sc in look.regions if any(hit(box, t) for t in s.boxes)]
                rows.append(
                    {
                        "set": sname,
                        "condition": cond,
                        "name": s.name,
                        "monkey": s.monkey,
                        "proposal": look.proposal.score if look.proposal else 0.0,
                        "tiles": look.tiles.score,
                        "both": look.finding.score,
                        "proposed": bool(proposed),
                        "proposed_score": max(proposed, default=0.0),
                        "people": len(look.people),
                    }
                )
            ms = (time.perf_counter() - t0) * 1000 / max(1, len(samples))
            print(f"  scored {sname}/{cond}: {len(samples)} images, {ms:.0f} ms each", flush=True)
    return rows


def rate(xs: list[bool]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--conditions", default=",".join(CONDITIONS))
    ap.add_argument("--scores", type=Path, help="JSON file of per-image scores (kept, reused)")
    ap.add_argument("--fa", type=float, default=0.02, help="false alarms per frame allowed")
    args = ap.parse_args()
    sets, conds = args.sets.split(","), args.conditions.split(",")
    if args.scores and args.scores.exists():
        rows = json.loads(args.scores.read_text())
    else:
        rows = score_all(sets, conds)
        if args.scores:
            args.scores.write_text(json.dumps(rows))
    rows = [r for r in rows if r["set"] in sets and r["condition"] in conds]
    pos_sets = sorted({str(r["set"]) for r in rows if r["monkey"]})
    neg_sets = sorted({str(r["set"]) for r in rows if not r["monkey"]})

    def pick(s: str, c: str) -> list[dict[str, object]]:
        return [r for r in rows if r["set"] == s and r["condition"] == c]

    print("\n1. stage 1 (proposer) and stage 2 (classifier on the proposed crop), threshold 0.5")
    print(f"{'set':<10}{'condition':<14}{'n':>4}{'stage 1':>9}{'stage 2|1':>11}")
    for s in pos_sets:
        for c in conds:
            rs = pick(s, c)
            prop = [r for r in rs if r["proposed"]]
            s2 = rate([float(r["proposed_score"]) >= 0.5 for r in prop])  # type: ignore[arg-type]
            print(
                f"{s:<10}{c:<14}{len(rs):>4}{rate([bool(r['proposed']) for r in rs]):>9.2f}{s2:>11.2f}"
            )

    print("\n2. recall (monkey sets) and false alarms per frame (negative sets) per stage")
    head = "".join(f"{t:>6.2f}" for t in THRESHOLDS)
    for stage in STAGES:
        print(f"\nstage: {stage}\n{'set':<10}{'condition':<14}{'n':>4}  {head}")
        for s in pos_sets + neg_sets:
            for c in conds:
                rs = pick(s, c)
                if not rs:
                    continue
                want = s in pos_sets
                cells = "".join(
                    f"{rate([(float(r[stage]) >= t) == want for r in rs] if want else [float(r[stage]) >= t for r in rs]):>6.2f}"  # type: ignore[arg-type]
                    for t in THRESHOLDS
                )
                kind = "recall" if want else "FA/fr"
                print(f"{s:<10}{c:<14}{len(rs):>4}  {cells}  {kind}")

    print(f"\n3. operating point (stage 'both'): lowest threshold with FA/frame <= {args.fa}")
    groups = {
        "day": [c for c in conds if c not in NIGHT],
        "night": [c for c in conds if c in NIGHT],
    }
    for g, cs in groups.items():
        if not cs:
            continue
        chosen = None
        for t in THRESHOLDS:
            worst = max(
                rate([float(r["both"]) >= t for r in pick(s, c)])  # type: ignore[arg-type]
                for s in neg_sets
                for c in cs
                if pick(s, c)
            )
            if worst <= args.fa:
                chosen = t
                break
        if chosen is None:
            print(f"{g}: no threshold up to 0.9 keeps false alarms <= {args.fa}")
            continue
        print(f"{g} ({', '.join(cs)}): threshold {chosen}")
        for s in pos_sets:
            for c in cs:
                rs = pick(s, c)
                r = rate([float(x["both"]) >= chosen for x in rs])  # type: ignore[arg-type]
                print(f"    recall {s}/{c}: {r:.2f} ({len(rs)})")
        for s in neg_sets:
            fa = [rate([float(x["both"]) >= chosen for x in pick(s, c)]) for c in cs]  # type: ignore[arg-type]
            print(f"    false alarms per frame {s}: worst condition {max(fa):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
