"""core.hands_face2d with real MediaPipe on a second of the real sample clips: hands found, sides, face, cache."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest

from conftest import Recorder
from core import hands_face2d
from core.detect2d import detect
from core.detections import Detections
from core.hands_face2d import HandFaceDetections, _to_frame, crop, detect_hands_face

L_ELBOW, R_ELBOW, L_WRIST, R_WRIST, L_INDEX, R_INDEX = 13, 14, 15, 16, 19, 20
WRIST, INDEX_MCP, MIDDLE_MCP = 0, 5, 9  # MediaPipe Hands landmarks
NOSE_TIP, LEFT_IRIS, RIGHT_IRIS = 1, 468, 473  # FaceMesh landmarks (refined)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hands-face-cache")


@pytest.fixture(scope="module")
def balance(balance_clip: Path, cache_dir: Path) -> tuple[Detections, HandFaceDetections, Recorder]:
    """1 s of the balance clip (60 frames): a man in a lab, hands ~35 px wrist to knuckles, face pixelated."""
    det = detect(balance_clip, end_s=1.0, cache_dir=cache_dir)
    recorder = Recorder()
    return det, detect_hands_face(balance_clip, det, reporter=recorder, cache_dir=cache_dir), recorder


@pytest.fixture(scope="module")
def walk_left(walk_clip: Path, cache_dir: Path) -> tuple[Detections, HandFaceDetections]:
    """0.6 s of the walk clip (18 frames): the man on the box, arms raised; head ~24 px, hands ~15 px."""
    det = detect(walk_clip, start_s=2.0, end_s=2.6, person="left", cache_dir=cache_dir)
    return det, detect_hands_face(walk_clip, det, cache_dir=cache_dir)


def _checked_layout(det: Detections, parts: HandFaceDetections) -> None:
    frames = det.num_frames
    assert parts.hands_image.shape == parts.hands_world.shape == (frames, 2, 21, 3)
    assert parts.hand_score.shape == (frames, 2) and parts.face_present.shape == (frames,)
    assert parts.hands_image.dtype == parts.hands_world.dtype == parts.hand_score.dtype == np.float32
    assert parts.face_present.dtype == bool
    found = parts.hand_present
    for arr in (parts.hands_image, parts.hands_world):
        assert np.isfinite(arr[found]).all() and np.isnan(arr[~found]).all()
    assert (parts.hand_score[~found] == 0).all() and (parts.hand_score[found] > 0.3).all()
    assert (parts.hand_score <= 1).all() and not (found & ~det.present[:, None]).any()
    if parts.face_image is not None:
        assert parts.face_image.shape == (frames, 478, 3) and parts.face_image.dtype == np.float32
        assert np.isfinite(parts.face_image[parts.face_present]).all()
        assert np.isnan(parts.face_image[~parts.face_present]).all()


def test_layout_and_progress(balance: tuple[Detections, HandFaceDetections, Recorder]) -> None:
    det, parts, recorder = balance
    _checked_layout(det, parts)
    assert recorder.stages == [("hands_face", 60)] and recorder.frames[-1] == 60
    assert recorder.frames == sorted(recorder.frames) and len(recorder.frames) >= 30
    assert parts.info["frames_decoded"] == 60 and parts.info["hands_face"]["tracking"] is True
    xy = parts.hands_image[parts.hand_present][..., :2]
    assert (xy[..., 0] > 0).all() and (xy[..., 0] < det.width).all() and (xy[..., 1] < det.height).all()


def test_hands_found_where_wrists_are_seen(balance: tuple[Detections, HandFaceDetections, Recorder],
                                           walk_left: tuple[Detections, HandFaceDetections]) -> None:
    det, parts, _ = balance
    seen = det.image[:, [L_WRIST, R_WRIST], 2] >= 0.5
    share = (parts.hand_present & seen).sum(axis=0) / seen.sum(axis=0)
    assert (share >= 0.45).all()  # measured 0.60, 0.67 (the right hand is turned edge-on or blurred in the rest)
    det, parts = walk_left
    assert parts.hand_present.sum() >= 8  # measured 6 + 7 of 34 tried: 15 px hands in a 1768 px frame


@pytest.mark.parametrize("which", ["balance", "walk_left"])
def test_hands_sit_on_their_own_wrists(which: str, request: pytest.FixtureRequest) -> None:
    """Each found hand's wrist is at the body's wrist of its side (never the other), its index knuckle toward the
    pose's index landmark, and its world palm (wrist to middle knuckle) is a human 6..12 cm."""
    det, parts = request.getfixturevalue(which)[:2]
    for side, (wrist, elbow, index) in enumerate(((L_WRIST, L_ELBOW, L_INDEX), (R_WRIST, R_ELBOW, R_INDEX))):
        found = parts.hand_present[:, side]
        assert found.sum() >= 5
        hand = parts.hands_image[found, side, :, :2]
        body = det.image[found][:, :, :2]
        forearm = np.linalg.norm(body[:, elbow] - body[:, wrist], axis=-1)
        own = np.linalg.norm(hand[:, WRIST] - body[:, wrist], axis=-1)
        other = np.linalg.norm(hand[:, WRIST] - body[:, L_WRIST + R_WRIST - wrist], axis=-1)
        assert (own < other).all() and np.median(own / forearm) < 0.2  # measured medians 0.05..0.13
        assert (own / forearm).max() < 0.6  # measured 0.38
        knuckle = np.linalg.norm(hand[:, INDEX_MCP] - body[:, index], axis=-1)
        heel = np.linalg.norm(hand[:, WRIST] - body[:, index], axis=-1)
        assert np.median(knuckle) < 0.6 * np.median(heel)  # measured 0.24..0.36
        world = parts.hands_world[found, side]
        palm = np.linalg.norm(world[:, MIDDLE_MCP] - world[:, WRIST], axis=-1)
        assert 0.06 < np.median(palm) < 0.12  # metres; measured 0.086..0.101


