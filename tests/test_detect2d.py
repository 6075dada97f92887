"""core.detect2d with real MediaPipe on a few seconds of the real sample clips: rate, anatomy, sides, people, cache."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from conftest import Recorder
from core import detect2d, person
from core.detect2d import detect
from core.detections import Detections
from core.common.errors import BadRange, InputNotFound, NoPersonFound, OutputNotWritable
from core.person import parse_person

L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 11, 12, 13, 14, 15, 16
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 23, 24, 25, 26, 27, 28
NOSE = 0


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("detect-cache")


@pytest.fixture(scope="module")
def balance(balance_clip: Path, cache_dir: Path) -> tuple[Detections, Recorder]:
    """The whole balance clip (100 frames, one man), default settings."""
    recorder = Recorder()
    return detect(balance_clip, reporter=recorder, cache_dir=cache_dir), recorder


@pytest.fixture(scope="module")
def walk_left(walk_clip: Path, cache_dir: Path) -> Detections:
    """2 s of the walk clip where both people are in view: the man on the roof is on the left."""
    return detect(walk_clip, start_s=2.0, end_s=4.0, person="left", cache_dir=cache_dir)


@pytest.fixture(scope="module")
def walk_right(walk_clip: Path, cache_dir: Path) -> Detections:
    """The same 2 s: the woman walking on the grass is on the right."""
    return detect(walk_clip, start_s=2.0, end_s=4.0, person="right", cache_dir=cache_dir)


def _length(world: np.ndarray, a: int, b: int) -> np.ndarray:
    return np.linalg.norm(world[:, a] - world[:, b], axis=-1)


def _decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("mimic-decode") and t.is_alive()]


def test_arrays_and_progress(balance: tuple[Detections, Recorder]) -> None:
    det, recorder = balance
    assert det.num_frames == 100 and (det.width, det.height, det.fps) == (1080, 1920, 60.0)
    assert det.image.shape == det.world.shape == (100, 33, 3) and det.present.shape == (100,)
    assert np.allclose(det.times, np.arange(100) / 60, atol=1e-3)
    xy = det.image[det.present][:, :, :2]
    assert np.nanmedian(xy[..., 0]) > 0 and np.nanmedian(xy[..., 0]) < 1080 and np.nanmedian(xy[..., 1]) < 1920
    assert recorder.stages == [("detect", 100)] and recorder.frames == list(range(1, 101))
    assert det.info["video"]["frame_count"] == 100 and det.info["person"] == "largest"


@pytest.mark.parametrize("which", ["balance", "walk_right", "walk_left"])
def test_detection_rate(which: str, request: pytest.FixtureRequest) -> None:
    det = request.getfixturevalue(which)
    det = det[0] if isinstance(det, tuple) else det
    assert det.present.mean() >= 0.95  # measured: 1.00 on all three
    assert np.isnan(det.image[~det.present, :, :2]).all() and (det.image[~det.present, :, 2] == 0).all()


@pytest.mark.parametrize("which", ["balance", "walk_right", "walk_left"])
def test_world_landmarks_are_anatomical(which: str, request: pytest.FixtureRequest) -> None:
    det = request.getfixturevalue(which)
    det = det[0] if isinstance(det, tuple) else det
    w = det.world[det.present].astype(np.float64)
    thigh = _length(w, L_HIP, L_KNEE), _length(w, R_HIP, R_KNEE)
    shin = _length(w, L_KNEE, L_ANKLE), _length(w, R_KNEE, R_ANKLE)
    upper = _length(w, L_SHOULDER, L_ELBOW), _length(w, R_SHOULDER, R_ELBOW)
    fore = _length(w, L_ELBOW, L_WRIST), _length(w, R_ELBOW, R_WRIST)
    for side in (0, 1):  # measured medians: thigh/shin 1.01..1.11, upper arm/forearm 0.93..1.16
        assert 0.85 < np.median(thigh[side] / shin[side]) < 1.35
        assert 0.8 < np.median(upper[side] / fore[side]) < 1.35
        assert 0.3 < np.median(thigh[side]) < 0.55 and 0.18 < np.median(upper[side]) < 0.35  # metres
    for left, right in (thigh, shin, upper, fore):  # measured: 0.93..1.11
        assert 0.85 < np.median(left / right) < 1.18
    hip_y = w[:, [L_HIP, R_HIP], 1].mean(axis=1)
    assert (w[:, [L_ANKLE, R_ANKLE], 1] < hip_y[:, None] - 0.2).all(axis=1).mean() >= 0.98  # measured 1.00


@pytest.mark.parametrize("which", ["balance", "walk_right", "walk_left"])
def test_left_and_right_not_swapped(which: str, request: pytest.FixtureRequest) -> None:
    """Facing = (left shoulder - right shoulder) x up must point where the nose is (Mimic axes: X × Y = Z)."""
    det = request.getfixturevalue(which)
    det = det[0] if isinstance(det, tuple) else det
    w = det.world[det.present].astype(np.float64)
    facing = np.cross(w[:, L_SHOULDER] - w[:, R_SHOULDER], [0.0, 1.0, 0.0])
    nose = w[:, NOSE] - (w[:, L_SHOULDER] + w[:, R_SHOULDER]) / 2
    assert ((facing * nose).sum(axis=1) > 0).mean() >= 0.9  # measured 1.00


def test_left_and_right_people_differ(walk_left: Detections, walk_right: Detections) -> None:
    hip_left = np.nanmean(walk_left.image[:, [L_HIP, R_HIP], 0])
    hip_right = np.nanmean(walk_right.image[:, [L_HIP, R_HIP], 0])
    assert hip_right - hip_left > 300  # measured: 650 px (the man on the roof) vs 1127 px (the woman)
    feet_left = np.nanmean(walk_left.image[:, [L_ANKLE, R_ANKLE], 1])
    feet_right = np.nanmean(walk_right.image[:, [L_ANKLE, R_ANKLE], 1])
    assert feet_right - feet_left > 300  # the man stands on a roof: his feet are much higher in the image
    assert len(walk_left.info["candidates"]) == 2 and walk_left.info["candidates"] != walk_right.info["candidates"]


def test_person_by_number(walk_clip: Path, walk_right: Detections, cache_dir: Path) -> None:
    second = detect(walk_clip, start_s=2.0, end_s=2.5, person=1, cache_dir=cache_dir)
    assert np.allclose(second.image[:, :, :2], walk_right.image[:15, :, :2], atol=2.0, equal_nan=True)
    with pytest.raises(NoPersonFound, match="only 2 people"):
        detect(walk_clip, start_s=2.0, end_s=2.5, person=5, cache_dir=cache_dir)


def test_parse_person() -> None:
    assert parse_person("largest") == "largest" and parse_person("2") == 2 and parse_person(0) == 0
    for bad in ("biggest", -1, True, "1.5"):
        with pytest.raises(ValueError, match="person must be"):
            parse_person(bad)


def test_cache_hit_runs_no_mediapipe(
    balance: tuple[Detections, Recorder], balance_clip: Path, cache_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, _ = balance
    assert len(list((cache_dir / "detect").glob("*.npz"))) >= 1

    def no_mediapipe(static: bool) -> Any:
        raise AssertionError("MediaPipe ran although the result was cached")

    monkeypatch.setattr(detect2d, "make_pose", no_mediapipe)
    moved = tmp_path / "renamed.mp4"  # the key is the content, not the path
    shutil.copyfile(balance_clip, moved)
    for clip in (balance_clip, moved):
        again = detect(clip, cache_dir=cache_dir)
        for name in ("times", "image", "world", "present"):
            assert np.array_equal(getattr(again, name), getattr(first, name), equal_nan=True)
        assert (again.width, again.height, again.fps) == (first.width, first.height, first.fps)
    assert again.info["video"]["path"] == str(moved)
    with pytest.raises(AssertionError, match="MediaPipe ran"):  # another setting is another key
        detect(balance_clip, start_s=0.5, cache_dir=cache_dir)
    with pytest.raises(AssertionError, match="MediaPipe ran"):
        detect(balance_clip, person="left", cache_dir=cache_dir)


def test_cache_location_and_corrupt_file(balance_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIMIC_CACHE_DIR", str(tmp_path / "env-cache"))
    det = detect(balance_clip, start_s=1.5)
    files = list((tmp_path / "env-cache" / "detect").glob("*.npz"))
    assert len(files) == 1 and det.num_frames == 10
    whole = files[0].read_bytes()
    for broken in (b"truncated", whole[: len(whole) // 2], b""):  # not a zip, a half-written zip, an empty file
        files[0].write_bytes(broken)
        again = detect(balance_clip, start_s=1.5)  # an unreadable cache file is recomputed and replaced
        assert np.array_equal(again.image, det.image, equal_nan=True) and files[0].stat().st_size > 1000
    assert [p.name for p in files[0].parent.iterdir()] == [files[0].name]  # no temp files left


def test_unwritable_cache_does_not_fail_detection(balance_clip: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache that cannot be written (a file in the folder's place; a folder refusing temp files, which root
    cannot provoke with permissions, so the atomic writer is made to refuse) is skipped, not a failed run."""
    blocked = tmp_path / "cache"
    blocked.mkdir()
    (blocked / "detect").write_text("a file where the cache folder should be")
    assert detect(balance_clip, start_s=1.5, cache_dir=blocked).num_frames == 10

    def refuse(path: Path) -> None:
        raise OutputNotWritable(f"Cannot write into {path.parent}.", "")

    monkeypatch.setattr(detect2d, "atomic_path", refuse)
    assert detect(balance_clip, start_s=1.5, cache_dir=tmp_path / "other").num_frames == 10


