"""core.video on the real sample clips and on small synthetic files: size, rotation, timestamps, range, errors, thread."""

from __future__ import annotations

import contextlib
import struct
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from core import video
from core.common.errors import BadRange, DamagedVideo, EmptyClip, InputNotFound, NotAVideo
from core.video import iter_frames, probe

# a 3x3 MP4 display matrix (16.16 fixed point, last column 2.30) per clockwise rotation
_MATRICES = {
    90: (0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000),
    180: (-0x10000, 0, 0, 0, -0x10000, 0, 0, 0, 0x40000000),
    270: (0, -0x10000, 0, 0x10000, 0, 0, 0, 0, 0x40000000),
}


def write_clip(path: Path, frames: int = 10, fps: float = 10.0, size: tuple[int, int] = (64, 48)) -> Path:
    """A small MPEG-4 clip: frame i is grey level 20*i with a white block in the stored top-left corner."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        img = np.full((size[1], size[0], 3), 20 * i, np.uint8)
        img[: size[1] // 2, : size[0] // 4] = 255
        writer.write(img)
    writer.release()
    return path


def _boxes(data: bytearray, names: tuple[bytes, ...]) -> list[int]:
    """Offsets of the nested boxes `names` (moov/trak/...) in an MP4 file."""
    offsets, offset = [], 0
    for depth, name in enumerate(names):
        while data[offset + 4 : offset + 8] != name:
            offset += struct.unpack(">I", data[offset : offset + 4])[0]
        offsets.append(offset)
        if depth < len(names) - 1:
            offset += 8
    return offsets


def set_rotation(path: Path, degrees: int) -> None:
    """Write a phone-style rotation into the track header (tkhd version 0) of an MP4 made by write_clip."""
    data = bytearray(path.read_bytes())
    tkhd = _boxes(data, (b"moov", b"trak", b"tkhd"))[-1]
    assert data[tkhd + 8] == 0
    matrix = tkhd + 8 + 4 + 5 * 4 + 8 + 4 * 2
    data[matrix : matrix + 36] = struct.pack(">9i", *_MATRICES[degrees])
    path.write_bytes(bytes(data))


def set_frame_durations(path: Path, runs: list[tuple[int, int]]) -> None:
    """Replace the sample durations (stts: (count, ticks) runs) of an MP4 made by write_clip: variable frame rate."""
    data = bytearray(path.read_bytes())
    chain = _boxes(data, (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stts"))
    stts = chain[-1]
    old_size = struct.unpack(">I", data[stts : stts + 4])[0]
    body = struct.pack(">II", 0, len(runs)) + b"".join(struct.pack(">II", n, d) for n, d in runs)
    new = struct.pack(">I4s", 8 + len(body), b"stts") + body
    for parent in chain[:-1]:  # moov is the last box of write_clip's files, so no chunk offset moves
        size = struct.unpack(">I", data[parent : parent + 4])[0]
        data[parent : parent + 4] = struct.pack(">I", size + len(new) - old_size)
    data[stts : stts + old_size] = new
    path.write_bytes(bytes(data))


def _decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("mimic-decode") and t.is_alive()]


def test_probe_sample_clips(walk_clip: Path, balance_clip: Path) -> None:
    walk = probe(walk_clip)
    assert (walk.width, walk.height, walk.fps, walk.frame_count, walk.rotation_deg) == (1768, 994, 30.0, 230, 0)
    assert walk.duration_s == pytest.approx(230 / 30)
    balance = probe(balance_clip)
    assert (balance.width, balance.height, balance.fps, balance.frame_count) == (1080, 1920, 60.0, 100)


def test_range_is_exact_and_rgb(walk_clip: Path) -> None:
    frames = list(iter_frames(walk_clip, start_s=2.0, end_s=3.0))
    assert [f.index for f in frames] == list(range(60, 90))
    assert np.allclose([f.time_s for f in frames], np.arange(60, 90) / 30.0, atol=1e-3)
    cap = cv2.VideoCapture(str(walk_clip))
    for _ in range(61):
        ok, bgr = cap.read()
    cap.release()
    assert ok and frames[0].rgb.dtype == np.uint8 and frames[0].rgb.shape == (994, 1768, 3)
    assert np.array_equal(frames[0].rgb, bgr[..., ::-1])  # frame 60 exactly, in RGB order


def test_whole_clip_to_the_end(balance_clip: Path) -> None:
    frames = list(iter_frames(balance_clip))
    assert len(frames) == 100 and frames[-1].index == 99
    assert np.allclose(np.diff([f.time_s for f in frames]), 1 / 60, atol=1e-3)
    assert frames[0].rgb.shape == (1920, 1080, 3)


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotation_metadata_is_applied(tmp_path: Path, degrees: int) -> None:
    clip = write_clip(tmp_path / f"r{degrees}.mp4")
    set_rotation(clip, degrees)
    info = probe(clip)
    assert info.rotation_deg == degrees
    upright = (48, 64) if degrees in (90, 270) else (64, 48)
    assert (info.width, info.height) == upright
    first = next(iter(iter_frames(clip))).rgb
    assert first.shape == (upright[1], upright[0], 3)
    # the stored top-left white block, rotated clockwise for display
    ys, xs = np.nonzero(first[..., 0] > 128)
    centre = (xs.mean() / upright[0], ys.mean() / upright[1])
    expected = {90: (0.75, 0.125), 180: (0.875, 0.75), 270: (0.25, 0.875)}[degrees]
    assert centre == pytest.approx(expected, abs=0.06)


def test_variable_frame_rate_uses_real_timestamps(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "vfr.mp4")  # 10 frames, time base 1/10240 s
    set_frame_durations(clip, [(5, 768), (5, 1280)])  # 0.075 s then 0.125 s per frame
    expected = np.concatenate([np.arange(5) * 0.075, 0.375 + np.arange(5) * 0.125])
    frames = list(iter_frames(clip))
    assert np.allclose([f.time_s for f in frames], expected, atol=1e-3)
    assert [round(float(f.rgb[24:, 16:].mean()) / 20) for f in frames] == list(range(10))  # each frame once, in order
    ranged = list(iter_frames(clip, start_s=0.4, end_s=0.8))
    assert [f.index for f in ranged] == [6, 7, 8]
    assert np.allclose([f.time_s for f in ranged], [0.5, 0.625, 0.75], atol=1e-3)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputNotFound, match="does not exist"):
        probe(tmp_path / "nope.mp4")


def test_text_file_is_not_a_video(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n")
    with pytest.raises(NotAVideo) as err:
        iter_frames(fake)
    assert "\n" not in str(err.value) and "Convert it" in str(err.value)


def test_zero_frames_is_empty(tmp_path: Path) -> None:
    empty = tmp_path / "empty.avi"
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    writer.release()
    with pytest.raises(EmptyClip, match="no frames"):
        probe(empty)


@pytest.mark.parametrize(
    ("start", "end", "words"),
    [(230 / 30, None, "at or past the end"), (100.0, None, "at or past the end"), (2.0, 2.0, "not after"),
     (3.0, 1.0, "not after"), (-1.0, None, "0 s or more")],
)
def test_bad_ranges(walk_clip: Path, start: float, end: float | None, words: str) -> None:
    with pytest.raises(BadRange, match=words) as err:
        iter_frames(walk_clip, start_s=start, end_s=end)
    assert "\n" not in str(err.value)


def test_thread_stops_when_the_consumer_stops(walk_clip: Path) -> None:
    frames = iter_frames(walk_clip)
    with contextlib.closing(frames):
        assert next(frames).index == 0
        assert len(_decode_threads()) == 1
    assert _decode_threads() == []


def test_thread_stops_on_keyboard_interrupt(walk_clip: Path) -> None:
    with pytest.raises(KeyboardInterrupt), contextlib.closing(iter_frames(walk_clip)) as frames:
        for frame in frames:
            if frame.index == 3:
                raise KeyboardInterrupt
    assert _decode_threads() == []


def test_decoder_error_reaches_the_consumer(walk_clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0

    def failing(img: np.ndarray, code: int) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls > 2:
            raise RuntimeError("decoder broke")
        return img[..., ::-1]

    monkeypatch.setattr(video.cv2, "cvtColor", failing)
    got = []
    with pytest.raises(RuntimeError, match="decoder broke"), contextlib.closing(iter_frames(walk_clip)) as frames:
        got.extend(f.index for f in frames)
    assert got == [0, 1]
    assert _decode_threads() == []


def test_frames_whose_durations_are_all_zero_are_a_damaged_video(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "zero.mp4")
    set_frame_durations(clip, [(10, 0)])  # every timestamp 0: once converted at 0.5 fps without a word
    with pytest.raises(DamagedVideo, match="reports 1 frames per second: its frame timing is damaged"):
        probe(clip)  # the decoder guesses 1 fps and invents timestamps 0, 1, 2 ... s


def test_repeated_and_backward_timestamps_are_reported_and_left_out(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "repeat.mp4")  # time base 1/10240 s
    set_frame_durations(clip, [(4, 1024), (3, 0), (3, 1024)])  # frames 4-6 share frame 4's time
    warnings: list[str] = []
    frames = list(video.frames_of(*_probed(clip), on_warning=warnings.append))
    times = [f.time_s for f in frames]
    assert len(warnings) == 1 and "repeat or go back in time" in warnings[0], warnings
    assert times == sorted(times) and len(frames) == 10  # the frames arrive; resampling drops the repeats
    assert sum(b <= a for a, b in zip(times, times[1:])) == int(warnings[0].split(": ")[1].split()[0])


def _probed(clip: Path) -> tuple[video.VideoInfo, float, float]:
    info = probe(clip)
    return (info, *video.check_range(info, None, None))
