"""glTF binary (.glb) through Blender's bundled glTF exporter: the armature, the meshes it deforms (its mesh
children) and its active action, Y up as glTF requires (three.js, web viewers, VRM tools)."""

from __future__ import annotations

from pathlib import Path

import bpy

from . import Exporter
from .staging import active_action, run_exporter

OPTIONS = {"export_format": "GLB", "use_selection": True, "export_yup": True, "export_apply": False,
           "export_animations": True, "export_animation_mode": "ACTIVE_ACTIONS", "export_skins": True,
           "export_bake_animation": False, "export_anim_slide_to_zero": False}


def write(context: bpy.types.Context, obj: bpy.types.Object, path: Path) -> Path:
    """Write armature `obj`, its mesh children and its active action as one .glb file; returns the path."""
    active_action(obj)
    meshes = [c for c in obj.children_recursive if c.type == "MESH"]
    return run_exporter(bpy.ops.export_scene.gltf, "glTF", context, obj, path, meshes, **OPTIONS)


EXPORTER = Exporter("glb", "glTF Binary", ".glb", "The armature, its meshes and its action as one .glb file "
                    "(three.js, web viewers, VRM tools)", write)
