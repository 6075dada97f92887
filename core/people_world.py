"""Several people in one world: one camera, one floor, each person where the image puts them relative to the others.

A monocular lifter places each person on their own: their depth comes with an implied focal length (the one that
projects their lifted body onto their 2D track, core.lift.rays.fit_focal), and two people lifted alone imply two
cameras. Here the people share one: the focal length f is the mean of theirs (weighted by the landmarks seen), and
each person is moved along the camera's Z so that, seen through f, they keep their image position and size (depth
scaled by f / f_k; a point's sideways position is then unchanged). One level rotation turns the camera's tilt out of
everyone at once (the median body axis of all people, core.contacts.level_rotation); the X/Z origin lies under the
people's mean starting place (mid-hip at each one's first seen frame), and everyone's feet stand on the floor Y = 0
(each person's lowest stance; their feet's heights below the camera differ by their depth's error, kept in the world
description as feet_m). Someone standing on a box or a roof is put on the floor too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core import contacts
from core.common.motionfile import Motion
from core.detections import Detections
from core.ik import load_ik_rig, solve
from core.lift.rays import fit_focal
from core.person import HIPS
from core.progress import NullReporter, Reporter
from core.scipy_rotations import to_wxyz

MIN_VISIBILITY = 0.5  # landmarks seen at least this well count when fitting a person's focal length


def person_focal(keypoints: np.ndarray, det: Detections, valid: np.ndarray) -> tuple[float, int]:
    """The focal length (pixels) that projects one person's keypoints (F, K, 3), camera axes, onto their 2D
    detections, and how many landmarks it was fitted on; NaN, 0 when none."""
    uv = det.image[..., :2] - np.array([det.width / 2.0, det.height / 2.0])
    use = valid & (det.image[..., 2] >= MIN_VISIBILITY) & det.present[:, None]
    return fit_focal(keypoints, uv, use), int(use.sum())


def share_camera(keypoints: list[np.ndarray], dets: list[Detections], valid: list[np.ndarray]
                 ) -> tuple[list[np.ndarray], float, list[float]]:
    """Each person's keypoints (F, K, 3), camera axes, moved in depth to one shared focal length; returns them,
    that focal length (pixels, NaN if none could be fitted: keypoints unchanged) and each person's own."""
    fitted = [person_focal(kp, d, v) for kp, d, v in zip(keypoints, dets, valid)]
    own = [f for f, _ in fitted]
    ok = [(f, n) for f, n in fitted if np.isfinite(f) and f > 0 and n > 0]
    if not ok:
        return [np.array(kp, dtype=np.float64) for kp in keypoints], float("nan"), own
    focal = float(sum(f * n for f, n in ok) / sum(n for _, n in ok))
    moved = []
    for kp, f_k in zip(keypoints, own):
        kp = np.array(kp, dtype=np.float64)
        if np.isfinite(f_k) and f_k > 0:
            root_z = np.nanmean(kp[:, list(HIPS), 2], axis=1, keepdims=True)
            kp[..., 2] += np.nan_to_num(root_z * (focal / f_k - 1.0))
        moved.append(kp)
    return moved, focal, own


def place(keypoints: list[np.ndarray], confidence: list[np.ndarray], valid: list[np.ndarray], dets: list[Detections],
          fps: float, reporter: Reporter = NullReporter()) -> tuple[list[Motion], dict[str, Any]]:
    """Solve every person (keypoints (F, K, 3) metres, camera axes, gaps filled; confidence (F, K); valid (F, K) the
    truly seen ones) in one shared world; returns one Motion each (with the shared `camera`, floor Y = 0) and a
    JSON-able description of the world (focal lengths, level, origin)."""
    rig = load_ik_rig()
    moved, focal, own = share_camera(keypoints, dets, valid)
    confident = [v & (np.nan_to_num(c) >= 0.5) for v, c in zip(valid, confidence)]
    level = contacts.level_rotation(np.concatenate(moved), np.concatenate(confident), *rig.body_axis)
    moved = [level.apply(kp.reshape(-1, 3)).reshape(kp.shape) for kp in moved]
    starts = []
    for kp, ok in zip(moved, confident):
        seen = np.flatnonzero(np.all(ok[:, list(rig.centre)], axis=1))
        if seen.size:
            starts.append(kp[seen[0], list(rig.centre)].mean(axis=0))
    origin = np.mean(starts, axis=0) if starts else np.zeros(3)
    shift = np.array([-origin[0], 0.0, -origin[2]])
    frames = moved[0].shape[0] if moved else 0
    motions: list[Motion] = []
    for k, (kp, conf) in enumerate(zip(moved, confidence), 1):
        motions.append(solve(kp + shift, conf, fps, ground=False))
        reporter.update(frames * k)
    feet = [m.floor["height_m"] if m.floor else float("nan") for m in motions]
    floor = float(np.nanmean(feet)) if np.isfinite(feet).any() else 0.0
    for motion, f in zip(motions, feet):
        lift = np.array([0.0, -(f if np.isfinite(f) else floor), 0.0])
        motion.root_positions = motion.root_positions + lift
        if motion.keypoints_3d is not None:
            motion.keypoints_3d = motion.keypoints_3d + lift
        motion.floor = {"height_m": 0.0, "up": [0.0, 1.0, 0.0]}
        motion.meta["ik"].update(level_wxyz=to_wxyz(level).tolist(), ground_offset=(shift + lift).tolist())
    camera = None
    if np.isfinite(focal):
        camera = {"focal_px": focal, "width_px": int(dets[0].width), "height_px": int(dets[0].height),
                  "position": [float(shift[0]), -floor, float(shift[2])], "rotation": to_wxyz(level).tolist()}
    for motion in motions:
        motion.camera = camera
    world = {"focal_px": focal if np.isfinite(focal) else None,
             "person_focal_px": [float(f) if np.isfinite(f) else None for f in own],
             "level_wxyz": to_wxyz(level).tolist(), "origin": (-shift).tolist(), "camera_height_m": -floor,
             "feet_m": [float(f) if np.isfinite(f) else None for f in feet]}
    return motions, world

