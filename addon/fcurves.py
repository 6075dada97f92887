"""Write animation in bulk: a new action, one F-curve per channel with every key set at once by `foreach_set`.

The one place that knows the F-curve API of each Blender version: layered actions with a slot on 4.4+, the legacy
`action.fcurves` before, and where F-curve groups can be given. Used by keying.py (a Mimic armature),
retarget/bake.py (a user's rig), and read back by unity.py and exporters/staging.py. Keys are linear, one per frame, as Blender's BVH importer writes them.
"""

from __future__ import annotations

import bpy
import numpy as np

from .common import rotations as quat


def new_action(obj: bpy.types.Object, name: str) -> tuple[bpy.types.Action, bpy.types.bpy_prop_collection]:
    """A new action for `obj` and the F-curve collection to fill: a layered action with one slot on Blender
    4.4+, the legacy `action.fcurves` before."""
    action = bpy.data.actions.new(name)
    if bpy.app.version >= (4, 4, 0):  # 4.3 has experimental layers with another slots API: use the legacy one there
        slot = action.slots.new(id_type="OBJECT", name=obj.name)
        strip = action.layers.new("Mimic").strips.new(type="KEYFRAME")
        return action, strip.channelbag(slot, ensure=True).fcurves
    return action, action.fcurves


def action_fcurves(action: bpy.types.Action, slot: object = None) -> list[bpy.types.FCurve]:
    """The F-curves of `action`: those `slot` animates, or every one when slot is None (Blender 4.4+ layered
    actions); all of a legacy action's."""
    if bpy.app.version < (4, 4, 0):
        return list(action.fcurves)
    if slot is None:
        return [fc for layer in action.layers for strip in layer.strips for bag in strip.channelbags
                for fc in bag.fcurves]
    from bpy_extras import anim_utils

    bag = anim_utils.action_get_channelbag_for_slot(action, slot)
    return list(bag.fcurves) if bag is not None else []


def assign_action(obj: bpy.types.Object, action: bpy.types.Action) -> None:
    """Make `action` (and its first slot, where slots exist) the active animation of `obj`."""
    anim = obj.animation_data or obj.animation_data_create()
    anim.action = action
    if hasattr(anim, "action_slot") and len(action.slots):
        anim.action_slot = action.slots[0]


def bone_path(bone: str, prop: str, custom: bool = False) -> str:
    """The data path of pose bone `bone`'s property `prop`: an attribute ("location"), or with custom, a custom
    property key ("IK_FK")."""
    owner = f'pose.bones["{bpy.utils.escape_identifier(bone)}"]'
    return f'{owner}["{bpy.utils.escape_identifier(prop)}"]' if custom else f"{owner}.{prop}"


def _new_fcurve(fcurves: bpy.types.bpy_prop_collection, data_path: str, index: int, group: str) -> bpy.types.FCurve:
    try:
        return fcurves.new(data_path, index=index, group_name=group)  # Blender 5.0+
    except TypeError:
        try:  # Blender before 4.4: legacy action.fcurves
            return fcurves.new(data_path, index=index, action_group=group)
        except TypeError:  # Blender 4.4-4.5: channelbag F-curves take no group (grouping is only for display)
            return fcurves.new(data_path, index=index)


def key_channels(fcurves: bpy.types.bpy_prop_collection, data_path: str, group: str, frames: np.ndarray,
                 values: np.ndarray) -> None:
    """Key channel values (F, C) at frames (F,) onto `data_path` indices 0..C-1: one F-curve each, linear keys."""
    co = np.empty(2 * len(frames), dtype=np.float32)
    co[0::2] = frames
    linear = np.ones(len(frames), dtype=np.int32)  # 1 = 'LINEAR'
    for index in range(values.shape[1]):
        fcurve = _new_fcurve(fcurves, data_path, index, group)
        points = fcurve.keyframe_points
        points.add(len(frames))
        co[1::2] = values[:, index]
        points.foreach_set("co", co)
        points.foreach_set("interpolation", linear)
        fcurve.update()


def key_rotation(fcurves: bpy.types.bpy_prop_collection, pose_bone: bpy.types.PoseBone, frames: np.ndarray,
                 quats: np.ndarray) -> None:
    """Key rotations (F, 4) w-x-y-z at frames (F,) in the pose bone's own rotation mode (quaternion, axis-angle or
    an Euler order), grouped under the bone."""
    mode, name = pose_bone.rotation_mode, pose_bone.name
    if mode == "QUATERNION":
        key_channels(fcurves, bone_path(name, "rotation_quaternion"), name, frames, quats)
    elif mode == "AXIS_ANGLE":
        key_channels(fcurves, bone_path(name, "rotation_axis_angle"), name, frames, quat.to_axis_angle(quats))
    else:
        key_channels(fcurves, bone_path(name, "rotation_euler"), name, frames, quat.to_euler(quats, mode))
