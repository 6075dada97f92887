"""Export an animated armature with Blender's bundled exporters, set up for Unity and other game engines.

BVH: Blender's `export_anim.bvh` writes armature space; Mimic armatures keep Mimic's Y-up axes there, so the file
is Y-up, faces +Z, root translation only, ZXY rotation channels, metres (core/bvh.py's conventions).
FBX: `export_scene.fbx` with the armature and its baked action only, no leaf bones, Y up / -Z forward, units
scaling into the FBX unit (1 unit = 1 m), so Unity imports a 1:1 humanoid with scale 1 and no root rotation. The
exporter writes the bones' transforms as posed at the current frame and Unity builds the avatar from them, so the
export stands the armature in its rest pose (the T-pose for Mimic armatures) on a frame outside the baked range.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import bpy
from .errors import ExportError

BVH_OPTIONS = {"global_scale": 1.0, "rotate_mode": "ZXY", "root_transform_only": True}
FBX_OPTIONS = {
    "use_selection": True, "object_types": {"ARMATURE"}, "add_leaf_bones": False, "use_armature_deform_only": False,
    "bake_anim": True, "bake_anim_use_all_bones": True, "bake_anim_use_nla_strips": False,
    "bake_anim_use_all_actions": False, "bake_anim_force_startend_keying": True, "bake_anim_step": 1.0,
    "bake_anim_simplify_factor": 0.0, "global_scale": 1.0, "apply_unit_scale": True,
    "apply_scale_options": "FBX_SCALE_UNITS", "axis_forward": "-Z", "axis_up": "Y", "bake_space_transform": False,
    "primary_bone_axis": "Y", "secondary_bone_axis": "X", "armature_nodetype": "NULL", "use_custom_props": False,
    "path_mode": "AUTO",
}


@contextmanager
def _only_selected(context: bpy.types.Context, obj: bpy.types.Object) -> Iterator[None]:
    """Select only `obj` and make it active for the duration; restores the previous selection afterwards."""
    view_layer = context.view_layer
    selected = [o for o in view_layer.objects if o.select_get()]
    active = view_layer.objects.active
    for other in selected:
        other.select_set(False)
    obj.select_set(True)
    view_layer.objects.active = obj
    try:
        with context.temp_override(object=obj, active_object=obj, selected_objects=[obj]):
            yield
    finally:
        obj.select_set(False)
        for other in selected:
            other.select_set(True)
        view_layer.objects.active = active


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temp path beside `path`, renamed onto it on success and deleted on failure (no half-written files).

    The same as core/atomic.py's; kept here because the add-on runs in Blender's Python and imports nothing of core.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".part" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _action_fcurves(action: bpy.types.Action, slot: object) -> list[bpy.types.FCurve]:
    """The F-curves `slot` animates in `action` (Blender 4.4+ layered actions), or all of a legacy action's."""
    if bpy.app.version < (4, 4, 0):
        return list(action.fcurves)
    from bpy_extras import anim_utils

    bag = anim_utils.action_get_channelbag_for_slot(action, slot)
    return list(bag.fcurves) if bag is not None else []


@contextmanager
def _rest_pose_on_current_frame(context: bpy.types.Context, obj: bpy.types.Object) -> Iterator[None]:
    """Make the current frame (one before the scene's range, so it is not baked) show `obj` in its rest pose, using
    a temporary copy of its action with rest keys there; the action, slot and current frame are restored after."""
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
        for fcurve in _action_fcurves(temp, temp_slot):
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


def _check(obj: bpy.types.Object | None, path: Path) -> None:
    if obj is None or obj.type != "ARMATURE":
        raise ExportError("Select an armature to export.")
    if not path.parent.is_dir():
        raise ExportError(f"Output folder {path.parent} does not exist.")


def export_bvh(context: bpy.types.Context, obj: bpy.types.Object, path: str | Path) -> Path:
    """Write the scene's frame range of armature `obj` as a BVH file; returns the path."""
    path = Path(path)
    _check(obj, path)
    scene = context.scene
    with atomic_path(path) as tmp, _only_selected(context, obj):
        result = bpy.ops.export_anim.bvh(filepath=str(tmp), frame_start=scene.frame_start,
                                         frame_end=scene.frame_end, **BVH_OPTIONS)
        if "FINISHED" not in result:
            raise ExportError(f"Blender's BVH exporter did not write {path}.")
    return path


def export_fbx(context: bpy.types.Context, obj: bpy.types.Object, path: str | Path) -> Path:
    """Write armature `obj` with its action baked over the scene's frame range as FBX; returns the path."""
    path = Path(path)
    _check(obj, path)
    with atomic_path(path) as tmp, _only_selected(context, obj), _rest_pose_on_current_frame(context, obj):
        result = bpy.ops.export_scene.fbx(filepath=str(tmp), **FBX_OPTIONS)
        if "FINISHED" not in result:
            raise ExportError(f"Blender's FBX exporter did not write {path}.")
    return path


def _umask() -> int:
    """The process's file-creation mask (os.umask can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
