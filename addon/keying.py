"""Key a motion onto an armature in bulk: one F-curve per channel, all keys set with `foreach_set`.

Maths, armature space = Mimic axes. A bone's rest orientation R (3x3, bone.matrix_local) is not world-aligned;
Mimic's local rotation L of a joint is relative to a world-aligned rest. The pose-bone basis rotation that gives
the same world pose is B = R^-1 L R. For quaternions that conjugation keeps w and rotates the vector part by R^T,
so it is one matrix product per bone over all frames; no per-frame Python and no quaternion library needed
(Blender's Python has numpy but no scipy).
"""

from __future__ import annotations

import bpy
import numpy as np

from .armature import bone_rest_matrices
from .common import Motion
from .common import rotations as quat


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


def new_action(obj: bpy.types.Object, name: str) -> tuple[bpy.types.Action, bpy.types.bpy_prop_collection]:
    """A new action for `obj` and the F-curve collection to fill: a layered action with one slot on Blender
    4.4+, the legacy `action.fcurves` before."""
    action = bpy.data.actions.new(name)
    if bpy.app.version >= (4, 4, 0):  # 4.3 has experimental layers with another slots API: use the legacy one there
        slot = action.slots.new(id_type="OBJECT", name=obj.name)
        strip = action.layers.new("Mimic").strips.new(type="KEYFRAME")
        return action, strip.channelbag(slot, ensure=True).fcurves
    return action, action.fcurves


def assign_action(obj: bpy.types.Object, action: bpy.types.Action) -> None:
    """Make `action` (and its first slot, where slots exist) the active animation of `obj`."""
    anim = obj.animation_data or obj.animation_data_create()
    anim.action = action
    if hasattr(anim, "action_slot") and len(action.slots):
        anim.action_slot = action.slots[0]


def _key_channel(fcurves: bpy.types.bpy_prop_collection, data_path: str, index: int, group: str,
                 frames: np.ndarray, values: np.ndarray) -> None:
    """One F-curve with len(frames) linear keys, set in bulk."""
    try:
        fcurve = fcurves.new(data_path, index=index, group_name=group)  # Blender 5.0+
    except TypeError:
        try:  # Blender before 4.4: legacy action.fcurves
            fcurve = fcurves.new(data_path, index=index, action_group=group)
        except TypeError:  # Blender 4.4-4.5: channelbag F-curves take no group (grouping is only for display)
            fcurve = fcurves.new(data_path, index=index)
    points = fcurve.keyframe_points
    points.add(len(frames))
    co = np.empty(2 * len(frames), dtype=np.float32)
    co[0::2] = frames
    co[1::2] = values
    points.foreach_set("co", co)
    points.foreach_set("interpolation", np.ones(len(frames), dtype=np.int32))  # 1 = 'LINEAR'
    fcurve.update()


def key_motion(obj: bpy.types.Object, motion: Motion, action_name: str, frame_start: int = 1) -> bpy.types.Action:
    """Key `motion` onto armature `obj` (bones named like the motion's joints) as a new action, frames
    frame_start .. frame_start + F - 1, and assign it; returns the action."""
    rest, heads = bone_rest_matrices(obj, motion.names)
    basis = basis_rotations(motion.rotations, rest)
    frames = np.arange(motion.num_frames, dtype=np.float64) + frame_start
    action, fcurves = new_action(obj, action_name)
    root = int(np.flatnonzero(motion.parents < 0)[0])
    location = root_locations(motion.root_positions, rest[root], heads[root])
    root_path = f'pose.bones["{bpy.utils.escape_identifier(motion.names[root])}"].location'
    for axis in range(3):
        _key_channel(fcurves, root_path, axis, motion.names[root], frames, location[:, axis])
    for j, name in enumerate(motion.names):
        path = f'pose.bones["{bpy.utils.escape_identifier(name)}"].rotation_quaternion'
        for axis in range(4):
            _key_channel(fcurves, path, axis, name, frames, basis[:, j, axis])
    assign_action(obj, action)
    return action

