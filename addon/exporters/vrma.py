"""VRM Animation (.vrma): any humanoid armature's action sampled onto Mimic's humanoid (sampling.sample_motion, the
Unity presets' T-pose staging) and written by core/common/vrma.py: glTF binary with VRMC_vrm_animation 1.0, one
rotation channel per humanoid bone, the hips' translation, Y up, metres (three-vrm, UniVRM, VRoid tools)."""

from __future__ import annotations

from pathlib import Path

import bpy

from . import Exporter


def write(context: bpy.types.Context, obj: bpy.types.Object, path: Path,
          bone_map: dict[str, str] | None = None) -> Path:
    """`obj`'s action over the scene's frame range as a VRM Animation; returns the path. bone_map as for
    retargeting (None: the one saved on `obj`, else auto-detected)."""
    from ..common import vrma
    from .sampling import sample_motion

    return vrma.write_vrma(path, sample_motion(context, obj, bone_map))


EXPORTER = Exporter("vrma", "VRM Animation", ".vrma", "The action on VRM's humanoid bones as VRM Animation 1.0 "
                    "(glTF binary): T-pose rest, Y up, metres, hips translation (three-vrm, UniVRM)", write)
