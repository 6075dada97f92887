"""Rest-pose-aware retargeting of a motion onto any humanoid armature, baked into a new action on that armature.

The entry points live here; the jobs have one module each: solve.py (the maths, numpy only), sample.py (Blender
armatures into arrays), constraints.py (rigs whose mapped bones hang under constrained helper bones, solved through
Blender's evaluation), bake.py (the new action), bone_maps.py (the map saved on a rig, presets, checks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import rigmap
from ..errors import RetargetError, RigMapError
from .bake import bake_action, check_not_tweaking, plant_feet
from .bone_maps import (BONE_MAP_PROP, PRESET_DIR_ENV, preset_dir, resolve_target_map, rig_preset, store_bone_map,
                        stored_bone_map)
from .constraints import OVERRIDING_CONSTRAINTS, needs_evaluation, overriding_constraints, pose_through_constraints
from .sample import source_from_armature, target_from_armature
from . import solve  # the module: retarget.solve.solve is the maths
from .solve import FOOT_BLEND_M, Baked, SourceMotion, TargetRig, source_from_motion

if TYPE_CHECKING:
    import bpy

    from ..common import Motion

__all__ = [
    "BONE_MAP_PROP", "FOOT_BLEND_M", "OVERRIDING_CONSTRAINTS", "PRESET_DIR_ENV", "Baked", "RetargetError",
    "RigMapError", "SourceMotion", "TargetRig", "bake_action", "check_not_tweaking", "finger_notice",
    "needs_evaluation", "overriding_constraints", "pose_through_constraints", "preset_dir", "resolve_target_map",
    "retarget_action", "retarget_bvh", "retarget_motion", "retarget_source", "rig_preset", "source_from_armature",
    "source_from_motion", "store_bone_map", "stored_bone_map", "target_from_armature"]


def retarget_source(source: SourceMotion, target: bpy.types.Object, action_name: str,
                    bone_map: dict[str, str] | None = None, frame_start: int = 1,
                    source_map: dict[str, str] | None = None, notices: list[str] | None = None,
                    use_foot_plant: bool = True) -> bpy.types.Action:
    """Bake a SourceMotion onto armature `target` (see `retarget_motion`); source_map: canonical joint -> source
    joint, None = auto-detect. notices: where given, one-line notes for the user are appended (fingers skipped).
    use_foot_plant: feet the source marks planted are held still on the target's floor (retarget/feet.py)."""
    bone_map = resolve_target_map(target, bone_map)
    try:
        source_map = rigmap.resolve_bone_map(source.bones, source_map, "The source motion")
    except RigMapError as exc:
        raise RetargetError(str(exc)) from exc
    note = finger_notice(target.name, bone_map, source_map)
    if note and notices is not None:
        notices.append(note)
    fingers = rigmap.load_humanoid().fingers
    bone_map = {j: b for j, b in bone_map.items() if j in source_map or j not in fingers}  # a motion without hands
    bones = rigmap.armature_bones(target)
    rig, geo = target_from_armature(target), rigmap.joint_bones(bone_map, bones)
    baked = solve.solve(source, rig, bone_map, source_map, geo)
    if use_foot_plant:
        baked = plant_feet(baked, source, rig, bone_map, geo)
    if needs_evaluation(target, list(bone_map.values())):
        baked = pose_through_constraints(target, baked, bone_map, rigmap.control_settings(bone_map, bones))
    return bake_action(target, baked, action_name, frame_start)


def finger_notice(target_name: str, bone_map: dict[str, str], source_map: dict[str, str]) -> str | None:
    """The note for a source with fingers onto a target whose map has none (the body is retargeted), else None."""
    fingers = rigmap.load_humanoid().fingers
    if not any(j in source_map for j in fingers) or any(j in bone_map for j in fingers):
        return None
    return (f"{target_name} has no finger bones Mimic recognises, so the fingers were skipped (the body is "
            f"retargeted); map them in the bone map to animate them.")


def retarget_motion(motion: Motion, target: bpy.types.Object, action_name: str,
                    bone_map: dict[str, str] | None = None, notices: list[str] | None = None,
                    use_foot_plant: bool = True) -> bpy.types.Action:
    """Bake `motion` onto armature object `target` as a new action named `action_name`; returns the action.

    bone_map maps Mimic joint names (rigs/humanoid.json) to the target's bone names; None = the map saved on the
    target by the panel, else auto-detect. RetargetError says what to fix (e.g. which required bones are missing).
    The motion's foot contacts, where it has them, choose the supporting foot; its fingers (hand_rotations) go onto
    the finger bones the map names, and a target without any gets a line in `notices` instead. use_foot_plant:
    planted feet stay still on the target's floor whatever its proportions.
    """
    return retarget_source(source_from_motion(motion), target, action_name, bone_map, notices=notices,
                           use_foot_plant=use_foot_plant)


def retarget_action(source: bpy.types.Object, target: bpy.types.Object, action_name: str,
                    bone_map: dict[str, str] | None = None, source_map: dict[str, str] | None = None,
                    notices: list[str] | None = None, use_foot_plant: bool = True) -> bpy.types.Action:
    """Retarget the action playing on armature `source` (an earlier import, a BVH...) onto `target`.
    source_map: the source's bone map, None = the one saved on it, else auto-detected. notices, use_foot_plant: as
    for `retarget_source`."""
    anim = source.animation_data if source is not None else None
    if source is None or source.type != "ARMATURE" or anim is None or anim.action is None:
        raise RetargetError("The source must be an armature with an action. Import a motion or a BVH first.")
    if source == target:
        raise RetargetError("Source and target are the same armature. Pick another armature as the target.")
    start, end = (int(round(v)) for v in anim.action.frame_range)
    return retarget_source(source_from_armature(source, start, end), target, action_name, bone_map, start,
                           source_map if source_map is not None else stored_bone_map(source), notices,
                           use_foot_plant)


def retarget_bvh(path: str, target: bpy.types.Object, action_name: str,
                 bone_map: dict[str, str] | None = None, notices: list[str] | None = None,
                 use_foot_plant: bool = True) -> bpy.types.Action:
    """Retarget a BVH file onto `target` through Blender's bundled BVH importer (Y-up files, any scale)."""
    import bpy

    before = set(bpy.data.objects)
    actions = set(bpy.data.actions)
    view_layer = bpy.context.view_layer
    active, selected = view_layer.objects.active, [o for o in view_layer.objects if o.select_get()]
    bpy.ops.import_anim.bvh(filepath=str(path), update_scene_fps=False, update_scene_duration=False)
    imported = [o for o in bpy.data.objects if o not in before and o.type == "ARMATURE"]
    temporary = set(bpy.data.actions) - actions
    for act in temporary:
        act.name = "mimic_bvh_source"  # leave the clip's name free for the retargeted action
    try:
        if not imported:
            raise RetargetError(f"{path} could not be imported as BVH. Check the file.")
        return retarget_action(imported[0], target, action_name, bone_map, notices=notices,
                               use_foot_plant=use_foot_plant)
    finally:
        for obj in imported:
            data = obj.data
            bpy.data.objects.remove(obj)
            bpy.data.armatures.remove(data)
        for act in temporary:
            bpy.data.actions.remove(act)
        for obj in selected:
            obj.select_set(True)
        view_layer.objects.active = active
