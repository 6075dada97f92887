"""FBX through Blender's bundled exporter, set up for Unity and other game engines.

The armature (finger bones included, when it has them) and its baked action, with the meshes whose shape keys are
animated (a captured face) and that animation, no leaf bones, Y up / -Z forward,
units scaled into the FBX unit (1 unit = 1 m), so Unity imports a 1:1 humanoid with scale 1 and no root rotation.
The exporter writes the bones' transforms as posed at the current frame and Unity builds the avatar from them, so
the armature stands in its rest pose (the T-pose for Mimic armatures) on a frame outside the baked range while it is
written.
"""

from __future__ import annotations

from pathlib import Path

import bpy

from . import Exporter
from .staging import rest_pose_on_current_frame, run_exporter

OPTIONS = {
    "use_selection": True, "object_types": {"ARMATURE"}, "add_leaf_bones": False, "use_armature_deform_only": False,
    "bake_anim": True, "bake_anim_use_all_bones": True, "bake_anim_use_nla_strips": False,
    "bake_anim_use_all_actions": False, "bake_anim_force_startend_keying": True, "bake_anim_step": 1.0,
    "bake_anim_simplify_factor": 0.0, "global_scale": 1.0, "apply_unit_scale": True,
    "apply_scale_options": "FBX_SCALE_UNITS", "axis_forward": "-Z", "axis_up": "Y", "bake_space_transform": False,
    "primary_bone_axis": "Y", "secondary_bone_axis": "X", "armature_nodetype": "NULL", "use_custom_props": False,
    "path_mode": "AUTO",
}


def write(context: bpy.types.Context, obj: bpy.types.Object, path: Path) -> Path:
    """Write armature `obj` with its action baked over the scene's frame range as FBX, and the character's meshes
    whose shape keys are animated (a captured face, addon/face.py) with that animation; returns the path."""
    meshes = faces_of(obj)
    options = dict(OPTIONS, object_types={"ARMATURE", "MESH"}, use_mesh_modifiers=False) if meshes else OPTIONS
    with rest_pose_on_current_frame(context, obj):
        return run_exporter(bpy.ops.export_scene.fbx, "FBX", context, obj, path, meshes, **options)


def faces_of(obj: bpy.types.Object) -> list[bpy.types.Object]:
    """The meshes of `obj`'s character whose shape keys carry an action. The exporter bakes shape-key animation
    only for meshes it exports, and only with the mesh's modifiers off (other modifiers rebuild the mesh without
    its shape keys)."""
    from ..face import character_meshes

    return [m for m in character_meshes(obj) if m.data.shape_keys is not None
            and m.data.shape_keys.animation_data is not None and m.data.shape_keys.animation_data.action is not None]


EXPORTER = Exporter("fbx", "FBX", ".fbx", "The armature and its baked action as FBX: Y up / -Z forward, 1 unit = 1 m, "
                    "no leaf bones, rest pose as the bind pose", write)