def test_face_on_the_head(walk_left: tuple[Detections, HandFaceDetections]) -> None:
    det, parts = walk_left
    assert parts.face_present.sum() >= 4  # measured 5 of 11 tried (7 frames, the head bent, under 16 px)
    face = parts.face_image[parts.face_present]
    body = det.image[parts.face_present]
    ears = np.linalg.norm(body[:, 7, :2] - body[:, 8, :2], axis=-1)
    assert np.median(np.linalg.norm(face[:, NOSE_TIP, :2] - body[:, 0, :2], axis=-1) / ears) < 0.5  # measured 0.21
    eyes = np.linalg.norm(face[:, LEFT_IRIS, :2] - face[:, RIGHT_IRIS, :2], axis=-1)
    assert 0.4 < np.median(eyes / ears) < 1.2  # measured 0.75
    assert np.ptp(face[:, :, 2], axis=1).max() < 3 * ears.max()  # z in pixels like x, not normalised


def test_pixelated_face_is_absent_without_error(balance: tuple[Detections, HandFaceDetections, Recorder]) -> None:
    _, parts, _ = balance
    assert parts.info["face_tried"] == 60 and parts.face_present.sum() <= 3  # the lab clip's face is pixelated


def test_tiny_person_skips_mediapipe(walk_clip: Path, tmp_path: Path) -> None:
    """At half size the woman's hands (~10 px) and head (~12 px) are too small: nothing found, nothing decoded."""
    small = tmp_path / "small.mp4"
    cap = cv2.VideoCapture(str(walk_clip))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 60)
    writer = cv2.VideoWriter(str(small), cv2.VideoWriter_fourcc(*"mp4v"), 30, (884, 497))
    for _ in range(18):
        ok, frame = cap.read()
        assert ok
        writer.write(cv2.resize(frame, (884, 497), interpolation=cv2.INTER_AREA))
    writer.release()
    cap.release()
    det = detect(small, person="right", cache_dir=False)
    parts = detect_hands_face(small, det, cache_dir=False)
    _checked_layout(det, parts)
    assert not parts.hand_present.any() and not parts.face_present.any()
    assert parts.info["face_skipped_small"] == det.present.sum() == 18
    assert sum(parts.info["hands_skipped_small"]) + sum(parts.info["hands_skipped_low_visibility"]) == 36
    assert parts.info["frames_decoded"] == 0


