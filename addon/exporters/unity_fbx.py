"""FBX preset "Unity Humanoid": any humanoid armature's action on a T-pose skeleton with Unity Humanoid names.

The user's rig is never exported as it is (A-pose rests, rolls, MMD names...): its action is retargeted onto a
temporary skeleton with Unity's bone names, a T-pose rest with the character's own bone lengths and its feet on the
floor (staging.on_unity_rig), which is written with the `fbx` format's settings. The export operator then checks the
file against Unity's Humanoid requirements (addon/unity.py).
"""

from __future__ import annotations

from pathlib import Path

import bpy

from . import Exporter, fbx
from .staging import on_unity_rig


def write(context: bpy.types.Context, obj: bpy.types.Object, path: Path,
          bone_map: dict[str, str] | None = None) -> Path:
    """`obj`'s action on a T-pose, Unity-named skeleton as FBX (Y up, +Z forward in Unity, 1 unit = 1 m, no leaf
    bones, baked). bone_map as for retargeting (None: the one saved on `obj`, else auto-detected)."""
    with on_unity_rig(context, obj, bone_map) as rig:  # fbx.write stands it in its T-pose rest for the bind pose
        return fbx.write(context, rig, path)


def check(path: Path) -> list[str]:
    """Every Unity Humanoid requirement the written file breaks (empty = none)."""
    from ..unity import check_unity_fbx

    return check_unity_fbx(path)


EXPORTER = Exporter("unity_fbx", "Unity Humanoid FBX", ".fbx", "The action on a T-pose skeleton with Unity Humanoid "
                    "names and the character's bone lengths: Y up / +Z forward, 1 unit = 1 m, baked; checked against "
                    "Unity's Humanoid requirements", write, check)