def test_no_cache_writes_nothing(balance_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    det = detect(balance_clip, start_s=1.5, cache_dir=tmp_path, use_cache=False)
    assert det.num_frames == 10 and not (tmp_path / "detect").exists()
    monkeypatch.setenv("MIMIC_CACHE_DIR", str(tmp_path))
    det = detect(balance_clip, start_s=1.5, cache_dir=False)  # what core.pipeline passes for --no-cache
    assert det.num_frames == 10 and not (tmp_path / "detect").exists()


def test_no_person(tmp_path: Path) -> None:
    clip = tmp_path / "empty_room.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    rng = np.random.default_rng(0)
    for _ in range(10):
        writer.write(rng.integers(90, 110, (240, 320, 3), dtype=np.uint8))
    writer.release()
    with pytest.raises(NoPersonFound, match=r"No person was found in empty_room\.mp4\. Film the whole body") as err:
        detect(clip, cache_dir=tmp_path)
    assert "\n" not in str(err.value) and not list(tmp_path.glob("detect/*"))


def test_bad_inputs(balance_clip: Path, tmp_path: Path) -> None:
    with pytest.raises(InputNotFound):
        detect(tmp_path / "missing.mp4", cache_dir=tmp_path)
    with pytest.raises(BadRange):
        detect(balance_clip, start_s=1.7, cache_dir=tmp_path)
    with pytest.raises(BadRange):
        detect(balance_clip, start_s=1.0, end_s=0.5, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="person must be"):
        detect(balance_clip, person="tallest", cache_dir=tmp_path)


def test_keyboard_interrupt_stops_promptly(balance_clip: Path, tmp_path: Path) -> None:
    class Interrupting(Recorder):
        def update(self, frame: int) -> None:
            if frame == 5:
                self.at = time.monotonic()
                raise KeyboardInterrupt

    reporter = Interrupting()
    with pytest.raises(KeyboardInterrupt):
        detect(balance_clip, start_s=0.2, reporter=reporter, cache_dir=tmp_path)
    assert time.monotonic() - reporter.at < 2.0
    assert _decode_threads() == [] and not list(tmp_path.glob("detect/*"))


def test_rotated_phone_clip(balance_clip: Path, tmp_path: Path) -> None:
    """A portrait clip stored landscape with a 90° rotation tag is detected upright (feet below hips in pixels)."""
    from tests.test_video import set_rotation

    clip = tmp_path / "phone.mp4"
    cap = cv2.VideoCapture(str(balance_clip))
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 60, (960, 540))
    for _ in range(12):
        ok, bgr = cap.read()
        small = cv2.resize(bgr, (540, 960), interpolation=cv2.INTER_AREA)
        writer.write(cv2.rotate(small, cv2.ROTATE_90_COUNTERCLOCKWISE))  # stored sideways, as phones do
    writer.release()
    cap.release()
    set_rotation(clip, 90)
    det = detect(clip, cache_dir=tmp_path)
    assert (det.width, det.height) == (540, 960) and det.info["video"]["rotation_deg"] == 90
    img = det.image[det.present]
    assert det.present.mean() >= 0.9
    assert (img[:, [L_ANKLE, R_ANKLE], 1].min(axis=1) > img[:, [L_HIP, R_HIP], 1].max(axis=1)).all()


