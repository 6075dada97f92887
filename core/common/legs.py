"""Planted-foot helpers shared by the core's foot lock (core/foot_lock.py) and the add-on's planting on the user's
character (addon/retarget/feet.py): contact spans, corrections carried across the swings between them, and the
analytic two-bone leg IK. Positions in metres, any axes; rotations w-x-y-z."""

from __future__ import annotations

import numpy as np

from . import rotations as quat

EPS = 1e-9  # lengths below this count as this (no NaN from a zero vector)


def segments(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) inclusive of every run of True in a 1-D mask."""
    edges = np.diff(np.concatenate([[0], np.asarray(mask).astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), (np.flatnonzero(edges == -1) - 1).tolist()))


def carry(correction: np.ndarray, spans: list[tuple[int, int]], fade: int) -> np.ndarray:
    """correction (F, D) kept on the spans' frames and carried across the frames between them: from one span's last
    value to the next one's first (smoothstep) over gaps shorter than 2·fade frames, faded out and in over `fade`
    frames across longer gaps, before the first span and after the last."""
    frames = correction.shape[0]
    out = np.zeros_like(correction)
    for start, end in spans:
        out[start:end + 1] = correction[start:end + 1]
    edges: list[tuple[int, int] | None] = [None, *spans, None]
    for prev, after in zip(edges[:-1], edges[1:]):
        lo = 0 if prev is None else prev[1] + 1
        hi = frames if after is None else after[0]
        if hi <= lo:
            continue
        f = np.arange(lo, hi)
        if prev is not None and after is not None and hi - lo < 2 * fade:
            s = quat.smoothstep((f - lo + 1) / (hi - lo + 1.0))[:, None]
            out[lo:hi] = correction[lo - 1] + s * (correction[hi] - correction[lo - 1])
            continue
        if prev is not None:
            out[lo:hi] += correction[lo - 1] * quat.smoothstep(1.0 - (f - lo + 1) / (fade + 1.0))[:, None]
        if after is not None:
            out[lo:hi] += correction[hi] * quat.smoothstep(1.0 - (hi - f) / (fade + 1.0))[:, None]
    return out


def knee_pole(hip: np.ndarray, knee: np.ndarray, ankle: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """(N, 3) unit direction the knee points to, across the hip-to-ankle line; for a straight leg, `forward` (N, 3)
    (the thigh's forward axis) stands in."""
    axis = quat.unit(ankle - hip, EPS)
    bent = knee - hip
    bent = bent - np.sum(bent * axis, -1, keepdims=True) * axis
    forward = forward - np.sum(forward * axis, -1, keepdims=True) * axis
    straight = np.linalg.norm(bent, axis=-1, keepdims=True) < 1e-4
    return quat.unit(np.where(straight, forward, bent), EPS)


def two_bone(hip: np.ndarray, knee: np.ndarray, ankle: np.ndarray, target: np.ndarray, forward: np.ndarray,
             upper: float, lower: float, longest: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Analytic two-bone IK for N frames: hip, knee, ankle and the ankle's target (N, 3), the thigh's forward axis
    (N, 3) for a straight leg, bone lengths and the longest reach (metres). Returns the world turns (N, 4) of the
    thigh and the shin and the new knee and ankle (N, 3); the knee stays in its current bend plane."""
    pole_old = knee_pole(hip, knee, ankle, forward)
    axis = target - hip
    dist = np.clip(np.linalg.norm(axis, axis=-1), abs(upper - lower) + 1e-6, longest)
    u = quat.unit(axis, EPS)
    pole = quat.unit(pole_old - np.sum(pole_old * u, -1, keepdims=True) * u, EPS)
    cos = np.clip((upper ** 2 + dist ** 2 - lower ** 2) / (2 * upper * dist), -1.0, 1.0)
    knee_new = hip + upper * (cos[:, None] * u + np.sqrt(1 - cos ** 2)[:, None] * pole)
    ankle_new = hip + dist[:, None] * u
    n_old = np.cross(quat.unit(ankle - hip, EPS), pole_old)
    n_new = np.cross(u, pole)
    turn_upper = quat.basis(knee_new - hip, n_new, EPS) @ np.swapaxes(quat.basis(knee - hip, n_old, EPS), -1, -2)
    turn_lower = quat.basis(ankle_new - knee_new, n_new, EPS) @ np.swapaxes(quat.basis(ankle - knee, n_old, EPS),
                                                                              -1, -2)
    return quat.from_matrix(turn_upper), quat.from_matrix(turn_lower), knee_new, ankle_new


def hips_drop(targets: np.ndarray, hips: np.ndarray, longest: np.ndarray, up: int, max_drop: float) -> np.ndarray:
    """(F,) metres the hips must go down (at most max_drop) for every ankle to reach its target: targets and hips
    (F, n_legs, 3), longest (n_legs,) reach, `up` the vertical axis's index. An ankle out of reach sideways asks
    nothing (going down would not help)."""
    d = targets - hips
    flat = np.linalg.norm(np.delete(d, up, axis=-1), axis=-1)
    need = -d[..., up] - np.sqrt(np.maximum(longest ** 2 - flat ** 2, 0.0))
    need = np.where(flat < longest, need, 0.0)
    return np.clip(need.max(axis=1), 0.0, max_drop)


def smooth_drop(drop: np.ndarray, half: int) -> np.ndarray:
    """(F,) hips drop smoothed over 2·half + 1 frames and never below what it was: a moving mean of the moving
    maximum, the ends repeated (numpy only: Blender has no scipy)."""
    if half <= 0:
        return drop
    size = 2 * half + 1
    widest = np.lib.stride_tricks.sliding_window_view(np.pad(drop, half, mode="edge"), size).max(axis=1)
    return np.lib.stride_tricks.sliding_window_view(np.pad(widest, half, mode="edge"), size).mean(axis=1)
