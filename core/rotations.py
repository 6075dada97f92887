"""Conversions between Mimic's quaternion convention (w-x-y-z, arrays (..., 4)) and scipy's Rotation (x-y-z-w)."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def from_wxyz(q: np.ndarray) -> Rotation:
    """(N, 4) or (4,) w-x-y-z quaternions -> scipy Rotation."""
    return Rotation.from_quat(np.asarray(q, dtype=np.float64), scalar_first=True)


def to_wxyz(r: Rotation) -> np.ndarray:
    """scipy Rotation -> (N, 4) w-x-y-z quaternions with w >= 0."""
    q = r.as_quat(scalar_first=True, canonical=True)
    return q


def identity_wxyz(*shape: int) -> np.ndarray:
    """Identity quaternions of shape (*shape, 4)."""
    q = np.zeros((*shape, 4))
    q[..., 0] = 1.0
    return q


def make_continuous(q: np.ndarray) -> np.ndarray:
    """Flip signs along axis 0 (frames) so consecutive quaternions (F, ..., 4) lie in the same hemisphere."""
    q = np.array(q, copy=True)
    dots = np.sum(q[1:] * q[:-1], axis=-1)
    flips = np.cumsum(dots < 0, axis=0) % 2 == 1
    q[1:][flips] *= -1
    return q
