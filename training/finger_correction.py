"""Fit the finger-flexion correction (core/weights/finger_correction.json) on the rendered development hands.

    nice -n 10 .venv/bin/python bench/render_hands_face.py --set dev     # 5 clips of random poses, ~10 min
    .venv/bin/python -m training.finger_correction [--data .cache/validation/hands_dev] [--out FILE] [--check]

MediaPipe's hand model under-bends curled fingers (a fist reads as a claw: knuckles 40-55 degrees where the truth
is 90). Per joint, the correction is a ridge-regularised linear map from the measured flexions of that joint's own
finger (three joints) to the true flexion, fitted on the development set: random finger poses (bench
render_hands_face.random_poses) at other distances and camera angles than the validation set's, which it never
sees. Targets are core.fingers.measure of the rendered truth's landmarks (the solver's own angles, so a perfect
landmark set would need no correction). Prints the leave-one-clip-out error (degrees, the validation bench's bend
metric) with and without the correction, so the gain is measured on clips the fit did not see. --check scores
the shipped file on the development set without writing. A few minutes after rendering (detection is cached).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from core.common.atomic import atomic_path
from core.common.hands import hand_joint_names, hand_limits_deg
from core.fingers import CORRECTION, MIRROR, SETTINGS, finger_rotations, measure, solve_fingers

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".cache" / "validation" / "hands_dev"
RIDGE = 0.01  # pulls the gains towards the identity; chosen by leave-one-clip-out error on the development set


def collect(data: Path) -> list[dict[str, np.ndarray]]:
    """Per rendered clip: measured flexion and abduction (N, H) radians (the solve without correction, both hands
    as left hands),
    the truth's (N, H), and the truth's bend (N, H) degrees, over frames where a hand was seen and held a pose."""
    sys.path.insert(0, str(ROOT))
    from bench.hands_face_validation import load
    from core.detect2d import detect
    from core.hands_face2d import detect_hands_face

    clips = []
    for npz in sorted(data.glob("*.npz")):
        truth = load(npz)
        video = npz.with_suffix(".mp4")
        parts = detect_hands_face(video, detect(video), hands=True, face=False)
        frames = min(len(truth["pose"]), len(parts.hand_score))
        solve = solve_fingers(parts.hands_world[:frames], parts.hand_score[:frames], float(truth["fps"]),
                              replace(SETTINGS, correction=False), hands_image=parts.hands_image[:frames])
        points = np.array(truth["points"][:frames], dtype=np.float64)
        points[:, 1] *= MIRROR
        _, true_angles = measure(points.reshape(-1, 21, 3))
        keep = (solve.hand_confidence > 0) & ~truth["blend"][:frames]
        clips.append({"name": npz.stem, "measured": np.radians(solve.angles_deg[..., 0])[keep],
                      "abduction": np.radians(solve.angles_deg[..., 1])[keep],
                      "truth": true_angles.reshape(frames, 2, -1, 2)[..., 0][keep],
                      "bend": truth["flexion_deg"][:frames][keep]})
    return clips


def finger_groups() -> list[np.ndarray]:
    """Joint indices of each finger (rigs/hand.json order: Thumb, Index, Middle, Ring, Little; 3 joints each)."""
    names = hand_joint_names()
    return [np.array([j for j, n in enumerate(names) if n.startswith(f)])
            for f in ("Thumb", "Index", "Middle", "Ring", "Little")]


def fit(measured: np.ndarray, truth: np.ndarray, ridge: float = RIDGE) -> tuple[np.ndarray, np.ndarray]:
    """(N, H) measured and true flexion radians -> gain (H, H) (within each finger) and offset (H,): per joint, ridge
    regression of the truth on its finger's measured flexions, shrunk towards gain = identity, offset = 0."""
    count = measured.shape[1]
    gain, offset = np.zeros((count, count)), np.zeros(count)
    for group in finger_groups():
        x = np.concatenate([measured[:, group], np.ones((len(measured), 1))], axis=1)
        for j in group:
            prior = np.append((group == j).astype(float), 0.0)
            a = x.T @ x / len(x) + ridge * np.eye(len(prior))
            w = np.linalg.solve(a, x.T @ truth[:, j] / len(x) + ridge * prior)
            gain[j, group], offset[j] = w[:-1], w[-1]
    return gain, offset


