"""The door counter: exact on rendered walkers, within the stated error on a real clip."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from mimamori.edge.camera import Frame
from mimamori.edge.cli import main
from mimamori.edge.ridership import accuracy
from mimamori.edge.ridership.count import DoorCounter, count_video
from mimamori.edge.ridership.line import parse_line
from tests.ridership.scenes import pad, render, walk

ROOT = Path(__file__).resolve().parents[2]
VTEST = ROOT.parent / "shared" / "media" / "opencv" / "vtest.avi"
TRUTH = ROOT / "tests" / "data" / "vtest_truth.json"

# a door seen from above: 320x240, the counting line across the middle, drawn left to right,
# so walking down the image is "in" (boarding)
LINE = (40.0, 120.0, 280.0, 120.0)


def run(frames: list[Frame]) -> DoorCounter:
    counter = DoorCounter(LINE, band_px=12)
    for f in frames:
        counter.process(f)
    return counter


def test_walkers_each_way_are_counted_exactly() -> None:
    boarding = pad(walk(((100, 30), 0), ((100, 220), 40)), 40)
    alighting = pad(walk(((220, 225), 0), ((220, 25), 40)), 60)
    second = pad(walk(((160, 20), 0), ((170, 225), 35)), 110)
    counter = run(render([boarding, alighting, second], 170))
    assert (counter.line.ins, counter.line.outs) == (2, 1)


def test_a_lingerer_on_the_line_counts_once() -> None:
    # walks to the line, stands on it for 6 s (60 frames), then goes on through
    path = walk(((150, 30), 0), ((150, 118), 20), ((152, 121), 60), ((150, 225), 20))
    counter = run(render([pad(path, 40)], 160))
    assert (counter.line.ins, counter.line.outs) == (1, 0)


def test_a_step_in_and_back_out_counts_zero() -> None:
    # steps into the doorway (inside the band) and turns back
    path = walk(((120, 30), 0), ((120, 128), 25), ((120, 128), 10), ((120, 30), 25))
    counter = run(render([pad(path, 40)], 120))
    assert (counter.line.ins, counter.line.outs) == (0, 0)


def test_boarding_then_getting_off_again_counts_both_ways() -> None:
    path = walk(((200, 30), 0), ((200, 220), 30), ((200, 220), 10), ((200, 30), 30))
    counter = run(render([pad(path, 40)], 130))
    assert (counter.line.ins, counter.line.outs) == (1, 1)


def test_two_walkers_passing_each_other_are_both_counted() -> None:
    down = pad(walk(((130, 25), 0), ((150, 225), 40)), 40)
    up = pad(walk(((190, 225), 0), ((170, 25), 40)), 40)
    counter = run(render([down, up], 100))
    assert (counter.line.ins, counter.line.outs) == (1, 1)


def test_only_crossings_of_the_segment_as_drawn_count() -> None:
    # the line runs from x = 40 to x = 280; walkers pass 12 px beyond each end, one crosses
    # 6 px inside the left end, and one crosses inside on a slant so steep that neither its
    # last point above the band nor its first below lies beside the line
    outside_left = pad(walk(((28, 30), 0), ((28, 225), 40)), 10)
    outside_right = pad(walk(((292, 225), 0), ((292, 25), 40)), 10)
    inside_left = pad(walk(((46, 30), 0), ((46, 225), 40)), 70)
    slant = pad(walk(((360, 40), 0), ((320, 96), 20), ((220, 144), 4), ((210, 225), 15)), 110)
    counter = run(render([outside_left, outside_right, inside_left, slant], 170))
    assert (counter.line.ins, counter.line.outs) == (2, 0)


@pytest.mark.parametrize("bad", ["1,2,3", "a,b,c,d", "5,5,5,5"])
def test_a_bad_line_is_refused_with_the_reason(bad: str) -> None:
    with pytest.raises(ValueError, match="line"):
        parse_line(bad)


@pytest.mark.skipif(not VTEST.is_file(), reason="../shared/media not present")
def test_the_real_clip_is_within_ten_percent_each_way() -> None:
    truth = accuracy.load_truth(TRUTH)
    assert truth.line is not None
    result = count_video(VTEST, truth.line)
    scores = accuracy.score(truth.crossings, result.marks, result.frames, 100)
    for s in scores:
        assert s.truth > 10
        assert abs(s.error) <= 0.10, accuracy.table(scores)
        assert s.within_one >= 0.75, accuracy.table(scores)


def test_count_command_prints_json_and_writes_a_checking_video(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = tmp_path / "clip.avi"
    frames = render([pad(walk(((100, 30), 0), ((100, 220), 40)), 30)], 90)
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (320, 240))
    for f in frames:
        w.write(f.image)
    w.release()
    out = tmp_path / "checked.mp4"
    rc = main(["ridership", "count", str(clip), "--line", "40,120,280,120", "--json"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["in"], data["out"], data["frames"]) == (1, 0, 90)
    rc = main(["ridership", "count", str(clip), "--line", "40,120,280,120", "--annotate", str(out)])
    assert rc == 0
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 90


def test_count_command_names_a_missing_video(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["ridership", "count", str(tmp_path / "none.mp4"), "--line", "0,0,10,10"])
    assert rc == 2
    assert "none.mp4" in capsys.readouterr().err


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """Three seconds of one person walking down through a 320×240 overhead view."""
    path = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (320, 240))
    for f in render([pad(walk(((100, 30), 0), ((100, 220), 20)), 5)], 30):
        w.write(f.image)
    w.release()
    return path


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--line", "400,10,400,200"], "(400, 10) is outside the 320×240 frame"),
        (["--line", "40,120,280,-5"], "(280, -5) is outside the 320×240 frame"),
        (["--line", "-40,120,280,120"], "(-40, 120) is outside"),  # typed without "="
        ([], "--line: give the counting line"),
    ],
)
def test_count_command_refuses_a_line_nobody_can_cross(
    clip: Path, args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ridership", "count", str(clip), *args]) == 2
    assert says in capsys.readouterr().err


def test_count_command_refuses_a_still_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    still = tmp_path / "door.jpg"
    cv2.imwrite(str(still), render([], 1)[0].image)
    assert main(["ridership", "count", str(still), "--line", "40,120,280,120"]) == 2
    err = capsys.readouterr().err
    assert "door.jpg: a still image" in err and "needs a video" in err


def test_count_command_refuses_a_line_other_than_the_truth_files(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"line": [40, 120, 280, 120], "crossings": [[12, "in"]]}))
    rc = main(["ridership", "count", str(clip), "--line", "40,100,280,100", "--truth", str(truth)])
    assert rc == 2
    assert "differs from the line in" in capsys.readouterr().err
    # without --line the truth file's line is used, and the one walker is scored
    assert main(["ridership", "count", str(clip), "--truth", str(truth), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["in"], data["out"]) == (1, 0)


def test_nobody_is_carried_over_from_one_stop_to_the_next() -> None:
    """The door shuts with someone still tracked near the line; at the next stop somebody
    else stands just across it. That is two people, not one crossing."""
    first = walk(((150, 30), 0), ((150, 100), 20))  # walks up to the line, the door shuts
    second = walk(((155, 145), 0), ((155, 225), 20))  # the next stop: already across it
    frames = render([first + [None] * 60, [None] * 40 + [None] * 21 + second], 102)
    counter = DoorCounter(LINE, band_px=12)
    for f in frames[:21]:  # door open
        counter.process(f)
    for f in frames[21:61]:  # door shut, driving: the camera only learns the floor
        counter.learn(f)
    for f in frames[61:]:  # the next stop
        counter.process(f)
    assert (counter.line.ins, counter.line.outs) == (0, 0)
