"""`mimamori kiosk ...` commands: what an installer runs while aiming the desk camera."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mimamori.edge.cli import command_group
from mimamori.kiosk.document import Still, rectify

#: the preview's longest side, px
PREVIEW_PX = 1280
EXIT_NO_PAGE, EXIT_UNREADABLE = 1, 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ksub = command_group(
        sub,
        "kiosk",
        help="counter-kiosk tools",
        description="Counter-kiosk tools that run without a broker or a call.",
    )
    check = ksub.add_parser(
        "check-desk",
        help="find the page in photos from the desk camera and say if it is readable",
        description="For each photo of the desk (a frame from the desk camera with a form "
        "on the desk): whether the page was found, its four corners (TL, TR, BR, BL in image "
        "pixels), its aspect (width / height; A4 portrait is 0.707), the resolution the camera "
        "reaches over it (dpi, for the paper size its shape names; 200 wanted), and warnings "
        "(glare, blur, too far, partly out of view). Writes a preview PNG with the page "
        "outlined. Exit status 0 when every photo shows a page, 1 when one does not, 2 when a "
        "file cannot be read.",
    )
    check.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="JPEG or PNG")
    check.add_argument("--json", action="store_true", help="one JSON array of rows")
    out = check.add_mutually_exclusive_group()
    out.add_argument(
        "--preview-dir",
        type=Path,
        help="write the previews here (default: next to each image, NAME.check.png)",
    )
    out.add_argument("--no-preview", action="store_true", help="write no preview")
    check.set_defaults(func=check_desk)


def preview(image: np.ndarray, still: Still) -> np.ndarray:
    """The photo, downscaled, with the page outlined, its corners marked and the verdict."""
    scale = min(1.0, PREVIEW_PX / max(image.shape[:2]))
    out = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    thick = max(2, int(round(max(out.shape[:2]) / 300)))
    if still.found:
        pts = np.round(np.array(still.corners) * scale).astype(np.int32)
        cv2.polylines(out, [pts], True, (0, 200, 0), thick, cv2.LINE_AA)
        for label, (x, y) in zip(("TL", "TR", "BR", "BL"), pts, strict=True):
            cv2.circle(out, (int(x), int(y)), 3 * thick, (0, 0, 255), -1, cv2.LINE_AA)
            cv2.putText(
                out,
                label,
                (int(x) + 6, int(y) + 18),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.6,
                (0, 0, 255),
                2,
                cv2.LINE_AA,
            )
        head = f"page found: aspect {still.aspect}, {still.camera_dpi:.0f} dpi"
    else:
        head = "no page found"
    lines = [head, *still.warnings]
    for i, text in enumerate(lines):
        y = 28 + 26 * i
        colour = (0, 160, 0) if i == 0 and still.found else (0, 0, 230)
        cv2.putText(out, text[:110], (10, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 4)
        cv2.putText(out, text[:110], (10, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2)
    return out


def check_one(path: Path, preview_to: Path | None) -> dict[str, Any]:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
    if image is None or image.size == 0:
        why = "no such file" if not path.exists() else "not an image OpenCV can read"
        return {
            "file": str(path),
            "found": False,
            "error": f"{why}: expected a JPEG or PNG photo from the desk camera",
        }
    still = rectify(image)
    row: dict[str, Any] = {
        "file": str(path),
        "found": still.found,
        "corners": [[x, y] for x, y in still.corners] if still.found else None,
        "aspect": still.aspect,
        "paper": still.paper,
        "dpi": still.camera_dpi,
        "warnings": still.warnings,
        "width": image.shape[1],
        "height": image.shape[0],
    }
    if preview_to is not None:
        preview_to.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(preview_to), preview(image, still))
        row["preview"] = str(preview_to)
    return row


def check_desk(args: argparse.Namespace) -> int:
    rows = []
    for path in args.images:
        if args.no_preview:
            to = None
        elif args.preview_dir is not None:
            to = args.preview_dir / f"{path.stem}.check.png"
        else:
            to = path.with_name(f"{path.stem}.check.png")
        rows.append(check_one(path, to))
    if args.json:
        print("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n]")
    else:
        for r in rows:
            print(describe(r))
    if any("error" in r for r in rows):
        return EXIT_UNREADABLE
    return 0 if all(r["found"] for r in rows) else EXIT_NO_PAGE


def describe(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{r['file']}: {r['error']}"
    if not r["found"]:
        text = f"{r['file']}: no page found"
    else:
        corners = " ".join(
            f"{n} ({x:.0f}, {y:.0f})"
            for n, (x, y) in zip(("TL", "TR", "BR", "BL"), r["corners"], strict=True)
        )
        paper = f" ({r['paper']})" if r["paper"] else ""
        text = (
            f"{r['file']}: page found; corners {corners}; aspect {r['aspect']:.3f}{paper}; "
            f"{r['dpi']:.0f} dpi over the page"
        )
    lines = [text, *(f"  warning: {w}" for w in r["warnings"])]
    if r.get("preview"):
        lines.append(f"  preview: {r['preview']}")
    return "\n".join(lines)
