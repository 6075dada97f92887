"""Rest-pose-aware retargeting of a Mimic motion onto any humanoid armature (owned by the retargeting work)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import bpy

    from addon.motionfile import MotionData


def retarget_motion(motion: MotionData, target: bpy.types.Object, action_name: str,
                    bone_map: dict[str, str] | None = None) -> bpy.types.Action:
    """Bake `motion` onto armature object `target` as a new action named `action_name`; returns the action.

    bone_map maps Mimic joint names (rigs/humanoid.json) to the target's bone names; None = auto-detect.
    """
    raise NotImplementedError("retargeting onto an existing armature is not available yet")
