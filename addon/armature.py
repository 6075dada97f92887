"""Build a Blender armature from a motion file's skeleton, with both hands' finger bones when the motion has hands.

The armature's data lives in Mimic's axes (Y up, faces +Z, metres); the object carries the Y-up -> Z-up turn as a
+90 degree rotation about X, exactly like the armatures Blender's FBX importer makes from Y-up files. So world
positions are (x, y, z)_mimic -> (x, -z, y)_blender, and Blender's BVH exporter (which writes armature space)
writes Y-up files, as Unity expects.
"""

from __future__ import annotations


import bpy
import numpy as np
from mathutils import Matrix, Vector

from .common import Motion, axes, layer
from .common import skeleton as skeletons

#: Tail length (metres) for a leaf joint without an end site; Blender deletes zero-length bones.
MIN_BONE_LENGTH = 0.02


def joined_skeleton(motion: Motion) -> tuple[skeletons.Skeleton, np.ndarray]:
    """The armature's joints: the motion's skeleton and (F, J, 4) rotations, with both hands' fingers (J + 30
    joints, Unity names, core/common/hands.py) when the motion has hand_rotations."""
    return layer("hands").motion_with_fingers(motion)


def joint_tails(motion: Motion | skeletons.Skeleton) -> np.ndarray:
    """(J, 3) rest tail per joint, metres, Mimic axes: along the end site where a joint has one (a hand with
    fingers points along itself, not at its thumb), else towards the first child, else a stub along the parent
    bone's direction."""
    skeleton = getattr(motion, "skeleton", motion)
    parents = skeleton.parents
    heads = skeleton.rest_positions()
    ends = np.asarray(skeleton.end_sites, dtype=np.float64)
    tails = heads + ends
    for j in range(len(parents)):
        children = np.flatnonzero(parents == j)
        lengths = np.linalg.norm(skeleton.offsets[children], axis=1) if len(children) else np.zeros(0)
        if np.linalg.norm(ends[j]) > 1e-6:
            continue
        if len(children) and lengths.max() > 1e-6:
            # Prefer the first child that is not at the joint itself (e.g. Chest -> Neck, not a shoulder stub).
            tails[j] = heads[children[int(np.argmax(lengths > 1e-6))]]
        elif np.linalg.norm(tails[j] - heads[j]) < 1e-6:
            p = parents[j]
            direction = heads[j] - heads[p] if p >= 0 else np.array([0.0, 1.0, 0.0])
            norm = np.linalg.norm(direction)
            direction = direction / norm if norm > 1e-6 else np.array([0.0, 1.0, 0.0])
            tails[j] = heads[j] + MIN_BONE_LENGTH * direction
    return tails


def _roll_axis(direction: np.ndarray) -> Vector:
    """The axis a bone's Z should point along: forward (+Z) unless the bone itself points (nearly) forward."""
    d = direction / max(np.linalg.norm(direction), 1e-12)
    return Vector((0.0, 1.0, 0.0)) if abs(d[2]) > 0.9 else Vector((0.0, 0.0, 1.0))


def create_armature(motion: Motion, name: str, collection: bpy.types.Collection) -> bpy.types.Object:
    """A new armature object named `name` in `collection` with one bone per joint in T-pose rest (finger bones
    too when the motion has hands: `joined_skeleton`).

    Bones point from joint to child (Blender's Y axis along the bone), so their rest orientations are *not*
    world-aligned; keying.basis_rotations accounts for that.
    """
    skeleton = joined_skeleton(motion)[0]
    data = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, data)
    collection.objects.link(obj)
    obj.matrix_world = Matrix(axes.Y_UP_TO_Z_UP.tolist())
    heads = skeleton.rest_positions()
    tails = joint_tails(skeleton)
    view_layer = bpy.context.view_layer
    previous_active = view_layer.objects.active
    view_layer.objects.active = obj
    with bpy.context.temp_override(active_object=obj, object=obj, edit_object=obj):
        bpy.ops.object.mode_set(mode="EDIT")
        try:
            edit_bones = data.edit_bones
            for j, joint in enumerate(skeleton.names):
                bone = edit_bones.new(joint)
                bone.head = Vector(heads[j])
                bone.tail = Vector(tails[j])
                bone.align_roll(_roll_axis(tails[j] - heads[j]))
                if skeleton.parents[j] >= 0:
                    bone.parent = edit_bones[skeleton.names[skeleton.parents[j]]]
                    bone.use_connect = False
        finally:
            bpy.ops.object.mode_set(mode="OBJECT")
    view_layer.objects.active = previous_active
    for pose_bone in obj.pose.bones:
        pose_bone.rotation_mode = "QUATERNION"
    return obj


def bone_rest_matrices(obj: bpy.types.Object, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Rest orientations (J, 3, 3) and heads (J, 3) of the named bones in armature space."""
    bones = obj.data.bones
    rest = np.array([np.array(bones[n].matrix_local.to_3x3()) for n in names], dtype=np.float64)
    heads = np.array([np.array(bones[n].head_local) for n in names], dtype=np.float64)
    return rest, heads
