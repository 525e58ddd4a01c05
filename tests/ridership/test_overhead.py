"""The overhead door path (blobs) on rendered overhead scenes: head-and-shoulder people with
textured clothes and shadows that move with them, lighting steps, sweeping shadows, sun on the
floor, two abreast, two passing, one lingering, one leaning in and backing out.

The door is calibrated as a real one would be: one person's blob is 0.017 of the frame (the
median over a single rendered walker), and shadows count as shadows down to 0.35 of the floor's
brightness."""

from __future__ import annotations

import pytest

from mimamori.edge.ridership.count import DoorCounter
from mimamori.edge.vision.blobs import BlobDetector, BlobSettings
from tests.ridership.overhead import Person, light_step, render, shadow_sweep, sun_patch
from tests.ridership.scenes import pad, walk

LINE = (20.0, 120.0, 300.0, 120.0)  # across the door; walking down the image is boarding
PERSON_AREA = 0.017
GREEN = {"coat": (40, 120, 60), "hair": (40, 70, 110)}


def down(x: float, start: int, **kw: object) -> Person:
    return Person(pad(walk(((x, 15), 0), ((x, 228), 40)), start), **kw)  # type: ignore[arg-type]


def up(x: float, start: int, **kw: object) -> Person:
    return Person(pad(walk(((x, 228), 0), ((x, 15), 40)), start), **kw)  # type: ignore[arg-type]


SCENES = {
    "one each way": ([down(110, 30), up(210, 90, **GREEN)], 150, None, (1, 1)),
    "lighting step, nobody there": ([], 120, light_step(60, 1.4), (0, 0)),
    "light drops while one walks": ([down(150, 40)], 120, light_step(58, 0.7), (1, 0)),
    "soft shadow sweeps across": ([], 160, shadow_sweep(40), (0, 0)),
    "deep shadow sweeps across": ([], 160, shadow_sweep(40, depth=0.35), (0, 0)),
    "bright band sweeps across": ([], 160, shadow_sweep(40, depth=1.5), (0, 0)),
    "sun patch falls on the line": ([], 120, sun_patch(50), (0, 0)),
    "two abreast": ([down(136, 40), down(184, 40, **GREEN)], 110, None, (2, 0)),
    "two passing": (
        [
            Person(pad(walk(((135, 15), 0), ((140, 228), 40)), 40)),
            Person(pad(walk(((185, 228), 0), ((180, 15), 40)), 40), **GREEN),  # type: ignore[arg-type]
        ],
        110,
        None,
        (1, 1),
    ),
    "one lingers on the line": (
        [
            Person(
                pad(walk(((160, 15), 0), ((160, 116), 20), ((161, 122), 60), ((160, 228), 20)), 40)
            )
        ],
        170,
        None,
        (1, 0),
    ),
    "one leans in and backs out": (
        [
            Person(
                pad(walk(((120, 15), 0), ((120, 128), 25), ((120, 128), 10), ((120, 15), 25)), 40)
            )
        ],
        130,
        None,
        (0, 0),
    ),
    "boards, then gets off again": (
        [
            Person(
                pad(walk(((200, 15), 0), ((200, 225), 30), ((200, 225), 10), ((200, 15), 30)), 40)
            )
        ],
        140,
        None,
        (1, 1),
    ),
}


def count(name: str, **settings: object) -> tuple[int, int]:
    people, frames, light, _ = SCENES[name]
    rendered = render(people, frames, **({"light": light} if light else {}))  # type: ignore[arg-type]
    counter = DoorCounter(LINE, band_px=12, **settings)  # type: ignore[arg-type]
    for f in rendered[:25]:  # doors closed: the background settles
        counter.learn(f)
    for f in rendered[25:]:
        counter.process(f)
    return counter.line.ins, counter.line.outs


@pytest.mark.parametrize("name", list(SCENES))
def test_every_scripted_overhead_case_is_counted_right(name: str) -> None:
    assert count(name, person_area=PERSON_AREA, shadow_ratio=0.35) == SCENES[name][3]


def test_without_the_person_size_two_abreast_count_as_one() -> None:
    assert count("two abreast") == (1, 0)


def test_a_patch_of_sunlight_is_not_a_blob_but_a_person_is() -> None:
    frames = render([down(150, 70)], 110, light=sun_patch(40))
    checked, unchecked = BlobDetector(), BlobDetector(BlobSettings(light_cv=0))
    seen: dict[str, list[int]] = {"checked": [], "unchecked": []}
    for f in frames:
        seen["checked"].append(len(checked.detect(f.image)))
        seen["unchecked"].append(len(unchecked.detect(f.image)))
    # the patch (frames 41-60; the background takes it in within a second): light, not a person
    assert sum(seen["unchecked"][41:60]) >= 5
    assert sum(seen["checked"][41:60]) == 0
    # the walker (from frame 75): seen
    assert sum(n > 0 for n in seen["checked"][75:105]) >= 25
