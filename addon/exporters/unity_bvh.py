"""BVH preset "Unity" (BVH Tools, UniVRM's importer): any humanoid armature's action on a T-pose skeleton with Unity
Humanoid names (staging.on_unity_rig), written with the `bvh` format's settings: Y up, metres, ZXY on every joint,
translation on the root only, T-pose rest with zero rotations."""

from __future__ import annotations

from pathlib import Path

import bpy

from . import Exporter, bvh
from .staging import on_unity_rig


def write(context: bpy.types.Context, obj: bpy.types.Object, path: Path,
          bone_map: dict[str, str] | None = None) -> Path:
    """`obj`'s action on a T-pose, Unity-named skeleton as BVH. bone_map as for retargeting."""
    with on_unity_rig(context, obj, bone_map) as rig:
        return bvh.write(context, rig, path)


EXPORTER = Exporter("unity_bvh", "Unity BVH", ".bvh", "The action on a T-pose skeleton with Unity Humanoid names: "
                    "Y up, metres, ZXY on every joint, root translation only, zero-rotation rest", write)
