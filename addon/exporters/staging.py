"""Stage an armature for Blender's exporters and run them: select only it, stand it in its rest pose on the current
frame, or put its motion on a temporary T-pose skeleton with Unity Humanoid names. Shared by the format modules; not
a format."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import bpy
import numpy as np

from .. import rigmap
from ..common import Motion, atomic, skeleton
from ..errors import ExportError
from ..fcurves import action_fcurves


@contextmanager
def only_selected(context: bpy.types.Context, obj: bpy.types.Object,
                  extra: Iterable[bpy.types.Object] = ()) -> Iterator[None]:
    """Select only `obj` (and `extra`) with `obj` active for the duration; the previous selection comes back after."""
    view_layer = context.view_layer
    chosen = [obj, *extra]
    selected = [o for o in view_layer.objects if o.select_get()]
    active = view_layer.objects.active
    for other in selected:
        other.select_set(False)
    for o in chosen:
        o.select_set(True)
    view_layer.objects.active = obj
    try:
        with context.temp_override(object=obj, active_object=obj, selected_objects=chosen):
            yield
    finally:
        for o in chosen:
            o.select_set(False)
        for other in selected:
            other.select_set(True)
        view_layer.objects.active = active


def run_exporter(operator: Callable[..., set[str]], name: str, context: bpy.types.Context, obj: bpy.types.Object,
                 path: Path, extra: Iterable[bpy.types.Object] = (), **options: object) -> Path:
    """Run one of Blender's exporter operators (e.g. bpy.ops.export_scene.fbx, `name` "FBX") with `options` on `obj`
    (and `extra`) alone, into a temp file renamed onto `path` once it is written; returns `path`."""
    with atomic.atomic_path(path) as tmp, only_selected(context, obj, extra):
        if "FINISHED" not in operator(filepath=str(tmp), **options):
            raise ExportError(f"Blender's {name} exporter did not write {path}.")
    return path


@contextmanager
def rest_pose_on_current_frame(context: bpy.types.Context, obj: bpy.types.Object) -> Iterator[None]:
    """Make the current frame (one before the scene's range, so it is not baked) show `obj` in its rest pose, using
    a temporary copy of its action with rest keys there; the action, slot and current frame are restored after.
    The FBX exporter writes the bones' transforms at the current frame, and Unity builds its avatar from them."""
    anim = obj.animation_data
    action = anim.action if anim is not None else None
    scene = context.scene
    frame = scene.frame_current
    if action is None:
        yield
        return
    slot = getattr(anim, "action_slot", None)
    temp = action.copy()
    rest_frame = scene.frame_start - 1
    try:
        anim.action = temp
        temp_slot = next((s for s in getattr(temp, "slots", ()) if s.identifier == slot.identifier), None) \
            if slot is not None else None
        if temp_slot is not None:
            anim.action_slot = temp_slot
        for fcurve in action_fcurves(temp, temp_slot):
            owner_path, _, prop = fcurve.data_path.rpartition(".")
            if not owner_path.startswith("pose.bones["):
                continue
            owner = obj.path_resolve(owner_path)
            rna = owner.bl_rna.properties[prop]
            rest = rna.default_array[fcurve.array_index] if rna.is_array else rna.default
            key = fcurve.keyframe_points.insert(rest_frame, float(rest), options={"FAST"})
            key.interpolation = "CONSTANT"
        scene.frame_set(rest_frame)
        yield
    finally:
        anim.action = action
        if slot is not None:
            anim.action_slot = slot
        bpy.data.actions.remove(temp)
        scene.frame_set(frame)


def active_action(obj: bpy.types.Object) -> bpy.types.Action:
    """`obj`'s active action; ExportError when it has none (formats that carry only the animation need one)."""
    anim = obj.animation_data
    if anim is None or anim.action is None:
        raise ExportError(f"{obj.name} has no action to export. Select an animated armature.")
    return anim.action


# --- the Unity T-pose skeleton ---------------------------------------------------------------------------------------

def tpose_skeleton(obj: bpy.types.Object, bone_map: dict[str, str]) -> Motion:
    """Mimic's humanoid (Unity names) in T-pose with the bone lengths of armature `obj`'s mapped bones and the ankles
    as high above the floor as `obj`'s are above the lowest point of its feet (so it stands on y = 0 whatever the
    rig's placement); finger bones where the map has them. Joints the map lacks are left out (their children hang on the nearest mapped ancestor).
    One frame of identity rotations; metres, Mimic axes."""
    human = rigmap.load_humanoid()
    mw = obj.matrix_world
    bones = obj.data.bones
    heads = {j: np.array(mw @ bones[b].head_local) for j, b in bone_map.items()}
    tails = {j: np.array(mw @ bones[b].tail_local) for j, b in bone_map.items()}
    feet = ("LeftFoot", "RightFoot")
    foot_bones = [b for f in feet for b in [bones[bone_map[f]], *bones[bone_map[f]].children_recursive]]
    floor = min(min((mw @ b.head_local).z, (mw @ b.tail_local).z) for b in foot_bones)
    names = [j for j in human.joints if j in bone_map]
    parents, offsets, ends = [], [], []
    for j in names:
        anc = next((a for a in human.ancestors(j) if a in bone_map), None)
        parents.append(-1 if anc is None else names.index(anc))
        if anc is None:
            offsets.append(np.zeros(3))
        else:
            path = [j] + human.ancestors(j)[:human.ancestors(j).index(anc)]
            direction = np.sum([human.offsets[k] for k in path], axis=0)
            offsets.append(direction / np.linalg.norm(direction) * np.linalg.norm(heads[j] - heads[anc]))
        end = np.array(human.ends[j])
        length = max(np.linalg.norm(tails[j] - heads[j]), 0.02)
        ends.append(end / np.linalg.norm(end) * length if np.linalg.norm(end) > 0 else np.zeros(3))
    below = []
    for f in feet:  # the T-posed ankle's height relative to the hips
        chain = [f] + [a for a in human.ancestors(f) if a in bone_map][:-1]
        below.append(sum(offsets[names.index(k)][1] for k in chain))
    ankle = np.mean([heads[f][2] - floor for f in feet])
    offsets[0] = np.array([0.0, ankle - float(np.mean(below)), 0.0])
    rotations = np.zeros((1, len(names), 4))
    rotations[..., 0] = 1.0
    rig = skeleton.Skeleton(tuple(names), np.array(parents), np.array(offsets, dtype=np.float64),
                            np.array(ends, dtype=np.float64))
    return Motion(skeleton=rig, fps=24.0, rotations=rotations, root_positions=np.array([offsets[0]]))


@contextmanager
def on_unity_rig(context: bpy.types.Context, obj: bpy.types.Object,
                 bone_map: dict[str, str] | None = None) -> Iterator[bpy.types.Object]:
    """A temporary T-pose, Unity-named armature carrying `obj`'s active action, retargeted (addon/retarget), with
    the scene's frame range set to that action's; removed, and the range and frame restored, afterwards.
    bone_map as for retargeting (None: the one saved on `obj`, else auto-detected)."""
    from .. import retarget
    from ..armature import create_armature

    action = active_action(obj)
    bone_map = retarget.resolve_target_map(obj, bone_map)
    scene = context.scene
    keep = scene.frame_start, scene.frame_end, scene.frame_current
    armature = create_armature(tpose_skeleton(obj, bone_map), f"{obj.name}_Unity", scene.collection)
    baked = None
    try:
        baked = retarget.retarget_action(obj, armature, action.name + "_Unity", source_map=bone_map)
        scene.frame_start, scene.frame_end = (int(round(v)) for v in baked.frame_range)
        yield armature
    finally:
        data = armature.data
        bpy.data.objects.remove(armature)
        bpy.data.armatures.remove(data)
        if baked is not None:
            bpy.data.actions.remove(baked)
        scene.frame_start, scene.frame_end = keep[:2]
        scene.frame_set(keep[2])
