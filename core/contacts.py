"""Foot contacts and the floor: which foot is planted in each frame, and where the ground is.

Feet are given as landmark indices (rigs/humanoid_ik.json, "feet": heel and toe landmarks per side). Heights are
measured against the sole: in the rest pose the foot landmarks sit `sole_height` metres above the floor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_closing, binary_opening, percentile_filter
from scipy.spatial.transform import Rotation

from core.filters import hysteresis, smooth


@dataclass(frozen=True)
class ContactSettings:
    """Stances (floor_height): a foot within height_m of the floor and slower than speed_mps (after a
    speed_cutoff_hz low-pass: lifted depth jitters by centimetres a frame) for min_stance_s. Contacts
    (contact_probability): P(still) = sigmoid(speed_bias + (speed_weight · speed + rise_weight · |vertical speed|) /
    stature + other_weight · how much faster the foot is than the other foot / stature) (statures per second; a
    rising foot is leaving even where depth noise makes planted feet fast; of two feet the faster one swings) times
    P(low) = sigmoid((height_stature - height above the local floor / stature) / height_width); the local floor is
    the floor_percentile of the lowest foot point over floor_window_s. A foot is planted from enter_probability
    until exit_probability (hysteresis); plants and lifts shorter than min_frames are dropped. A median body axis
    tilted more than max_tilt_deg is left alone (level_rotation). The stature is the clip's median vertical extent of
    the landmarks, default_stature_m when that is below min_stature_m (feet alone)."""

    height_m: float = 0.06
    speed_mps: float = 1.0
    speed_cutoff_hz: float = 3.0
    min_frames: int = 3
    min_stance_s: float = 0.25
    max_tilt_deg: float = 35.0
    speed_bias: float = 4.0
    speed_weight: float = -4.0
    rise_weight: float = -5.0
    other_weight: float = -8.0
    height_stature: float = 0.1
    height_width: float = 0.015
    floor_window_s: float = 1.0
    floor_percentile: float = 20.0
    enter_probability: float = 0.7
    exit_probability: float = 0.3
    min_stature_m: float = 0.5
    default_stature_m: float = 1.6


DEFAULT = ContactSettings()


def _foot_tracks(keypoints: np.ndarray, fps: float, feet: Mapping[str, Sequence[int]],
                 settings: ContactSettings = DEFAULT) -> tuple[np.ndarray, np.ndarray]:
    """Per foot the lowest landmark's height (F, n_feet) and the foot's low-passed speed (F, n_feet), m and m/s."""
    kp = np.asarray(keypoints, dtype=np.float64)
    heights, speeds = [], []
    for side in feet.values():
        foot = kp[:, list(side)]
        heights.append(np.min(foot[..., 1], axis=1))
        centre = smooth(foot.mean(axis=1), fps, settings.speed_cutoff_hz)
        speed = np.linalg.norm(np.gradient(centre, axis=0), axis=-1) * fps if len(kp) > 1 else np.zeros(len(kp))
        speeds.append(speed)
    return np.stack(heights, axis=1), np.stack(speeds, axis=1)


def floor_height(keypoints: np.ndarray, valid: np.ndarray, fps: float, feet: Mapping[str, Sequence[int]],
                 sole_height: float = 0.0, settings: ContactSettings = DEFAULT) -> float:
    """Y of the floor (metres) under keypoints (F, K, 3) with validity (F, K); NaN if no foot is ever seen.

    Each stretch of at least min_stance_s where a foot is seen and still gives one stance height (the median of
    its lowest landmark); the floor is the lowest stance, so stepping down from a box lands on the floor, not in
    it. Without any stance (a very short or very busy clip) the median lowest foot height stands in.
    """
    heights, speeds = _foot_tracks(keypoints, fps, feet, settings)
    seen = np.stack([np.all(valid[:, list(side)], axis=1) for side in feet.values()], axis=1) & np.isfinite(heights)
    still = seen & (np.nan_to_num(speeds, nan=np.inf) < settings.speed_mps)
    min_frames = max(1, int(round(settings.min_stance_s * fps)))
    stances = [float(np.median(heights[start:end + 1, foot]))
               for foot in range(still.shape[1]) for start, end in _runs(still[:, foot])
               if end + 1 - start >= min_frames]
    if stances:
        return min(stances) - sole_height
    if not np.any(seen):
        return float("nan")
    return float(np.median(heights[seen])) - sole_height


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) inclusive of every run of True in a 1-D mask."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), (np.flatnonzero(edges == -1) - 1).tolist()))


def level_rotation(keypoints: np.ndarray, valid: np.ndarray, lower: Sequence[int], upper: Sequence[int],
                   settings: ContactSettings = DEFAULT) -> Rotation:
    """The tilt correction for a camera that pitches or rolls: turns the clip's median body axis upright.

    keypoints: (F, K, 3) metres; valid: (F, K); lower/upper: landmark indices (ankles, shoulders) whose means give
    the body axis. People stand upright on average, so the median axis is the true vertical; a median tilt beyond
    max_tilt_deg means the person is not upright (lying, handstand) and no correction is made. No turn about Y.
    """
    lower, upper = np.asarray(lower), np.asarray(upper)
    ok = np.all(valid[:, lower], axis=1) & np.all(valid[:, upper], axis=1)
    if not np.any(ok):
        return Rotation.identity()
    axis = keypoints[ok][:, upper].mean(axis=1) - keypoints[ok][:, lower].mean(axis=1)
    axis = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
    up = np.median(axis, axis=0)
    up = up / np.linalg.norm(up)
    tilt = np.arccos(np.clip(up[1], -1.0, 1.0))
    if not np.isfinite(tilt) or tilt > np.radians(settings.max_tilt_deg) or tilt < 1e-9:
        return Rotation.identity()
    turn = np.cross(up, [0.0, 1.0, 0.0])
    return Rotation.from_rotvec(turn / np.linalg.norm(turn) * tilt)


def ground_offset(keypoints: np.ndarray, valid: np.ndarray, fps: float, feet: Mapping[str, Sequence[int]],
                  centre: Sequence[int], sole_height: float = 0.0, settings: ContactSettings = DEFAULT) -> np.ndarray:
    """(3,) metres to add to every keypoint so that the floor is Y = 0 and the body starts above the origin.

    keypoints: (F, K, 3) metres, Y up; valid: (F, K) bool; centre: landmark indices whose mean is placed over X = Z = 0
    at the first frame where they are all valid (the hip landmarks). Missing feet or centre leave that part at 0.
    """
    offset = np.zeros(3)
    floor = floor_height(keypoints, valid, fps, feet, sole_height, settings)
    if np.isfinite(floor):
        offset[1] = -floor
    centre = np.asarray(centre)
    seen = np.flatnonzero(np.all(valid[:, centre], axis=1))
    if seen.size:
        start = keypoints[seen[0], centre].mean(axis=0)
        offset[[0, 2]] = -start[[0, 2]]
    return offset


def contact_probability(keypoints: np.ndarray, fps: float, feet: Mapping[str, Sequence[int]], floor: float = 0.0,
                        sole_height: float = 0.0, settings: ContactSettings = DEFAULT) -> np.ndarray:
    """(F, P) 0..1 that each foot landmark (feet in order, each side's landmarks in order: heel, toe) is planted.

    keypoints: (F, K, 3) metres, Y up, gaps filled. A logistic score of the point's low-passed speed, vertical
    speed and its foot's lead in speed over the other foot, in statures per second (ContactSettings: chosen on half
    of the rendered validation set), gated by its height above the local floor (a low percentile of the lowest foot
    point over floor_window_s, never below `floor`; lifted depth drifts, so the floor under a walker wanders).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    idx = [k for side in feet.values() for k in side]
    if not len(kp) or not idx:
        return np.zeros((len(kp), len(idx)))
    points = kp[:, idx]
    size = _stature(kp, settings)
    height = points[..., 1] - sole_height
    velocity = np.gradient(smooth(points, fps, settings.speed_cutoff_hz), axis=0) * fps if len(kp) > 1 \
        else np.zeros(points.shape)
    speed, rise = np.linalg.norm(velocity, axis=-1), np.abs(velocity[..., 1])
    window = max(1, int(round(settings.floor_window_s * fps)))
    local = percentile_filter(np.nan_to_num(height.min(axis=1)), settings.floor_percentile, size=window,
                              mode="nearest")
    above = (height - np.maximum(local, floor)[:, None]) / size
    faster = _faster_than_other_foot(speed, [len(side) for side in feet.values()])
    still = settings.speed_bias + (settings.speed_weight * speed + settings.rise_weight * rise
                                   + settings.other_weight * faster) / size
    low = (settings.height_stature - above) / settings.height_width
    return np.nan_to_num(_sigmoid(still) * _sigmoid(low))


