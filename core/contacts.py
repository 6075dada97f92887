"""Foot contacts and the floor: which foot is planted in each frame, and where the ground is.

Feet are given as landmark indices (rigs/humanoid_ik.json, "feet": heel and toe landmarks per side). Heights are
measured against the sole: in the rest pose the foot landmarks sit `sole_height` metres above the floor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_closing, binary_opening


@dataclass(frozen=True)
class ContactSettings:
    """A foot is planted when its lowest landmark is within height_m of the floor and its landmarks move slower
    than speed_mps; plants and lifts shorter than min_frames are dropped. floor_percentile: which percentile of the
    per-frame lowest foot height is the floor (50 = median: robust to noise, fine while a foot touches the ground
    in most frames, as in walking or standing)."""

    height_m: float = 0.06
    speed_mps: float = 0.6
    min_frames: int = 3
    floor_percentile: float = 50.0


DEFAULT = ContactSettings()


def floor_height(keypoints: np.ndarray, valid: np.ndarray, feet: Mapping[str, Sequence[int]],
                 sole_height: float = 0.0, settings: ContactSettings = DEFAULT) -> float:
    """Y of the floor (metres) under keypoints (F, K, 3) with validity (F, K); NaN if no foot is ever seen."""
    idx = np.array([k for side in feet.values() for k in side])
    heights = np.where(valid[:, idx], keypoints[:, idx, 1], np.inf)
    lowest = np.min(heights, axis=1)
    lowest = lowest[np.isfinite(lowest)]
    if lowest.size == 0:
        return float("nan")
    return float(np.percentile(lowest, settings.floor_percentile)) - sole_height


def ground_offset(keypoints: np.ndarray, valid: np.ndarray, feet: Mapping[str, Sequence[int]],
                  centre: Sequence[int], sole_height: float = 0.0, settings: ContactSettings = DEFAULT) -> np.ndarray:
    """(3,) metres to add to every keypoint so that the floor is Y = 0 and the body starts above the origin.

    keypoints: (F, K, 3) metres, Y up; valid: (F, K) bool; centre: landmark indices whose mean is placed over X = Z = 0
    at the first frame where they are all valid (the hip landmarks). Missing feet or centre leave that part at 0.
    """
    offset = np.zeros(3)
    floor = floor_height(keypoints, valid, feet, sole_height, settings)
    if np.isfinite(floor):
        offset[1] = -floor
    centre = np.asarray(centre)
    seen = np.flatnonzero(np.all(valid[:, centre], axis=1))
    if seen.size:
        start = keypoints[seen[0], centre].mean(axis=0)
        offset[[0, 2]] = -start[[0, 2]]
    return offset


def foot_contacts(keypoints: np.ndarray, fps: float, feet: Mapping[str, Sequence[int]], floor: float = 0.0,
                  sole_height: float = 0.0, settings: ContactSettings = DEFAULT) -> np.ndarray:
    """(F, len(feet)) bool, each foot (in `feet` order, e.g. left, right) planted on the floor.

    keypoints: (F, K, 3) metres, Y up, gaps already filled; fps: frames per second; floor: Y of the floor, metres.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    frames = kp.shape[0]
    out = np.zeros((frames, len(feet)), dtype=bool)
    if frames == 0:
        return out
    structure = np.ones(max(settings.min_frames, 1), dtype=bool)
    for i, side in enumerate(feet.values()):
        foot = kp[:, list(side)]
        height = np.min(foot[..., 1], axis=1) - floor - sole_height
        centre = foot.mean(axis=1)
        speed = np.linalg.norm(np.gradient(centre, axis=0), axis=-1) * fps if frames > 1 else np.zeros(frames)
        planted = (height < settings.height_m) & (speed < settings.speed_mps)
        planted = np.nan_to_num(planted).astype(bool)
        if settings.min_frames > 1:
            pad = settings.min_frames
            padded = np.pad(planted, pad, mode="edge")  # the clip's ends continue as they are, not as lifted
            padded = binary_opening(binary_closing(padded, structure), structure)
            planted = padded[pad:-pad]
        out[:, i] = planted
    return out
