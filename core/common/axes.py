"""Axis conventions. Mimic: metres, Y up, the character faces +Z with its left at +X. Blender: Z up, faces -Y.

Mimic -> Blender is a +90 degree turn about X: (x, y, z) -> (x, -z, y), the turn Blender's own FBX and glTF
importers give Y-up files.
"""

from __future__ import annotations

import numpy as np

#: (3, 3) matrix taking Mimic (Y up) vectors to Blender (Z up) vectors.
MIMIC_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
#: The same turn as a w-x-y-z quaternion.
MIMIC_TO_BLENDER_QUAT = np.array([np.cos(np.pi / 4), np.sin(np.pi / 4), 0.0, 0.0])
#: (4, 4) object matrix that stands a Y-up armature up in Blender's Z-up world.
Y_UP_TO_Z_UP = np.eye(4)
Y_UP_TO_Z_UP[:3, :3] = MIMIC_TO_BLENDER


def to_blender(points: np.ndarray) -> np.ndarray:
    """Points or vectors (..., 3) in Mimic axes -> Blender axes."""
    return np.asarray(points, dtype=np.float64) @ MIMIC_TO_BLENDER.T


def from_blender(points: np.ndarray) -> np.ndarray:
    """Points or vectors (..., 3) in Blender axes -> Mimic axes."""
    return np.asarray(points, dtype=np.float64) @ MIMIC_TO_BLENDER
