"""BVH through Blender's bundled exporter, with Unity's conventions.

`export_anim.bvh` writes armature space; Mimic armatures keep Mimic's Y-up axes there, so the file is Y up, faces +Z,
root translation only, ZXY rotation channels, metres (core/bvh.py's conventions), with each hand's finger joints
below it when the motion had hands (core.bvh reads them back as hand_rotations). Other rigs are written in their own
armature space, finger bones and all; for Unity, use `unity_bvh`.
"""

from __future__ import annotations

from pathlib import Path

import bpy

from . import Exporter
from .staging import run_exporter

OPTIONS = {"global_scale": 1.0, "rotate_mode": "ZXY", "root_transform_only": True}


def write(context: bpy.types.Context, obj: bpy.types.Object, path: Path) -> Path:
    """Write the scene's frame range of armature `obj` as BVH; returns the path."""
    scene = context.scene
    return run_exporter(bpy.ops.export_anim.bvh, "BVH", context, obj, path, frame_start=scene.frame_start,
                        frame_end=scene.frame_end, **OPTIONS)


EXPORTER = Exporter("bvh", "BVH", ".bvh", "The armature's animation as BVH: Y up, metres, ZXY rotation channels, "
                    "root translation only (Mimic armatures: Unity's conventions)", write)
