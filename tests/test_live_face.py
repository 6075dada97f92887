"""core.live_face on the synthetic faces of tests/test_face.py: frame by frame, causally, it finds the same blinks and
follows the jaw like the clip solve, calibrates from the face itself, and forgets a face that has gone."""

from __future__ import annotations

import numpy as np

from core.face import solve_face
from core.live_face import LiveFace, LiveFaceSettings
from test_face import FPS, STARTS, blink_track, f1, rotation_path, runs, synthesise


def stream(image: np.ndarray, present: np.ndarray | None = None, live: LiveFace | None = None) -> np.ndarray:
    """(F, E) weights of LiveFace fed one frame at a time (NaN rows where it gave none)."""
    live = live or LiveFace()
    out = np.full((len(image), len(live.names)), np.nan)
    for f, frame in enumerate(image):
        w = live.step(frame if present is None or present[f] else None, f / FPS)
        if w is not None:
            out[f] = w
    return out


def col(weights: np.ndarray, name: str) -> np.ndarray:
    return weights[:, LiveFace().names.index(name)]


def test_blinks_are_found_as_they_happen_while_the_head_turns() -> None:
    frames = 300
    a = blink_track(frames, STARTS)
    image = synthesise(frames, {"left": a, "right": a}, rot=rotation_path(frames), noise_px=0.6)
    weights = stream(image)
    truth = [(s, s + 3) for s in STARTS]
    closed = col(weights, "blink") >= 0.99
    score = f1(runs(closed), truth)
    print(f"\nlive blinks: F1 {score:.2f}, found {runs(closed)}")
    assert score >= 0.9
    assert np.all(col(weights, "blink")[a == 1.0] > 0.9) and np.all(col(weights, "blink")[a == 0.0] < 0.35)


def test_jaw_follows_like_the_clip_solve() -> None:
    frames = 300
    t = np.arange(frames) / FPS
    jaw_cm = 1.5 * np.clip(np.sin(2 * np.pi * 0.4 * t), 0.0, None)
    image = synthesise(frames, jaw_cm=jaw_cm, seed=2)
    live = col(stream(image), "jawOpen")
    clip = col(solve_face(image, np.ones(frames, bool), FPS).expressions, "jawOpen")
    r_truth = np.corrcoef(live[30:], jaw_cm[30:])[0, 1]
    print(f"\nlive jawOpen: r {r_truth:.3f} with the truth, mean |live - clip| {np.abs(live - clip)[30:].mean():.3f}")
    assert r_truth >= 0.9
    assert np.abs(live - clip)[30:].mean() < 0.1  # after the first second of calibration


def test_small_eyes_calibrate_to_open_and_a_missing_face_gives_nothing() -> None:
    frames = 120
    present = np.ones(frames, bool)
    present[40:50] = False  # 1/3 s without a face: no weights there, the calibration kept
    weights = stream(synthesise(frames, eye_scale=0.45, seed=3), present)
    assert np.isnan(weights[40:50]).all() and np.isfinite(weights[present]).all()
    assert col(weights, "blink")[present].max() < 0.35  # narrow eyes are this face's open eyes


def test_a_face_gone_longer_than_forget_s_is_calibrated_afresh() -> None:
    live = LiveFace(LiveFaceSettings(forget_s=1.0))
    closed_eyes = synthesise(30, {"left": np.ones(30), "right": np.ones(30)}, seed=4)
    stream(closed_eyes, live=live)  # a face with closed eyes: its own neutral
    assert len(live._recent) == 30
    later = live.step(synthesise(1, seed=5)[0], 5.0)  # another face after 4 s: nothing carried over
    assert later is not None and len(live._recent) == 1 and not live._closed.any()