def bend_error(flexion: np.ndarray, abduction: np.ndarray, bend_truth: np.ndarray) -> float:
    """Mean |bend error| degrees of hands posed with flexion and abduction (N, H) radians, against the truth's bends
    (N, H) degrees: the validation bench's metric (landmark_flexion of the posed hand's points)."""
    from bench.hands_face_validation import hand_points_from_rotations, landmark_flexion

    angles = np.stack([flexion, abduction], axis=-1)
    rotations = finger_rotations(angles)[:, None].repeat(2, axis=1)
    bend = landmark_flexion(hand_points_from_rotations(rotations))[:, 0]
    return float(np.mean(np.abs(bend - bend_truth)))


def _clipped(flexion: np.ndarray) -> np.ndarray:
    """Flexion (N, H) radians within rigs/hand.json's limits, as the solver keeps it."""
    limits = np.radians(hand_limits_deg())[:, 0]
    return np.clip(flexion, limits[:, 0], limits[:, 1])


def cross_validate(clips: list[dict[str, np.ndarray]], ridge: float = RIDGE) -> list[dict[str, float]]:
    """Leave-one-clip-out: per clip, the bend error without correction and with one fitted on the other clips."""
    rows = []
    for k, held in enumerate(clips):
        rest = [c for i, c in enumerate(clips) if i != k]
        gain, offset = fit(np.concatenate([c["measured"] for c in rest]), np.concatenate([c["truth"] for c in rest]),
                           ridge)
        corrected = held["measured"] @ gain.T + offset
        rows.append({"clip": held["name"], "hand_frames": len(held["measured"]),
                     "raw_deg": bend_error(held["measured"], held["abduction"], held["bend"]),
                     "corrected_deg": bend_error(_clipped(corrected), held["abduction"], held["bend"])})
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--out", type=Path, default=CORRECTION)
    p.add_argument("--ridge", type=float, default=RIDGE)
    p.add_argument("--check", action="store_true", help="score the shipped correction, write nothing")
    a = p.parse_args()
    if not any(a.data.glob("*.npz")):
        sys.exit(f"error: no rendered clips in {a.data}; run bench/render_hands_face.py --set dev first.")
    clips = collect(a.data)
    measured = np.concatenate([c["measured"] for c in clips])
    truth = np.concatenate([c["truth"] for c in clips])
    if a.check:
        from core.fingers import correct_flexion

        for c in clips:
            print(json.dumps({"clip": c["name"], "raw_deg": bend_error(c["measured"], c["abduction"], c["bend"]),
                              "corrected_deg": bend_error(_clipped(correct_flexion(c["measured"], a.out)),
                                                          c["abduction"], c["bend"])}))
        return 0
    rows = cross_validate(clips, a.ridge)
    for r in rows:
        print(json.dumps(r))
    weights = np.array([r["hand_frames"] for r in rows], dtype=np.float64)
    print(json.dumps({"leave_one_clip_out": {k: float(np.average([r[k] for r in rows], weights=weights))
                                             for k in ("raw_deg", "corrected_deg")}}))
    gain, offset = fit(measured, truth, a.ridge)
    data = {"what": "core.fingers.correct_flexion: corrected flexion = gain @ measured + offset (radians)",
            "trained_by": "python -m training.finger_correction", "data": "bench/render_hands_face.py --set dev",
            "ridge": a.ridge, "hand_frames": int(len(measured)), "joints": list(hand_joint_names()),
            "gain": np.round(gain, 5).tolist(), "offset_rad": np.round(offset, 5).tolist(),
            "leave_one_clip_out": rows}
    with atomic_path(a.out) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
