"""Bridges between Mimic's w-x-y-z quaternion arrays and scipy's Rotation, for the core's scipy-based solvers.

The quaternion algebra itself lives once in core/common/rotations.py (numpy only, shared with the add-on).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def from_wxyz(q: np.ndarray) -> Rotation:
    """(N, 4) or (4,) w-x-y-z quaternions -> scipy Rotation."""
    return Rotation.from_quat(np.asarray(q, dtype=np.float64), scalar_first=True)


def to_wxyz(r: Rotation) -> np.ndarray:
    """scipy Rotation -> (N, 4) w-x-y-z quaternions with w >= 0."""
    return r.as_quat(scalar_first=True, canonical=True)