def foot_contacts(keypoints: np.ndarray, fps: float, feet: Mapping[str, Sequence[int]], floor: float = 0.0,
                  sole_height: float = 0.0, settings: ContactSettings = DEFAULT,
                  probability: np.ndarray | None = None) -> np.ndarray:
    """(F, len(feet)) bool, each foot (in `feet` order, e.g. left, right) planted on the floor.

    keypoints: (F, K, 3) metres, Y up, gaps already filled; floor: Y of the floor, metres. A foot is planted when
    its likelier point (contact_probability, or `probability` (F, P) if given) rises above enter_probability and
    until it falls below exit_probability; plants and lifts shorter than min_frames are dropped.
    """
    prob = contact_probability(keypoints, fps, feet, floor, sole_height, settings) if probability is None \
        else np.asarray(probability, dtype=np.float64)
    frames = prob.shape[0]
    out = np.zeros((frames, len(feet)), dtype=bool)
    structure = np.ones(max(settings.min_frames, 1), dtype=bool)
    start = 0
    for i, side in enumerate(feet.values()):
        foot = prob[:, start:start + len(side)].max(axis=1, initial=0.0)
        start += len(side)
        planted = hysteresis(foot, settings.enter_probability, settings.exit_probability)
        if settings.min_frames > 1 and frames:
            pad = settings.min_frames
            padded = np.pad(planted, pad, mode="edge")  # the clip's ends continue as they are, not as lifted
            padded = binary_opening(binary_closing(padded, structure), structure)
            planted = padded[pad:-pad]
        out[:, i] = planted
    return out


def _faster_than_other_foot(speed: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """(F, P) m/s by which each point's foot (mean speed of its points) outpaces the slowest other foot, 0 if not."""
    bounds = np.cumsum([0, *sizes])
    foot = np.stack([speed[:, a:b].mean(axis=1) for a, b in zip(bounds[:-1], bounds[1:])], axis=1)
    if foot.shape[1] < 2:
        return np.zeros(speed.shape)
    others = np.stack([np.delete(foot, i, axis=1).min(axis=1) for i in range(foot.shape[1])], axis=1)
    return np.repeat(np.maximum(foot - others, 0.0), sizes, axis=1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _stature(keypoints: np.ndarray, settings: ContactSettings = DEFAULT) -> float:
    """The body's size, metres: the median over frames of the landmarks' vertical extent (default if implausible)."""
    y = keypoints[..., 1]
    rows = np.any(np.isfinite(y), axis=1)
    extent = np.nanmax(y[rows], axis=1) - np.nanmin(y[rows], axis=1) if rows.any() else np.full(1, np.nan)
    size = float(np.median(extent))
    return size if np.isfinite(size) and size >= settings.min_stature_m else settings.default_stature_m
