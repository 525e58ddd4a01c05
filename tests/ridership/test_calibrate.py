"""`mimamori ridership calibrate`: settings chosen from a labelled clip, as a config block."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import cv2
import pytest

from mimamori.edge.cli import main
from mimamori.edge.config import DoorSection
from mimamori.edge.ridership import accuracy
from mimamori.edge.ridership.calibrate import (
    Setting,
    Trial,
    calibrate,
    config_block,
    default_trial,
)
from tests.ridership.scenes import pad, render, walk


@pytest.fixture
def clip(tmp_path: Path) -> tuple[Path, Path]:
    paths = [
        pad(walk(((100, 30), 0), ((100, 220), 40)), 30),  # boards
        pad(walk(((220, 225), 0), ((220, 25), 40)), 60),  # gets off
        pad(walk(((160, 20), 0), ((170, 225), 35)), 110),  # boards
    ]
    video = tmp_path / "door.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (320, 240))
    for f in render(paths, 170):
        w.write(f.image)
    w.release()
    truth = tmp_path / "door.json"
    truth.write_text(
        json.dumps(
            {
                "line": [40, 120, 280, 120],
                "how_counted": "rendered: each walker's path crosses y = 120 once",
                "crossings": [[50, "in"], [80, "out"], [127, "in"]],
            }
        ),
        encoding="utf-8",
    )
    return video, truth


@pytest.mark.slow  # 8-20 s: the default run keeps its margin under five minutes
def test_prints_before_and_after_and_a_block_the_config_accepts(
    clip: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    video, truth = clip
    assert main(["ridership", "calibrate", str(video), "--truth", str(truth)]) == 0
    out = capsys.readouterr().out
    assert "before (defaults)" in out and "after" in out
    block = out[out.index("[[ridership.doors]]") :]
    door = tomllib.loads(block)["ridership"]["doors"][0]
    assert door["line"] == [40, 120, 280, 120]
    assert "worst direction +0.0%" in out  # the rendered walkers are counted exactly
    section = DoorSection.model_validate(door | {"schedule": [[0, 10]]})
    assert section.detector in ("blobs", "yolox")


def test_a_truth_file_without_a_line_needs_one(
    clip: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video, _ = clip
    bad = tmp_path / "noline.json"
    bad.write_text(json.dumps({"crossings": [[5, "in"]]}), encoding="utf-8")
    assert main(["ridership", "calibrate", str(video), "--truth", str(bad)]) == 2
    assert "noline.json" in capsys.readouterr().err
    assert main(["ridership", "calibrate", str(video), "--truth", str(tmp_path / "x.json")]) == 2
    assert "x.json" in capsys.readouterr().err


def test_the_person_size_is_chosen_when_two_board_side_by_side(tmp_path: Path) -> None:
    """Two people boarding shoulder to shoulder make one blob: only a calibrated person size
    splits it, and calibration finds one from three labelled crossings."""
    paths = [
        pad(walk(((140, 30), 0), ((140, 220), 40)), 30),  # two abreast, touching
        pad(walk(((172, 30), 0), ((172, 220), 40)), 30),
        pad(walk(((220, 225), 0), ((220, 25), 40)), 90),  # one gets off
    ]
    video = tmp_path / "abreast.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (320, 240))
    for f in render(paths, 150):
        w.write(f.image)
    w.release()
    truth = accuracy.Truth((40.0, 120.0, 280.0, 120.0), [(50, "in"), (50, "in"), (110, "out")])
    trials = calibrate(video, truth, truth.line, detectors=("blobs",))
    before, best = default_trial(trials), trials[0]
    assert before is not None and before.cost[0] == 0.5  # one boarding of two lost
    assert best.cost == (0.0, 0.0) and best.setting.person_area is not None
    # the best blobs setting was counted again with a shorter and a longer background memory
    memories = {t.setting.background_frames for t in trials if t.setting == best.setting}
    again = {
        t.setting.background_frames
        for t in trials
        if t.setting.person_area == best.setting.person_area
    }
    assert len(memories) == 1 and again == {150, 300, 600}
    block = config_block(best, truth.line, "rear", "picamera")
    door = tomllib.loads(block)["ridership"]["doors"][0]
    assert door["person_area"] == best.setting.person_area
    assert DoorSection.model_validate(door | {"schedule": [[0, 10]]}).person_area


def test_a_chosen_background_memory_goes_into_the_block_and_the_config_takes_it() -> None:
    scores = accuracy.score([(5, "in")], [(5, "in")], 50, 100)
    line = (40.0, 120.0, 280.0, 120.0)
    for frames, written in ((150, True), (300, False)):
        best = Trial(Setting("blobs", background_frames=frames), "center", 6.0, scores)
        door = tomllib.loads(config_block(best, line, "rear", "picamera"))["ridership"]["doors"][0]
        assert ("background_frames" in door) is written
        section = DoorSection.model_validate(door | {"schedule": [[0, 10]]})
        assert section.background_frames == frames
