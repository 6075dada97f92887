"""MikuMikuDance motion (.vmd): any humanoid armature's action sampled onto Mimic's humanoid
(sampling.sample_motion, the Unity presets' T-pose staging) and written by core/common/vmd.py with MMD's bone
names and axes."""

from __future__ import annotations

from pathlib import Path

import bpy

from . import Exporter


def write(context: bpy.types.Context, obj: bpy.types.Object, path: Path,
          bone_map: dict[str, str] | None = None) -> Path:
    """`obj`'s action over the scene's frame range as a VMD motion; returns the path. bone_map as for retargeting
    (None: the one saved on `obj`, else auto-detected)."""
    from .. import common
    from .sampling import sample_motion

    vmd = common.layer("vmd")
    return vmd.write_vmd(Path(path), sample_motion(context, obj, bone_map), model_name=obj.name)


EXPORTER = Exporter("vmd", "MMD Motion (VMD)", ".vmd", "The action on MikuMikuDance's bone names as a .vmd "
                    "motion (MMD, Blender's mmd_tools)", write)
