"""Sample an armature's animation into a Mimic Motion on the humanoid (Unity names, T-pose rest with world-aligned
joint frames, Mimic axes, metres), for the formats written by core/common's writers (vrma, vmd). Not a format.

The action is first retargeted onto staging.on_unity_rig's temporary T-pose skeleton (the one the Unity presets
use), so a Mimic armature and any character the retargeting maps (VRM, Mixamo, MMD...) give the same result; that
skeleton's pose is then read frame by frame. Its bones rest in T-pose but point along the limbs (not world-aligned),
so a joint's world rotation from rest is P R^-1 (P its posed, R its rest armature-space rotation) and its Mimic local
rotation is the parent joint's inverse times its own. Joints the character lacks are identity at their parent. A
skeleton with all 30 finger bones (Unity names, core/common/hands.py) also gives the motion's hand_rotations.
"""

from __future__ import annotations

from collections.abc import Sequence

import bpy
import numpy as np

from ..common import Motion, layer, skeleton
from ..common import rotations as quat
from .staging import on_unity_rig


def sample_motion(context: bpy.types.Context, obj: bpy.types.Object,
                  bone_map: dict[str, str] | None = None) -> Motion:
    """`obj`'s active action over the scene's frame range as a Motion on Mimic's humanoid at the scene's frame rate.
    bone_map as for retargeting (None: the one saved on `obj`, else auto-detected); RetargetError if unmappable."""
    scene = context.scene
    frames = range(scene.frame_start, scene.frame_end + 1)
    fps = scene.render.fps / scene.render.fps_base
    with on_unity_rig(context, obj, bone_map) as rig:
        motion = rig_motion(scene, rig, frames, fps)
    motion.meta["name"] = obj.animation_data.action.name
    return motion


def rig_motion(scene: bpy.types.Scene, rig: bpy.types.Object, frames: Sequence[int], fps: float) -> Motion:
    """The pose of a T-pose armature whose bones carry humanoid joint names (armature space in Mimic axes, metres,
    as armature.create_armature builds it) at `frames`, as a Motion on the whole humanoid."""
    human = skeleton.humanoid()
    bones = rig.pose.bones
    names = [pb.name for pb in bones]
    rest = np.array([np.array(rig.data.bones[n].matrix_local) for n in names])  # (B, 4, 4)
    flat = np.empty(len(names) * 16, dtype=np.float32)
    pose = np.empty((len(frames), len(names), 4, 4))
    keep = scene.frame_current
    try:
        for f, frame in enumerate(frames):  # Blender evaluates a pose one frame at a time
            scene.frame_set(int(frame))
            bones.foreach_get("matrix", flat)
            pose[f] = flat.reshape(-1, 4, 4).transpose(0, 2, 1)  # foreach_get gives Blender's column-major order
    finally:
        scene.frame_set(keep)
    posed = quat.from_matrix(_orthonormal(pose[..., :3, :3]))
    world = quat.multiply(posed, quat.inverse(quat.from_matrix(_orthonormal(rest[:, :3, :3]))))  # (F, B, 4)
    index = {n: b for b, n in enumerate(names)}
    delta = np.empty((len(frames), human.num_joints, 4))
    heads = np.zeros((human.num_joints, 3))
    ends = np.array(human.end_sites, dtype=np.float64)
    for j, name in enumerate(human.names):
        p = int(human.parents[j])
        if name in index:
            b = index[name]
            delta[:, j], heads[j] = world[:, b], rest[b, :3, 3]
            if np.linalg.norm(ends[j]) > 0:
                tail = np.array(rig.data.bones[name].tail_local)
                ends[j] = ends[j] / np.linalg.norm(ends[j]) * np.linalg.norm(tail - heads[j])
        else:  # the character has no such bone: identity, at its parent joint
            delta[:, j], heads[j] = delta[:, p], heads[p]
    local = delta.copy()
    local[:, 1:] = quat.multiply(quat.inverse(delta[:, human.parents[1:]]), delta[:, 1:])
    offsets = heads.copy()
    offsets[1:] -= heads[human.parents[1:]]
    rig_skeleton = skeleton.Skeleton(human.names, human.parents, offsets, ends)
    fingers = finger_rotations(world, index, delta, human)
    return Motion(skeleton=rig_skeleton, fps=float(fps), rotations=quat.make_continuous(quat.normalize(local)),
                  root_positions=pose[:, index[human.names[0]], :3, 3].copy(),
                  meta={"source": {"format": "blender", "armature": rig.name}},
                  hand_rotations=fingers, hand_confidence=None if fingers is None else np.ones((len(frames), 2)),
                  hand_joints=() if fingers is None else layer("hands").hand_joint_names())


def finger_rotations(world: np.ndarray, index: dict[str, int], delta: np.ndarray,
                     human: skeleton.Skeleton) -> np.ndarray | None:
    """(F, 2, 15, 4) local finger rotations (w-x-y-z, relative to rigs/hand.json's world-aligned rest) from the
    bones' world rotations from rest `world` (F, B, 4) and the body joints' `delta` (F, J, 4); None unless the
    armature has every finger bone."""
    hands = layer("hands")
    names = hands.hand_joint_names()
    parents = hands.hand_skeleton().parents
    if not all(hands.full_name(side, n) in index for side in (0, 1) for n in names):
        return None
    out = np.empty((world.shape[0], 2, len(names), 4))
    for side in (0, 1):
        for k, name in enumerate(names):
            parent = (delta[:, human.index(f"{hands.SIDES[side]}Hand")] if parents[k] < 0
                      else world[:, index[hands.full_name(side, names[parents[k]])]])
            out[:, side, k] = quat.multiply(quat.inverse(parent), world[:, index[hands.full_name(side, name)]])
    return quat.make_continuous(quat.normalize(out))


def _orthonormal(m: np.ndarray) -> np.ndarray:
    """(..., 3, 3) matrices with their columns normalised (scale removed)."""
    return m / np.linalg.norm(m, axis=-2, keepdims=True)
