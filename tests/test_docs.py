"""README and docs/*.md: every relative link and every image they reference is a file."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: [text](target) and ![alt](target); a target with a scheme or only an anchor is not a file
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
EXTERNAL = re.compile(r"^([a-z][a-z0-9+.-]*:|#)", re.I)


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def broken_links(page: Path) -> list[str]:
    """The relative link targets in ``page`` that name no file (anchors ignored)."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
    targets = [t for t in LINK.findall(text) if not EXTERNAL.match(t)]
    return [t for t in targets if not (page.parent / t.split("#")[0]).exists()]


def test_every_relative_link_and_image_in_readme_and_docs_resolves() -> None:
    assert len(pages()) > 5, "docs/ pages missing"
    broken = {p.relative_to(ROOT).as_posix(): broken_links(p) for p in pages()}
    assert {p: b for p, b in broken.items() if b} == {}


def test_readme_shows_a_screenshot_of_each_main_page() -> None:
    images = set(
        re.findall(r"!\[[^\]]*\]\((docs/screens/[^)]+)\)", (ROOT / "README.md").read_text())
    )
    names = {Path(i).name for i in images}
    assert {"fleet.png", "device.png", "alerts.png", "ridership.png", "counter.png"} <= names
    assert "kiosk.png" in names
    assert all((ROOT / i).stat().st_size < 320_000 for i in images)


def test_a_broken_link_or_image_is_found(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# here\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md#here) [web](https://example.org/x) [top](#here) ![shot](gone.png)\n"
        "see [the missing page](docs/missing.md)\n"
        "```\n[in code](not-a-link.md)\n```\n"
    )
    assert broken_links(page) == ["gone.png", "docs/missing.md"]
