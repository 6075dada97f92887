"""Write a solved retarget (`Baked`) as a new action on the target, through fcurves.py; the target's other actions
and its NLA are left as they were."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..common import rotations as quat
from ..errors import RetargetError
from ..fcurves import assign_action, bone_path, key_channels, key_rotation, new_action
from .solve import Baked, SourceMotion, TargetRig

if TYPE_CHECKING:
    import bpy


def check_not_tweaking(target: bpy.types.Object) -> None:
    """RetargetError while the NLA is in tweak mode: a new action cannot be made active then."""
    if target.animation_data is not None and target.animation_data.use_tweak_mode:
        raise RetargetError(f"{target.name} is in NLA tweak mode. Leave tweak mode (Tab in the NLA editor) first.")


def bake_action(target: bpy.types.Object, baked: Baked, action_name: str, frame_start: int = 1) -> bpy.types.Action:
    """Key `baked` into a new action on `target` and make it active; the previous active action keeps a fake user,
    NLA is untouched. Bones between mapped ones and the switches are keyed once, on the first frame."""
    check_not_tweaking(target)
    anim = target.animation_data or target.animation_data_create()
    if anim.action is not None:
        anim.action.use_fake_user = True
    action, fcurves = new_action(target, action_name)
    frames = frame_start + np.arange(baked.location.shape[0], dtype=np.float64)
    bones = target.pose.bones
    for name, quats in baked.rotations.items():
        key_rotation(fcurves, bones[name], frames, quats)
    key_channels(fcurves, bone_path(baked.hips, "location"), baked.hips, frames, baked.location)
    for name in baked.identity:
        key_rotation(fcurves, bones[name], frames[:1], quat.identity(1))
        key_channels(fcurves, bone_path(name, "location"), name, frames[:1], np.zeros((1, 3)))
    for (name, key), value in baked.switches.items():
        key_channels(fcurves, bone_path(name, key, custom=True), name, frames[:1], np.array([[value]]))
    assign_action(target, action)
    return action


def plant_feet(baked: Baked, source: SourceMotion, rig: TargetRig, bone_map: dict[str, str],
               joint_bones: dict[str, str]) -> Baked:
    """`baked` with the source's planted feet held still on the target's floor (retarget/feet.py); where that
    cannot be done (no contacts, no legs mapped) `baked` as it was and one line on the console saying why."""
    from . import feet

    reason = feet.skip_reason(baked, source.contacts)
    if reason is not None:
        print(f"Mimic: {reason}")
        return baked
    return feet.plant(baked, rig, bone_map, joint_bones, source.contacts, source.fps)[0]
