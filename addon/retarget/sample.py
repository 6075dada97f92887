"""Read Blender armatures into the arrays `solve` works on: an animated source sampled frame by frame, a target's
rest pose. mathutils values are turned into numpy once here; the maths stays in solve.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import rigmap
from ..common import rotations as quat
from .solve import SourceMotion, TargetRig, orthonormal

if TYPE_CHECKING:
    import bpy


def source_from_armature(obj: bpy.types.Object, frame_start: int, frame_end: int) -> SourceMotion:
    """Sample an animated armature (its current action, constraints and all) frame by frame into a SourceMotion."""
    import bpy

    scene = bpy.context.scene
    bones = list(obj.data.bones)
    names = [b.name for b in bones]
    parents = np.array([names.index(b.parent.name) if b.parent else -1 for b in bones])
    world = np.array(obj.matrix_world)
    rest_m = np.array([np.array(b.matrix_local) for b in bones])
    rest_w = world @ rest_m
    rest_rot = quat.from_matrix(orthonormal(rest_w[:, :3, :3]))
    frames = np.arange(frame_start, frame_end + 1)
    pose = np.zeros((len(frames), len(bones), 4, 4))
    keep = scene.frame_current
    for f, frame in enumerate(frames):  # Blender evaluates poses one frame at a time
        scene.frame_set(int(frame))
        pose[f] = [np.array(obj.matrix_world) @ np.array(pb.matrix) for pb in (obj.pose.bones[n] for n in names)]
    scene.frame_set(keep)
    rot = quat.multiply(quat.from_matrix(orthonormal(pose[..., :3, :3])), quat.inverse(rest_rot))
    rest = np.array([world[:3, :3] @ np.array(b.head_local) + world[:3, 3] for b in bones])
    tips = np.array([world[:3, :3] @ np.array(b.tail_local) + world[:3, 3] for b in bones])
    fps = scene.render.fps / scene.render.fps_base
    return SourceMotion(names, parents, rest, tips, quat.make_continuous(quat.normalize(rot)), pose[..., :3, 3], fps)


def target_from_armature(obj: bpy.types.Object) -> TargetRig:
    """The rest pose of armature `obj`; parents as `rigmap.armature_bones` reads them (a bone copied in full counts
    as parent)."""
    bones = list(obj.data.bones)
    names = [b.name for b in bones]
    parent = rigmap.armature_bones(obj)
    return TargetRig(names=names, parents=np.array([names.index(parent[n]) if parent[n] else -1 for n in names]),
                     rest=np.array([np.array(b.matrix_local) for b in bones]),
                     heads=np.array([np.array(b.head_local) for b in bones]),
                     tails=np.array([np.array(b.tail_local) for b in bones]), world=np.array(obj.matrix_world))
