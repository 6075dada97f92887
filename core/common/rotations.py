"""Unit quaternions w-x-y-z, arrays (..., 4), in numpy alone: products, matrices, continuity, slerp, resampling;
and the vector helpers rotations are built from (unit vectors, orthonormal frames, a smooth ramp for blending).

One implementation for the core and the add-on (Blender's Python has no scipy). Conventions match
scipy.spatial.transform with `scalar_first=True`; the tests check every function against scipy.
"""

from __future__ import annotations

import numpy as np


def unit(v: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """Vectors (..., 3) scaled to length 1; a vector shorter than eps is divided by eps instead (eps 0: NaN for a
    zero vector, which callers use to mark a direction as unknown)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), eps)


def basis(aim: np.ndarray, twist: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """(..., 3, 3) orthonormal frames (rotation matrices) with columns aim, twist made perpendicular to it (Gram-
    Schmidt), aim × twist; NaN where degenerate (eps as in `unit`)."""
    a = unit(aim, eps)
    t = unit(twist - np.sum(twist * a, axis=-1, keepdims=True) * a, eps)
    return np.stack([a, t, np.cross(a, t)], axis=-1)


def smoothstep(x: np.ndarray) -> np.ndarray:
    """0 below 0, 1 above 1, a smooth S between (x clipped to 0..1 first): the weight of a blend."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def identity(*shape: int) -> np.ndarray:
    """Identity quaternions of shape (*shape, 4)."""
    q = np.zeros((*shape, 4))
    q[..., 0] = 1.0
    return q


def normalize(q: np.ndarray) -> np.ndarray:
    """q (..., 4) scaled to unit length."""
    q = np.asarray(q, dtype=np.float64)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b (apply b, then a), broadcasting over leading axes."""
    aw, ax, ay, az = np.moveaxis(np.asarray(a, dtype=np.float64), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.asarray(b, dtype=np.float64), -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def inverse(q: np.ndarray) -> np.ndarray:
    """Inverse of unit quaternions (the conjugate)."""
    return np.asarray(q, dtype=np.float64) * np.array([1.0, -1.0, -1.0, -1.0])


def rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectors v (..., 3) rotated by unit quaternions q (..., 4), broadcasting."""
    q = np.asarray(q, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    u = q[..., 1:]
    t = 2.0 * np.cross(u, v)
    return v + q[..., :1] * t + np.cross(u, t)


def canonical(q: np.ndarray) -> np.ndarray:
    """q (..., 4) with w >= 0 (the same rotation)."""
    q = np.asarray(q, dtype=np.float64)
    return q * np.where(q[..., :1] < 0, -1.0, 1.0)


def from_matrix(m: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions with w >= 0, from the best-conditioned form."""
    m = np.asarray(m, dtype=np.float64)
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    forms = np.stack([
        np.stack([1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], -1),
        np.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], -1),
        np.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], -1),
        np.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], -1)], -2)
    best = np.argmax(np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22,
                               1 - m00 - m11 + m22], -1), axis=-1)
    q = np.take_along_axis(forms, best[..., None, None], axis=-2)[..., 0, :]
    return canonical(normalize(q))


def to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) unit quaternions -> (..., 3, 3) rotation matrices."""
    w, x, y, z = np.moveaxis(np.asarray(q, dtype=np.float64), -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)], -2)


def between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The shortest-arc rotation (4,) turning direction a (3,) onto direction b (3,)."""
    a = np.asarray(a, dtype=np.float64) / np.linalg.norm(a)
    b = np.asarray(b, dtype=np.float64) / np.linalg.norm(b)
    d = float(np.dot(a, b))
    if d < -1.0 + 1e-9:  # opposite: any axis perpendicular to a
        axis = np.cross(a, [1.0, 0.0, 0.0])
        axis = axis if np.linalg.norm(axis) > 1e-6 else np.cross(a, [0.0, 1.0, 0.0])
        return np.concatenate([[0.0], axis / np.linalg.norm(axis)])
    return normalize(np.concatenate([[1.0 + d], np.cross(a, b)]))


def make_continuous(q: np.ndarray) -> np.ndarray:
    """Flip signs along axis 0 (frames) so consecutive quaternions (F, ..., 4) lie in the same hemisphere."""
    q = np.array(q, dtype=np.float64, copy=True)
    if len(q) < 2:
        return q
    flips = np.cumsum(np.sum(q[1:] * q[:-1], axis=-1) < 0, axis=0) % 2 == 1
    q[1:][flips] *= -1.0
    return q


def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical linear interpolation from a to b (..., 4) at t (...) in [0, 1], along the shorter arc."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)[..., None]
    dot = np.sum(a * b, axis=-1, keepdims=True)
    b = np.where(dot < 0, -b, b)
    dot = np.abs(dot)
    angle = np.arccos(np.clip(dot, -1.0, 1.0))
    sin = np.sin(angle)
    close = sin < 1e-6  # nearly equal: linear blend is exact enough and avoids 0/0
    safe = np.where(close, 1.0, sin)
    wa = np.where(close, 1.0 - t, np.sin((1.0 - t) * angle) / safe)
    wb = np.where(close, t, np.sin(t * angle) / safe)
    return normalize(wa * a + wb * b)


def resample_frames(count: int, fps: float, new_fps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For `count` frames at `fps`, the frames at `new_fps` over the same duration: (N,) lower source index,
    (N,) upper source index and (N,) blend 0..1 between them."""
    duration = (count - 1) / fps
    n = max(int(np.floor(duration * new_fps + 1e-6)) + 1, 1)
    t = np.arange(n) * fps / new_fps
    lo = np.clip(np.floor(t).astype(np.int64), 0, count - 1)
    hi = np.clip(lo + 1, 0, count - 1)
    return lo, hi, t - lo


def to_euler(q: np.ndarray, order: str) -> np.ndarray:
    """(F, 4) quaternions -> (F, 3) Euler angles (x, y, z) in radians for extrinsic order `order` ('XYZ' applies X
    first, Blender's rotation modes), unwrapped along frames."""
    m = to_matrix(q)
    i, j, k = ("XYZ".index(c) for c in order)
    sign = 1.0 if (j - i) % 3 == 1 else -1.0
    b = np.arcsin(np.clip(-sign * m[..., k, i], -1.0, 1.0))
    a = np.arctan2(sign * m[..., k, j], m[..., k, k])
    c = np.arctan2(sign * m[..., j, i], m[..., i, i])
    out = np.zeros(q.shape[:-1] + (3,))
    out[..., i], out[..., j], out[..., k] = a, b, c
    return np.unwrap(out, axis=0)


def to_axis_angle(q: np.ndarray) -> np.ndarray:
    """(..., 4) unit quaternions -> (..., 4) angle (radians, 0..pi) then unit axis; identity gets axis +Y."""
    q = canonical(q)
    angle = 2.0 * np.arccos(np.clip(q[..., 0], -1.0, 1.0))
    s = np.sqrt(np.maximum(1.0 - q[..., 0] ** 2, 1e-12))[..., None]
    axis = np.where(s > 1e-6, q[..., 1:] / s, [0.0, 1.0, 0.0])
    return np.concatenate([angle[..., None], axis], axis=-1)
