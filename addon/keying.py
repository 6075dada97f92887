"""Key a motion onto an armature built from its skeleton: pose-bone channels from Mimic's local rotations, written
in bulk by fcurves.py.

Maths, armature space = Mimic axes. A bone's rest orientation R (3x3, bone.matrix_local) is not world-aligned;
Mimic's local rotation L of a joint is relative to a world-aligned rest. The pose-bone basis rotation that gives
the same world pose is B = R^-1 L R. For quaternions that conjugation keeps w and rotates the vector part by R^T,
so it is one matrix product per bone over all frames; no per-frame Python and no quaternion library needed
(Blender's Python has numpy but no scipy).
"""

from __future__ import annotations

import bpy
import numpy as np

from .armature import bone_rest_matrices, joined_skeleton
from .common import Motion
from .common import rotations as quat
from .fcurves import assign_action, bone_path, key_channels, key_rotation, new_action


def basis_rotations(local_wxyz: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """Mimic local rotations (F, J, 4) w-x-y-z and bone rest orientations (J, 3, 3) -> pose-bone basis
    rotations (F, J, 4) w-x-y-z, continuous over frames."""
    out = np.empty_like(local_wxyz, dtype=np.float64)
    out[..., 0] = local_wxyz[..., 0]
    out[..., 1:] = np.einsum("jba,fjb->fja", rest, local_wxyz[..., 1:])
    return quat.make_continuous(out)


def root_locations(root_positions: np.ndarray, rest: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Root joint positions (F, 3) metres -> the root pose-bone's location channel (F, 3), in its rest frame."""
    return (root_positions - head) @ rest


def key_motion(obj: bpy.types.Object, motion: Motion, action_name: str, frame_start: int = 1) -> bpy.types.Action:
    """Key `motion` onto armature `obj` (bones named like the motion's joints, and its fingers' when it has hands:
    armature.joined_skeleton) as a new action, frames frame_start .. frame_start + F - 1, and assign it; returns
    the action."""
    skeleton, rotations = joined_skeleton(motion)
    rest, heads = bone_rest_matrices(obj, list(skeleton.names))
    basis = basis_rotations(rotations, rest)
    frames = np.arange(motion.num_frames, dtype=np.float64) + frame_start
    action, fcurves = new_action(obj, action_name)
    root = int(np.flatnonzero(skeleton.parents < 0)[0])
    location = root_locations(motion.root_positions, rest[root], heads[root])
    key_channels(fcurves, bone_path(skeleton.names[root], "location"), skeleton.names[root], frames, location)
    for j, name in enumerate(skeleton.names):
        key_rotation(fcurves, obj.pose.bones[name], frames, basis[:, j])
    assign_action(obj, action)
    return action

