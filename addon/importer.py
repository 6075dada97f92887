"""Put a motion into the scene as one transaction: everything is built, or on any error nothing is left behind."""

from __future__ import annotations

from dataclasses import dataclass, field

import bpy

from .armature import create_armature
from .keying import key_motion
from .common import Motion

#: The ID collections an import may add to; anything new in them is removed again on failure.
TRACKED = ("objects", "armatures", "actions")
FRAME_START = 1


@dataclass
class ImportResult:
    """The armature object that carries the animation, its new action, the number of keyed frames, and the
    core's warnings about the clip (e.g. a joint lost for a while)."""

    armature: bpy.types.Object
    action: bpy.types.Action
    frames: int
    warnings: list[str] = field(default_factory=list)


def data_counts() -> dict[str, int]:
    """How many objects, armatures and actions bpy.data holds (tests compare these before and after)."""
    return {name: len(getattr(bpy.data, name)) for name in TRACKED}


def scene_fps(fps: float) -> tuple[int, float]:
    """Blender's (render.fps, render.fps_base) for a frame rate, e.g. 29.97 -> (30, 1.001)."""
    whole = max(int(round(fps)), 1)
    return whole, whole / fps


class _SceneSnapshot:
    """What an import may change, recorded so a failed import can put it back exactly."""

    def __init__(self, scene: bpy.types.Scene, target: bpy.types.Object | None) -> None:
        self.ids = {name: set(getattr(bpy.data, name)) for name in TRACKED}
        render = scene.render
        self.scene = scene
        self.timing = (render.fps, render.fps_base, scene.frame_start, scene.frame_end, scene.frame_current)
        self.target = target
        anim = target.animation_data if target is not None else None
        self.had_anim = anim is not None
        self.target_action = anim.action if anim is not None else None
        self.target_slot = getattr(anim, "action_slot", None) if anim is not None else None

    def restore(self) -> None:
        new = [idb for name in TRACKED for idb in getattr(bpy.data, name) if idb not in self.ids[name]]
        if new:
            bpy.data.batch_remove(new)
        render, scene = self.scene.render, self.scene
        render.fps, render.fps_base, scene.frame_start, scene.frame_end, frame = self.timing
        scene.frame_set(frame)
        if self.target is not None:
            if not self.had_anim:
                self.target.animation_data_clear()
            elif self.target.animation_data is not None:
                self.target.animation_data.action = self.target_action
                if self.target_slot is not None and hasattr(self.target.animation_data, "action_slot"):
                    self.target.animation_data.action_slot = self.target_slot


def import_motion(context: bpy.types.Context, motion: Motion, name: str, target: bpy.types.Object | None = None,
                  use_scene_fps: bool = False, bone_map: dict[str, str] | None = None,
                  use_foot_plant: bool = True) -> ImportResult:
    """Build the animation of `motion` in the scene, named `name` (the clip's name).

    target None: a new armature from the motion's skeleton (with finger bones when it has hands); else the motion
    is retargeted onto armature `target` (addon/retarget/), and a target without finger bones for a motion with
    hands gets a line in the result's warnings; a motion with expressions has them keyed on the character's shape
    keys (addon/face.py; what was keyed, or why nothing, is a line in the warnings). use_scene_fps: keep the
    scene's frame rate and resample the motion to it; otherwise the scene takes the clip's rate. use_foot_plant:
    planted feet held on the target (retarget_source). The scene's frame range becomes the clip's. On any exception
    every new object, armature and action is removed and the scene's timing restored before the exception
    propagates.
    """
    scene = context.scene
    snapshot = _SceneSnapshot(scene, target)
    notices: list[str] = []
    try:
        if use_scene_fps:
            motion = motion.resampled(scene.render.fps / scene.render.fps_base)
        if target is None:
            obj = create_armature(motion, name, context.collection or scene.collection)
            action = key_motion(obj, motion, name, FRAME_START)
        else:
            from .retarget import retarget_motion

            obj = target
            action = retarget_motion(motion, target, name, bone_map, notices, use_foot_plant)
        if not use_scene_fps:
            scene.render.fps, scene.render.fps_base = scene_fps(motion.fps)
        scene.frame_start, scene.frame_end = FRAME_START, FRAME_START + motion.num_frames - 1
        scene.frame_set(FRAME_START)
        if target is None:
            for other in context.view_layer.objects:
                other.select_set(False)
            context.view_layer.objects.active = obj
            obj.select_set(True)
        if motion.expressions is not None:  # last: the Keys' actions are not in the snapshot
            from .face import key_expressions

            face = key_expressions(obj, motion, None, FRAME_START, name)
            notices.append(face.summary())
    except BaseException:
        snapshot.restore()
        raise
    return ImportResult(obj, action, motion.num_frames, notices)


def import_motions(context: bpy.types.Context, motions: list[Motion], name: str,
                   targets: list[bpy.types.Object | None] | None = None, use_scene_fps: bool = False,
                   bone_map: dict[str, str] | None = None, use_foot_plant: bool = True) -> list[ImportResult]:
    """Every person of a motion file (core.common.motionfile.load_motions), each as its own armature named `name`
    (one person) or `name.p0`, `name.p1` ... (or retargeted onto targets[k] where given), placed by their own root
    positions in the clip's shared world. All or nothing: on any exception nothing of any person is left behind."""
    scene = context.scene
    targets = list(targets or [])
    targets += [None] * (len(motions) - len(targets))
    snapshots = [_SceneSnapshot(scene, t) for t in targets[:len(motions)]] or [_SceneSnapshot(scene, None)]
    results: list[ImportResult] = []
    try:
        for k, (motion, target) in enumerate(zip(motions, targets)):
            label = name if len(motions) == 1 else f"{name}.p{motion.person if motion.person >= 0 else k}"
            results.append(import_motion(context, motion, label, target, use_scene_fps, bone_map, use_foot_plant))
        for result in results:
            result.armature.select_set(True)
        if results:
            context.view_layer.objects.active = results[0].armature
    except BaseException:
        for snapshot in reversed(snapshots):
            snapshot.restore()
        raise
    return results