def test_choice_is_made_on_the_first_frame_and_followed(
    walk_clip: Path, walk_left: Detections, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the rule picks someone other than the person MediaPipe's tracking graph found first, that person is
    followed from the first frame on: `choose` is patched to pick the smallest (the man on the roof) instead of the
    largest (the woman), so the result must be the man, as person="left" sees him."""
    monkeypatch.setattr(person, "choose", lambda people, rule: int(np.argmin([p.area for p in people])))
    det = detect(walk_clip, start_s=2.0, end_s=4.0, cache_dir=cache_dir)
    man = walk_left.image[:, :, :2]
    assert det.present[0] and np.allclose(det.image[0, :, :2], man[0], atol=2.0)
    assert det.present.mean() >= 0.95
    seen = det.present & walk_left.present
    hip_x = det.image[seen][:, [L_HIP, R_HIP], 0].mean(axis=1)
    assert np.median(np.abs(hip_x - man[seen][:, [L_HIP, R_HIP], 0].mean(axis=1))) < 30
    assert [c["chosen"] for c in det.info["candidates"]] == [False, True]


def test_same_video_and_settings_give_identical_detections(walk_clip: Path) -> None:
    """No thread timing may change the result (the cache relies on it): two uncached runs are identical."""
    first = detect(walk_clip, start_s=2.0, end_s=2.7, use_cache=False)
    second = detect(walk_clip, start_s=2.0, end_s=2.7, use_cache=False)
    np.testing.assert_array_equal(first.image, second.image)
    np.testing.assert_array_equal(first.present, second.present)
