"""The finger validation set: a real bpy render of the MPFB2 body with a fist and an open hand, its truth, real
MediaPipe Hands on the frame, and the scoring functions."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest

from bench import hands_face_validation as v
from core.common.rotations import identity

pytestmark = pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="needs bpy")


@pytest.fixture(scope="module")
def fist_open(tmp_path_factory):
    from bench import render_hands_face as r

    out = tmp_path_factory.mktemp("hands")
    clip = dataclasses.replace(r.CLIPS[0], name="hands_test", left=("fist",), right=("open",))
    r.render_hands(r.rv.load_set(), clip, out, 1, 1.0)
    return out / "hands_test.mp4", v.load(out / "hands_test.npz")


def test_truth_geometry(fist_open):
    _, t = fist_open
    flex = t["flexion_deg"][0]
    fingers = slice(3, 15)
    assert flex[0, fingers].mean() > 70.0  # the left hand makes a fist
    assert flex[1, fingers].mean() < 25.0  # the right hand is open
    tips = [8, 12, 16, 20]
    reach = np.linalg.norm(t["points"][0][:, tips] - t["points"][0][:, [0]], axis=-1).mean(1)
    assert reach[0] < 0.75 * reach[1]
    depth = t["depth"][0, 0]  # the palm faces the camera, so a fist brings its middle knuckles towards it
    assert depth[[6, 10, 14, 18]].mean() < depth[[5, 9, 13, 17]].mean() - 0.015
    assert t["in_view"].all()
    # the camera faces the person: their left hand is on the image's right
    assert t["image_points"][0, 0, 0, 0] > t["width"] / 2 > t["image_points"][0, 1, 0, 0]
    assert t["pose"][0].tolist() == ["fist", "open"]


def test_mediapipe_sees_the_rendered_hands(fist_open):
    video, t = fist_open
    pred = v.mediapipe_hands(video, t)
    assert pred["found"][0] >= 1
    err = v.flexion_error(t["flexion_deg"], pred["flexion"])
    assert np.isfinite(err[0, 1]).all() and err[0, 1].mean() < 20.0  # the open hand, from world landmarks
    assert v.hand_swaps(t["image_points"][:, :, 0], pred["wrists_by_label"]) == 0


def test_flexion_of_rotations():
    rest = v.hand_points_from_rotations(identity(1, 2, 15))
    q = identity(1, 2, 15)
    k = 4  # IndexIntermediate
    q[0, :, k] = [np.cos(np.radians(20)), 0.0, 0.0, -np.sin(np.radians(20))]  # 40 degrees about -Z: curl down
    bent = v.landmark_flexion(v.hand_points_from_rotations(q)) - v.landmark_flexion(rest)
    assert bent[0, :, k] == pytest.approx([40.0, 40.0], abs=1e-6)
    assert np.abs(np.delete(bent[0], k, axis=1)).max() < 1e-6


def test_scores():
    truth = np.array([[[0.0, 0.0], [10.0, 0.0]]] * 3)
    pred = truth.copy()
    pred[1] = pred[1, ::-1]
    pred[2, 1] = np.nan
    assert v.hand_swaps(truth, pred) == 1
    assert v.blink_events(np.array([0, 1, 1, 1, 0, 0, 1, 0], bool)).tolist() == [2, 6]
    s = v.blink_f1([10, 40, 70], [11, 42, 70, 90])
    assert (s["tp"], round(s["f1"], 3)) == (2, round(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3), 3))
    jaw = np.sin(np.linspace(0, 3, 50))
    assert v.jaw_correlation(jaw, 2 * jaw + 1) == pytest.approx(1.0)
