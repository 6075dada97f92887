"""The body's Head and Hand joints turned as the face mesh and the hand landmarks say, where they were seen.

The body's head comes from five pose landmarks (nose, eyes, ears) and each hand from three (index, pinky, thumb),
which MediaPipe places loosely; the face mesh's 468 points and the hand's 21 give their turns far better. All live
in known frames: the face's and the palms' rotations are in camera axes (x right, y down, z away from the camera),
and core.lift puts the body in camera-centred Mimic axes (X right, Y up, Z towards the camera: M, a half turn about
X, from the camera's), which core.ik then levels (L, meta["ik"]["level_wxyz"]). A face facing the camera is the rest
head (the character faces +Z, towards the camera), so the head's world rotation is L M H M^-1 for the face's H; a
palm rotation P already starts from the rest hand in Mimic axes, so the hand's is L M P.
"""

from __future__ import annotations

import numpy as np

from core.common import rotations as quat
from core.common.motionfile import Motion

HALF_TURN_X = np.array([0.0, 1.0, 0.0, 0.0])  # camera axes -> camera-centred Mimic axes, w-x-y-z
MIN_CONFIDENCE = 0.5  # frames below this keep the body's own joint (blended in between)


def world_from_camera(motion: Motion) -> np.ndarray:
    """(4,) w-x-y-z: camera axes -> the motion's world axes (the lifter's half turn, then core.ik's levelling)."""
    level = (motion.meta.get("ik") or {}).get("level_wxyz", [1.0, 0.0, 0.0, 0.0])
    return quat.normalize(quat.multiply(np.asarray(level, dtype=np.float64), HALF_TURN_X))


def with_face_head(motion: Motion, head_camera: np.ndarray, confidence: np.ndarray) -> Motion:
    """`motion` with its Head joint's local rotation taken from the face: head_camera (F, 4) w-x-y-z in camera axes
    (identity = facing the camera), confidence (F,) 0..1; the body's own head is kept where confidence is 0."""
    c = world_from_camera(motion)
    face_world = quat.multiply(quat.multiply(c, quat.normalize(head_camera)), quat.inverse(HALF_TURN_X))
    return _turned(motion, {"Head": (face_world, confidence)})


def with_palm_hands(motion: Motion, palm_camera: np.ndarray, confidence: np.ndarray) -> Motion:
    """`motion` with its LeftHand/RightHand joints' rotations taken from the hand landmarks: palm_camera (F, 2, 4)
    w-x-y-z taking each hand's rest (rigs/hand.json, Mimic axes; the right hand's mirrored) to its landmarks in camera
    axes (core.fingers.FingerSolve.palm_rotations), confidence (F, 2) 0..1; the body's hands kept where it is 0."""
    c = world_from_camera(motion)
    palm_world = quat.multiply(c, quat.normalize(palm_camera))
    return _turned(motion, {f"{side}Hand": (palm_world[:, k], confidence[:, k])
                            for k, side in enumerate(("Left", "Right"))})


def _turned(motion: Motion, targets: dict[str, tuple[np.ndarray, np.ndarray]]) -> Motion:
    """`motion` with each named joint's world rotation (F, 4) blended in by its confidence (F,) (full at
    MIN_CONFIDENCE and above), its children turning with it; joints the skeleton lacks are skipped."""
    sk = motion.skeleton
    glob = sk.global_rotations(motion.rotations)
    rotations = np.array(motion.rotations, copy=True)
    for name, (world, confidence) in targets.items():
        if name not in sk.names:
            continue
        j = sk.index(name)
        local = quat.multiply(quat.inverse(glob[:, sk.parents[j]]), world)
        weight = np.clip(np.nan_to_num(np.asarray(confidence, dtype=np.float64)) / MIN_CONFIDENCE, 0.0, 1.0)
        rotations[:, j] = quat.normalize(quat.slerp(rotations[:, j], local, weight))
    return motion.with_channels(rotations=quat.make_continuous(rotations))