def test_absent_frames_and_parts_not_asked(walk_clip: Path, walk_left: tuple[Detections, HandFaceDetections],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    det, full = walk_left
    gone = dataclasses.replace(det, image=det.image.copy(), present=det.present.copy())
    gone.image[:6, :, :2], gone.image[:6, :, 2], gone.present[:6] = np.nan, 0.0, False

    def no_face(settings: Any) -> Any:
        raise AssertionError("FaceMesh ran although the face was not asked")

    monkeypatch.setattr(hands_face2d, "FaceFinder", no_face)
    parts = detect_hands_face(walk_clip, gone, face=False, cache_dir=False)
    _checked_layout(gone, parts)
    assert parts.face_image is None and not parts.face_present.any()
    assert not parts.hand_present[:6].any() and parts.info["frames_decoded"] == 12
    same = parts.hand_present[6:] & full.hand_present[6:]
    assert same.sum() >= 0.6 * full.hand_present[6:].sum()
    monkeypatch.setattr(hands_face2d, "_HandFinder", no_face)
    bare = detect_hands_face(walk_clip, det, hands=False, face=False, cache_dir=False)
    assert np.isnan(bare.hands_image).all() and (bare.hand_score == 0).all() and bare.info["frames_decoded"] == 0


def test_crop_maps_back_to_frame_pixels() -> None:
    """A dot drawn in a frame, found in a crop (up- or downscaled, partly outside the frame), maps back to itself."""
    frame = np.zeros((300, 400, 3), np.uint8)
    cv2.circle(frame, (37, 250), 3, (255, 255, 255), -1)
    for centre, side in (((50.0, 240.0), 40.0), ((10.0, 290.0), 120.0), ((200.0, 150.0), 500.0)):
        image, corner, side_px = crop(frame, np.array(centre), side, 256)
        assert image.shape == (256, 256, 3)
        ys, xs = np.nonzero(image[..., 0] > 100)
        dot = SimpleNamespace(landmark=[SimpleNamespace(x=(xs.mean() + 0.5) / 256, y=(ys.mean() + 0.5) / 256, z=0.1)])
        back = _to_frame(dot, corner, side_px)[0]
        assert np.allclose(back[:2], (37.5, 250.5), atol=1.0), (centre, side, back)  # pixel centres at +0.5
        assert back[2] == pytest.approx(0.1 * side_px)


def test_cache_returns_identical_arrays_and_heals(walk_clip: Path, walk_left: tuple[Detections, HandFaceDetections],
                                                  cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    det, first = walk_left
    key = hands_face2d._settings(det, True, True, hands_face2d.SETTINGS)
    entry = hands_face2d._cache_file(walk_clip, key, det, cache_dir)
    assert entry is not None and entry.is_file()
    names = ("hands_image", "hands_world", "hand_score", "face_image", "face_present")

    def no_mediapipe(*args: Any) -> Any:
        raise AssertionError("MediaPipe ran although the result was cached")

    with monkeypatch.context() as patch:
        patch.setattr(hands_face2d, "_HandFinder", no_mediapipe)
        patch.setattr(hands_face2d, "FaceFinder", no_mediapipe)
        recorder = Recorder()
        again = detect_hands_face(walk_clip, det, reporter=recorder, cache_dir=cache_dir)
        assert recorder.stages == [("hands_face", 18)] and recorder.frames == [18]
        for name in names:
            assert np.array_equal(getattr(again, name), getattr(first, name), equal_nan=True)
        with pytest.raises(AssertionError, match="MediaPipe ran"):  # other settings: another key
            detect_hands_face(walk_clip, det, cache_dir=cache_dir,
                              settings=hands_face2d.HandFaceSettings(hand_crop_scale=2.5))
        moved = dataclasses.replace(det, image=det.image + np.float32(1.0))
        with pytest.raises(AssertionError, match="MediaPipe ran"):  # other body landmarks: another key
            detect_hands_face(walk_clip, moved, cache_dir=cache_dir)

    whole = entry.read_bytes()
    with np.load(entry) as data:
        arrays = {name: data[name] for name in data.files}
    wrong = tmp = entry.with_name("wrong.npz")
    np.savez(tmp, **{**arrays, "hand_score": arrays["hand_score"][:5]})  # a readable entry of the wrong shape
    for damaged in (whole[: len(whole) // 2], b"", wrong.read_bytes()):
        entry.write_bytes(damaged)
        healed = detect_hands_face(walk_clip, det, cache_dir=cache_dir)  # recomputed and written again
        for name in names:
            assert np.array_equal(getattr(healed, name), getattr(first, name), equal_nan=True)
        with np.load(entry) as data:
            assert data["hand_score"].shape == (18, 2)
    wrong.unlink()
    assert not [p for p in entry.parent.iterdir() if p.name.startswith(".")]  # no temp files left
