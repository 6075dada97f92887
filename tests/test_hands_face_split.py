"""core.hands_face_split: the hands-and-face pass in two processes gives what one process gives (real MediaPipe on
the balance clip, the split threshold lowered so that a short range splits), and a child that fails is replaced by
this process doing its half."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core import hands_face_split
from core.detect2d import detect
from core.hands_face2d import HandFaceDetections, detect_hands_face


def presence_agreement(a: HandFaceDetections, b: HandFaceDetections) -> float:
    return float(np.mean(np.isnan(a.hands_image[..., 0, 0]) == np.isnan(b.hands_image[..., 0, 0])))


@pytest.fixture(scope="module")
def one_process(balance_clip: Path, tmp_path_factory: pytest.TempPathFactory):
    det = detect(balance_clip, cache_dir=tmp_path_factory.mktemp("cache"))
    mp = pytest.MonkeyPatch()
    mp.setenv("MIMIC_HANDS_FACE_PROCESSES", "1")
    try:
        return det, detect_hands_face(balance_clip, det, face=False, cache_dir=False)
    finally:
        mp.undo()


def test_two_processes_give_what_one_gives(balance_clip: Path, one_process, monkeypatch: pytest.MonkeyPatch) -> None:
    det, one = one_process
    monkeypatch.setattr(hands_face_split, "MIN_SPAN_S", 0.5)
    monkeypatch.setattr(hands_face_split, "CHILD_START_S", 0.0)
    split = hands_face_split.split_frame(det, np.flatnonzero(det.present))
    assert split is not None and 0.4 * det.num_frames < split < 0.6 * det.num_frames
    two = detect_hands_face(balance_clip, det, face=False, cache_dir=False)
    assert two.info["processes"] == 2
    assert presence_agreement(one, two) >= 0.95
    both = ~np.isnan(one.hands_image[..., 0, 0]) & ~np.isnan(two.hands_image[..., 0, 0])
    assert np.array_equal(one.hands_image[:split][both[:split]], two.hands_image[:split][both[:split]])  # mine
    gap = np.linalg.norm(one.hands_image[both][..., :2] - two.hands_image[both][..., :2], axis=-1)
    assert np.median(gap) < 0.5  # pixels: the child's half is the same hands (its tracking starts afresh)
    assert two.info["hands_found"] == [int(n) for n in (~np.isnan(two.hands_image[..., 0, 0])).sum(axis=0)]


def test_a_failing_child_is_replaced_by_this_process(balance_clip: Path, one_process, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    det, one = one_process
    monkeypatch.setattr(hands_face_split, "MIN_SPAN_S", 0.5)
    monkeypatch.setattr(hands_face_split, "ROOT", tmp_path)  # `python -m core.hands_face_split` fails there
    two = detect_hands_face(balance_clip, det, face=False, cache_dir=False)
    assert two.info["processes"] == 1
    assert presence_agreement(one, two) >= 0.95
