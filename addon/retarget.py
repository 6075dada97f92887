"""Rest-pose-aware retargeting of a motion onto any humanoid armature, baked into a new action on that armature.

Each mapped target bone gets the source joint's world rotation relative to its rest, applied after a fixed rest
offset that turns the target's rest bone onto the source's rest direction (so A-pose, T-pose, any roll and any bone
axis convention give the same limb directions; no per-rig cases). Bones between mapped ones keep their rest relation
(they follow rigidly). The hips travel by the source root motion scaled by the ratio of leg lengths, corrected per
frame so that the supporting foot is as high above the target's rest floor as the source's is (scaled).
Where mapped bones hang under helper bones driven by constraints (a generated Rigify rig's FK controls), the same
orientations are reached frame by frame through Blender's own evaluation of the rig (`pose_through_constraints`).

Quaternions are w-x-y-z numpy arrays. Blender's Python has no scipy, so the few quaternion operations needed are
written here in numpy (vectorised over frames); mathutils is used only for one-off rest matrices and for the
frame-by-frame solve through Blender's evaluation.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import rigmap
from .errors import RetargetError

if TYPE_CHECKING:
    import bpy

    from .motionfile import MotionData

# Mimic (Y up, faces +Z) -> Blender (Z up, faces -Y): (x, y, z) -> (x, -z, y), a +90 degree turn about X.
MIMIC_TO_BLENDER = np.array([np.cos(np.pi / 4), np.sin(np.pi / 4), 0.0, 0.0])
FOOT_BLEND_M = 0.02  # how sharply the supporting foot is chosen when both feet are near the floor (source metres)
BONE_MAP_PROP = "mimic_bone_map"  # custom property on the armature object: the user's bone map as JSON
PRESET_DIR_ENV = "MIMIC_BONE_MAP_DIR"
#: Constraint types that replace a bone's own rotation: keys on such a bone would not show.
OVERRIDING_CONSTRAINTS = frozenset({"COPY_TRANSFORMS", "COPY_ROTATION", "CHILD_OF", "ARMATURE", "IK", "SPLINE_IK",
                                    "DAMPED_TRACK", "LOCKED_TRACK", "TRACK_TO", "STRETCH_TO", "TRANSFORM"})


# --- quaternions (w-x-y-z, (..., 4)) ------------------------------------------------------------------------------

def qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b (apply b, then a), broadcasting over leading axes."""
    aw, ax, ay, az = np.moveaxis(np.asarray(a, dtype=np.float64), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.asarray(b, dtype=np.float64), -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def qinv(q: np.ndarray) -> np.ndarray:
    """Inverse of unit quaternions."""
    return np.asarray(q, dtype=np.float64) * np.array([1.0, -1.0, -1.0, -1.0])


def qrot(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors v (..., 3) by unit quaternions q (..., 4)."""
    q = np.asarray(q, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    u = q[..., 1:]
    t = 2.0 * np.cross(u, v)
    return v + q[..., :1] * t + np.cross(u, t)


def qnormalize(q: np.ndarray) -> np.ndarray:
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def quat_from_matrix(m: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions, from the best-conditioned of the four forms."""
    m = np.asarray(m, dtype=np.float64)
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    forms = np.stack([
        np.stack([1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], -1),
        np.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], -1),
        np.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], -1),
        np.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], -1)], -2)
    best = np.argmax(np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22,
                               1 - m00 - m11 + m22], -1), axis=-1)
    q = np.take_along_axis(forms, best[..., None, None], axis=-2)[..., 0, :]
    q = qnormalize(q)
    return q * np.where(q[..., :1] < 0, -1.0, 1.0)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) unit quaternions -> (..., 3, 3) rotation matrices."""
    w, x, y, z = np.moveaxis(np.asarray(q, dtype=np.float64), -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)], -2)


def quat_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The shortest-arc rotation (4,) turning direction a (3,) onto direction b (3,)."""
    a = np.asarray(a, dtype=np.float64) / np.linalg.norm(a)
    b = np.asarray(b, dtype=np.float64) / np.linalg.norm(b)
    d = float(np.dot(a, b))
    if d < -1.0 + 1e-9:
        axis = np.cross(a, [1.0, 0.0, 0.0])
        axis = axis if np.linalg.norm(axis) > 1e-6 else np.cross(a, [0.0, 1.0, 0.0])
        return np.concatenate([[0.0], axis / np.linalg.norm(axis)])
    return qnormalize(np.concatenate([[1.0 + d], np.cross(a, b)]))


def make_continuous(q: np.ndarray) -> np.ndarray:
    """Flip signs along axis 0 (frames) so consecutive quaternions (F, ..., 4) lie in the same hemisphere."""
    q = np.array(q, copy=True)
    flips = np.cumsum(np.sum(q[1:] * q[:-1], axis=-1) < 0, axis=0) % 2 == 1
    q[1:][flips] *= -1
    return q


def quat_to_euler(q: np.ndarray, order: str) -> np.ndarray:
    """(F, 4) quaternions -> (F, 3) Blender Euler angles (x, y, z) in radians for rotation mode `order` ('XYZ'
    applies X first), unwrapped along frames."""
    m = quat_to_matrix(q)
    i, j, k = ("XYZ".index(c) for c in order)
    sign = 1.0 if (j - i) % 3 == 1 else -1.0
    b = np.arcsin(np.clip(-sign * m[..., k, i], -1.0, 1.0))
    a = np.arctan2(sign * m[..., k, j], m[..., k, k])
    c = np.arctan2(sign * m[..., j, i], m[..., i, i])
    out = np.zeros(q.shape[:-1] + (3,))
    out[..., i], out[..., j], out[..., k] = a, b, c
    return np.unwrap(out, axis=0)


# --- the source motion, in Blender world space ----------------------------------------------------------------------

@dataclass
class SourceMotion:
    """A motion to retarget, in Blender world axes (Z up, metres). names/parents: J joints, parents first;
    rest: (J, 3) rest head positions; tips: (J, 3) where each joint's bone points at rest (its end site / tail);
    rotations: (F, J, 4) world rotation of each joint relative to its rest, w-x-y-z; positions: (F, J, 3)."""

    names: list[str]
    parents: np.ndarray
    rest: np.ndarray
    tips: np.ndarray
    rotations: np.ndarray
    positions: np.ndarray
    fps: float

    @property
    def bones(self) -> dict[str, str | None]:
        return {n: (self.names[p] if p >= 0 else None) for n, p in zip(self.names, self.parents)}


def source_from_motion(motion: MotionData) -> SourceMotion:
    """A Mimic motion (Y up, T-pose rest with world-aligned joint frames, local rotations) in Blender world space."""
    rot = qnormalize(np.asarray(motion.rotations, dtype=np.float64))
    frames, joints = rot.shape[:2]
    glob = np.zeros_like(rot)
    pos = np.zeros((frames, joints, 3))
    rest = np.zeros((joints, 3))
    for j, p in enumerate(motion.parents):
        if p < 0:
            glob[:, j] = rot[:, j]
            pos[:, j] = motion.root_positions
            rest[j] = motion.offsets[j]
        else:
            glob[:, j] = qmul(glob[:, p], rot[:, j])
            pos[:, j] = pos[:, p] + qrot(glob[:, p], motion.offsets[j])
            rest[j] = rest[p] + motion.offsets[j]
    tips = rest + motion.end_sites
    conv = MIMIC_TO_BLENDER
    return SourceMotion(
        names=list(motion.names), parents=np.asarray(motion.parents), rest=qrot(conv, rest), tips=qrot(conv, tips),
        rotations=qmul(qmul(conv, glob), qinv(conv)), positions=qrot(conv, pos), fps=float(motion.fps))


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
    rest_rot = quat_from_matrix(_orthonormal(rest_w[:, :3, :3]))
    frames = np.arange(frame_start, frame_end + 1)
    pose = np.zeros((len(frames), len(bones), 4, 4))
    keep = scene.frame_current
    for f, frame in enumerate(frames):  # Blender evaluates poses one frame at a time
        scene.frame_set(int(frame))
        pose[f] = [np.array(obj.matrix_world) @ np.array(pb.matrix) for pb in (obj.pose.bones[n] for n in names)]
    scene.frame_set(keep)
    rot = qmul(quat_from_matrix(_orthonormal(pose[..., :3, :3])), qinv(rest_rot))
    rest = np.array([world[:3, :3] @ np.array(b.head_local) + world[:3, 3] for b in bones])
    tips = np.array([world[:3, :3] @ np.array(b.tail_local) + world[:3, 3] for b in bones])
    fps = scene.render.fps / scene.render.fps_base
    return SourceMotion(names, parents, rest, tips, make_continuous(qnormalize(rot)), pose[..., :3, 3], fps)


def _orthonormal(m: np.ndarray) -> np.ndarray:
    """Strip scale from (..., 3, 3) matrices (columns normalised)."""
    return m / np.linalg.norm(m, axis=-2, keepdims=True)


# --- the target rig ---------------------------------------------------------------------------------------------------

@dataclass
class TargetRig:
    """An armature's rest pose. names/parents: bones (parent index, -1 root); rest: (B, 4, 4) armature-space bone
    matrices; heads/tails: (B, 3) armature space; world: (4, 4) object matrix."""

    names: list[str]
    parents: np.ndarray
    rest: np.ndarray
    heads: np.ndarray
    tails: np.ndarray
    world: np.ndarray

    @classmethod
    def from_object(cls, obj: bpy.types.Object) -> TargetRig:
        """The rest pose; parents as `rigmap.armature_bones` reads them (a bone copied in full counts as parent)."""
        bones = list(obj.data.bones)
        names = [b.name for b in bones]
        parent = rigmap.armature_bones(obj)
        return cls(names=names, parents=np.array([names.index(parent[n]) if parent[n] else -1 for n in names]),
                   rest=np.array([np.array(b.matrix_local) for b in bones]),
                   heads=np.array([np.array(b.head_local) for b in bones]),
                   tails=np.array([np.array(b.tail_local) for b in bones]), world=np.array(obj.matrix_world))

    @property
    def bones(self) -> dict[str, str | None]:
        return {n: (self.names[p] if p >= 0 else None) for n, p in zip(self.names, self.parents)}

    def world_points(self, p: np.ndarray) -> np.ndarray:
        return p @ self.world[:3, :3].T + self.world[:3, 3]

    def world_rest_rotations(self) -> np.ndarray:
        """(B, 4) each bone's rest orientation in world space."""
        return quat_from_matrix(_orthonormal(self.world[:3, :3] @ self.rest[:, :3, :3]))

    def ancestors(self, b: int) -> list[int]:
        out: list[int] = []
        while self.parents[b] >= 0 and int(self.parents[b]) not in out:
            b = int(self.parents[b])
            out.append(b)
        return out


@dataclass
class Baked:
    """Per-frame pose channels for the target. rotations: bone -> (F, 4) basis quaternions; location: (F, 3) basis
    translation of the hips bone; hips: its name; identity: unmapped bones between mapped ones (rest pose);
    positions: canonical joint -> (F, 3) predicted world head positions; scale: leg-length ratio target / source;
    deltas: canonical joint -> (F, 4) world rotation of its mapped bone from its rest; hips_head: (F, 3) world
    position of the hips bone's head; switches: (pose bone, custom property) -> value, keyed once."""

    rotations: dict[str, np.ndarray]
    location: np.ndarray
    hips: str
    identity: list[str]
    positions: dict[str, np.ndarray]
    scale: float
    deltas: dict[str, np.ndarray] = field(default_factory=dict)
    hips_head: np.ndarray | None = None
    switches: dict[tuple[str, str], float] = field(default_factory=dict)


def _body_frame(points: dict[str, np.ndarray]) -> np.ndarray:
    """3x3 world rotation whose columns are the body's left, up and forward axes, from rest joint positions."""
    left = points["LeftUpperLeg"] - points["RightUpperLeg"]
    if "LeftUpperArm" in points and "RightUpperArm" in points:
        left = left + points["LeftUpperArm"] - points["RightUpperArm"]
    up = points["Head"] - points["Hips"]
    up = up / np.linalg.norm(up)
    left = left - up * np.dot(left, up)
    left = left / np.linalg.norm(left)
    return np.stack([left, up, np.cross(left, up)], axis=1)


def _leg_length(points: dict[str, np.ndarray]) -> float:
    legs = [np.linalg.norm(points[f"{s}LowerLeg"] - points[f"{s}UpperLeg"]) +
            np.linalg.norm(points[f"{s}Foot"] - points[f"{s}LowerLeg"]) for s in ("Left", "Right")]
    return float(np.mean(legs))


def solve(source: SourceMotion, rig: TargetRig, bone_map: dict[str, str],
          source_map: dict[str, str], joint_bones: dict[str, str] | None = None) -> Baked:
    """The retargeting maths (numpy only). bone_map / source_map: canonical joint -> target bone / source joint;
    joint_bones: canonical joint -> the bone whose rest head and tail mark the joint (default: the mapped bone)."""
    human = rigmap.load_humanoid()
    joints = [j for j in human.names if j in bone_map and j in source_map]
    src_idx = {j: source.names.index(source_map[j]) for j in joints}
    tgt_idx = {j: rig.names.index(bone_map[j]) for j in joints}
    geo_idx = {j: rig.names.index((joint_bones or bone_map).get(j, bone_map[j])) for j in joints}
    heads_w = rig.world_points(rig.heads)
    tails_w = rig.world_points(rig.tails)
    rest_rot = rig.world_rest_rotations()
    t_pts = {j: heads_w[geo_idx[j]] for j in joints}
    s_pts = {j: source.rest[src_idx[j]] for j in joints}

    body = quat_from_matrix(_body_frame(s_pts) @ _body_frame(t_pts).T)
    offset: dict[str, np.ndarray] = {}
    for j in joints:
        aim = human.aim.get(j)
        while aim is not None and aim not in tgt_idx:
            aim = human.aim.get(aim)
        if aim is not None:
            d_t, d_s = t_pts[aim] - t_pts[j], s_pts[aim] - s_pts[j]
        else:  # the target maps nothing further down this chain: its bone's own tail, the source's next joint
            d_t, d_s = tails_w[geo_idx[j]] - t_pts[j], source.tips[src_idx[j]] - s_pts[j]
            nxt = human.aim.get(j)
            while nxt is not None and nxt not in source_map:
                nxt = human.aim.get(nxt)
            if nxt is not None:
                d_s = source.rest[source.names.index(source_map[nxt])] - s_pts[j]
        if np.linalg.norm(d_s) < 1e-6 or np.linalg.norm(d_t) < 1e-6:
            offset[j] = body
        else:
            offset[j] = qmul(quat_between(qrot(body, d_t), d_s), body)

    glob = {j: source.rotations[:, src_idx[j]] for j in joints}
    mapped_bone = {tgt_idx[j]: j for j in joints}
    anc_joint: dict[str, str | None] = {}
    for j in joints:
        anc_joint[j] = next((mapped_bone[a] for a in rig.ancestors(tgt_idx[j]) if a in mapped_bone), None)

    rotations: dict[str, np.ndarray] = {}
    deltas: dict[str, np.ndarray] = {}
    for j in joints:
        r_b = rest_rot[tgt_idx[j]]
        deltas[j] = world_delta = qmul(glob[j], offset[j])  # G_j * O_j
        k = anc_joint[j]
        rel = world_delta if k is None else qmul(qinv(qmul(glob[k], offset[k])), world_delta)
        rotations[bone_map[j]] = make_continuous(qnormalize(qmul(qmul(qinv(r_b), rel), r_b)))

    # Root motion: scaled by leg lengths, then lifted so the supporting foot stands as the source's does.
    scale = _leg_length(t_pts) / _leg_length(s_pts)
    root = "Hips"
    hips_src = source.positions[:, src_idx[root]]
    hips = t_pts[root] + scale * (hips_src - s_pts[root])
    positions = _forward(joints, anc_joint, glob, offset, t_pts, hips)
    feet = [f for f in ("LeftFoot", "RightFoot") if f in positions]
    src_h = np.stack([scale * (source.positions[:, src_idx[f], 2] - s_pts[f][2]) for f in feet], axis=1)
    tgt_h = np.stack([positions[f][:, 2] - t_pts[f][2] for f in feet], axis=1)
    weight = np.exp(-(src_h - src_h.min(axis=1, keepdims=True)) / (scale * FOOT_BLEND_M))
    lift = np.sum(weight * (src_h - tgt_h), axis=1) / np.sum(weight, axis=1)
    hips[:, 2] += lift
    for j in positions:
        positions[j][:, 2] += lift

    hb = tgt_idx[root]
    head = hips + qrot(deltas[root], heads_w[hb] - t_pts[root])  # the hips bone's head, where it is not the joint
    local = (head - heads_w[hb]) @ np.linalg.inv(rig.world[:3, :3]).T  # armature-space displacement
    location = local @ rig.rest[hb, :3, :3]  # into the hips bone's rest frame: R^T d for each frame
    mapped_set = set(tgt_idx.values())
    chain = {a for b in mapped_set for a in rig.ancestors(b)} - mapped_set
    return Baked(rotations, location, bone_map[root], [rig.names[b] for b in sorted(chain)], positions, scale,
                 deltas, head)


def _forward(joints: list[str], anc: dict[str, str | None], glob: dict[str, np.ndarray],
             offset: dict[str, np.ndarray], rest: dict[str, np.ndarray], hips: np.ndarray) -> dict[str, np.ndarray]:
    """World head positions (F, 3) of the mapped joints: each moves rigidly with its nearest mapped ancestor."""
    out: dict[str, np.ndarray] = {}
    for j in joints:  # canonical order: ancestors first
        k = anc[j]
        if k is None:
            out[j] = hips.copy()
        else:
            out[j] = out[k] + qrot(qmul(glob[k], offset[k]), rest[j] - rest[k])
    return out


# --- rigs whose mapped bones hang under constrained helper bones (generated control rigs) -------------------------

def _constrained(pb: bpy.types.PoseBone) -> bool:
    """True when an active constraint acts on the pose bone (muted or zero-influence ones do not count)."""
    return any(con.enabled and con.influence > 0.0 for con in pb.constraints)


def needs_evaluation(obj: bpy.types.Object, bones: list[str]) -> bool:
    """True when an ancestor of one of `bones` is driven by constraints (a control rig's helper bones): then only
    Blender's evaluation tells where a keyed bone's parent is, not the rest pose."""
    for name in bones:
        parent = obj.data.bones[name].parent
        while parent is not None:
            if _constrained(obj.pose.bones[parent.name]):
                return True
            parent = parent.parent
    return False


def _depends_on(obj: bpy.types.Object, bones: list[str]) -> set[str]:
    """Bones whose pose the evaluated pose of `bones` depends on: parents and same-armature constraint targets,
    recursively (Rigify's FK spine follows the hips and chest controls through its helper bones)."""
    seen: set[str] = set()
    todo = list(bones)
    while todo:
        pb = obj.pose.bones[todo.pop()]
        found = [pb.parent.name] if pb.parent else []
        for con in pb.constraints:
            if con.enabled:
                targets = list(con.targets) if con.type == "ARMATURE" else [con]
                found += [t.subtarget for t in targets
                          if getattr(t, "target", None) == obj and getattr(t, "subtarget", "")]
                if getattr(con, "pole_target", None) == obj and con.pole_subtarget:
                    found.append(con.pole_subtarget)
        for name in found:
            if name not in seen and name in obj.pose.bones:
                seen.add(name)
                todo.append(name)
    return seen


def _check_not_tweaking(target: bpy.types.Object) -> None:
    """RetargetError while the NLA is in tweak mode: a new action cannot be made active then."""
    if target.animation_data is not None and target.animation_data.use_tweak_mode:
        raise RetargetError(f"{target.name} is in NLA tweak mode. Leave tweak mode (Tab in the NLA editor) first.")


def pose_through_constraints(target: bpy.types.Object, baked: Baked, bone_map: dict[str, str],
                             settings: dict[str, float]) -> Baked:
    """`baked` for a rig whose mapped bones hang under constrained helper bones: frame by frame, each mapped bone's
    basis is solved against its parent as Blender evaluates it (constraints and drivers included), so that the bone
    turns by `baked.deltas` from its rest and the hips bone's head reaches `baked.hips_head`. settings: pose-bone
    custom properties set (and keyed) first, e.g. Rigify's IK_FK = 1 so that the FK controls drive the limbs.

    Blender evaluates one pose at a time, so this loops over frames, with one depsgraph update per level of mapped
    bones that need it (parents before children). A mapped bone joined to its mapped parent only by free bones (a
    forearm under its upper arm) keeps the vectorised basis from `solve`. Free bones the mapped ones depend on are
    held at rest; the rig's pose, those properties and its animation are restored afterwards (the action that
    `bake_action` writes carries the result)."""
    import bpy
    from mathutils import Matrix, Quaternion, Vector

    _check_not_tweaking(target)
    human = rigmap.load_humanoid()
    joints = [j for j in human.names if j in baked.deltas]
    mapped = set(bone_map.values())
    anc = {j: next((a for a in human.ancestors(j) if a in baked.deltas), None) for j in joints}
    rigid: list[str] = []  # joints whose bone hangs on its mapped parent's bone (or the root) through free bones
    for j in joints:
        parent = target.data.bones[bone_map[j]].parent
        while parent is not None and parent.name not in mapped and not _constrained(target.pose.bones[parent.name]):
            parent = parent.parent
        if (parent.name if parent is not None else None) == (bone_map[anc[j]] if anc[j] is not None else None):
            rigid.append(j)
    solved = [j for j in joints if j not in rigid]
    depth = {j: sum(a in solved for a in human.ancestors(j)) for j in solved}
    levels = [[j for j in solved if depth[j] == d] for d in range(max(depth.values(), default=-1) + 1)]
    first_needs_update = any(anc[j] is not None for j in levels[0]) if levels else False
    world = np.array(target.matrix_world)
    turn = _orthonormal(world[:3, :3])
    rest = {j: _orthonormal(np.array(target.data.bones[bone_map[j]].matrix_local)[:3, :3]) for j in solved}
    goal = {j: turn.T @ quat_to_matrix(baked.deltas[j]) @ turn @ rest[j] for j in solved}  # (F, 3, 3) armature
    hips = (baked.hips_head - world[:3, 3]) @ np.linalg.inv(world[:3, :3]).T
    free = sorted(n for n in _depends_on(target, sorted(mapped))
                  if n not in mapped and not _constrained(target.pose.bones[n]))
    switches = {(pb.name, key): value for pb in target.pose.bones for key, value in settings.items() if key in pb}
    kept_props = {(name, key): target.pose.bones[name][key] for name, key in switches}
    kept_pose = {name: target.pose.bones[name].matrix_basis.copy() for name in free + sorted(mapped)}
    frames = baked.hips_head.shape[0]
    quats = {j: np.zeros((frames, 4)) for j in solved}
    location = baked.location.copy()
    zero = Vector((0.0, 0.0, 0.0))
    view_layer = bpy.context.view_layer
    anim = target.animation_data
    saved = (anim.action, anim.action_slot, anim.use_nla) if anim is not None else None
    try:
        if anim is not None:
            anim.action, anim.use_nla = None, False
        for (name, key), value in switches.items():
            target.pose.bones[name][key] = value
        for name in kept_pose:
            target.pose.bones[name].matrix_basis = Matrix.Identity(4)
        view_layer.update()
        for f in range(frames):
            for j in rigid:
                loc = Vector(location[f]) if j == "Hips" else zero
                target.pose.bones[bone_map[j]].matrix_basis = Matrix.LocRotScale(
                    loc, Quaternion(baked.rotations[bone_map[j]][f]), None)
            for d, level in enumerate(levels):
                if d > 0 or first_needs_update:
                    view_layer.update()
                for j in level:
                    pb = target.pose.bones[bone_map[j]]
                    want = Matrix(goal[j][f].tolist()).to_4x4()
                    want.translation = Vector(hips[f]) if j == "Hips" else pb.matrix.translation
                    basis = target.convert_space(pose_bone=pb, matrix=want, from_space="POSE", to_space="LOCAL")
                    q = basis.to_quaternion()
                    loc = basis.translation if j == "Hips" else zero
                    pb.matrix_basis = Matrix.LocRotScale(loc, q, None)
                    quats[j][f] = tuple(q)
                    if j == "Hips":
                        location[f] = tuple(loc)
    finally:  # the rig as it was: the new action carries the result
        for (name, key), value in kept_props.items():
            target.pose.bones[name][key] = value
        for name, basis in kept_pose.items():
            target.pose.bones[name].matrix_basis = basis
        if anim is not None and saved is not None:
            anim.action = saved[0]
            if saved[0] is not None and saved[1] is not None:
                anim.action_slot = saved[1]
            anim.use_nla = saved[2]
    rotations = {bone_map[j]: baked.rotations[bone_map[j]] if j in rigid else make_continuous(qnormalize(quats[j]))
                 for j in joints}
    return Baked(rotations, location, baked.hips, free, baked.positions, baked.scale, baked.deltas, baked.hips_head,
                 switches)


# --- writing the action -------------------------------------------------------------------------------------------

def bake_action(target: bpy.types.Object, baked: Baked, action_name: str, frame_start: int = 1) -> bpy.types.Action:
    """Key `baked` into a new action on `target`; the previous active action keeps a fake user, NLA is untouched."""
    import bpy

    _check_not_tweaking(target)
    anim = target.animation_data or target.animation_data_create()
    if anim.action is not None:
        anim.action.use_fake_user = True
    action = bpy.data.actions.new(action_name)
    anim.action = action
    frames = frame_start + np.arange(baked.location.shape[0], dtype=np.float64)
    for name, quats in baked.rotations.items():
        _key_rotation(action, target, name, quats, frames)
    _key(action, target, f'pose.bones["{_esc(baked.hips)}"].location', baked.location, frames, baked.hips)
    for name in baked.identity:
        pb = target.pose.bones[name]
        _key_rotation(action, target, name, np.array([[1.0, 0.0, 0.0, 0.0]]), frames[:1])
        _key(action, target, f'pose.bones["{_esc(name)}"].location', np.zeros((1, 3)), frames[:1], pb.name)
    for (name, key), value in baked.switches.items():
        _key(action, target, f'pose.bones["{_esc(name)}"]["{_esc(key)}"]', np.array([[value]]), frames[:1], name)
    return action


def _esc(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', '\\"')


def _key_rotation(action: bpy.types.Action, target: bpy.types.Object, bone: str, quats: np.ndarray,
                  frames: np.ndarray) -> None:
    mode = target.pose.bones[bone].rotation_mode
    path = f'pose.bones["{_esc(bone)}"]'
    if mode == "QUATERNION":
        _key(action, target, path + ".rotation_quaternion", quats, frames, bone)
    elif mode == "AXIS_ANGLE":
        q = quats * np.where(quats[:, :1] < 0, -1.0, 1.0)
        angle = 2.0 * np.arccos(np.clip(q[:, 0], -1.0, 1.0))
        s = np.sqrt(np.maximum(1.0 - q[:, 0] ** 2, 1e-12))[:, None]
        axis = np.where(s > 1e-6, q[:, 1:] / s, [0.0, 1.0, 0.0])
        _key(action, target, path + ".rotation_axis_angle", np.column_stack([angle, axis]), frames, bone)
    else:
        _key(action, target, path + ".rotation_euler", quat_to_euler(quats, mode), frames, bone)


def _key(action: bpy.types.Action, target: bpy.types.Object, path: str, values: np.ndarray, frames: np.ndarray,
         group: str) -> None:
    """One F-curve per channel, all keys written at once."""
    for i in range(values.shape[1]):
        if hasattr(action, "fcurve_ensure_for_datablock"):  # Blender 4.4+
            fc = action.fcurve_ensure_for_datablock(target, path, index=i, group_name=group)
        else:
            fc = action.fcurves.find(path, index=i) or action.fcurves.new(path, index=i, action_group=group)
        fc.keyframe_points.add(len(frames))
        fc.keyframe_points.foreach_set("co", np.column_stack([frames, values[:, i]]).astype(np.float32).ravel())
        fc.update()


# --- entry points ---------------------------------------------------------------------------------------------------

def stored_bone_map(obj: bpy.types.Object) -> dict[str, str] | None:
    """The bone map saved on armature `obj` (by the panel, so it travels with the .blend), or None."""
    raw = obj.get(BONE_MAP_PROP) if obj is not None else None
    if not raw:
        return None
    try:
        data = json.loads(str(raw))
    except ValueError:
        return None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else None


def store_bone_map(obj: bpy.types.Object, bone_map: dict[str, str] | None) -> None:
    """Save (or with None, forget) the bone map on armature `obj`."""
    if bone_map is None:
        obj.pop(BONE_MAP_PROP, None)
    else:
        obj[BONE_MAP_PROP] = json.dumps({k: v for k, v in bone_map.items() if v}, ensure_ascii=False)


def preset_dir() -> Path:
    """Where bone-map presets live: $MIMIC_BONE_MAP_DIR, else Blender's user config folder mimic/bone_maps."""
    if os.environ.get(PRESET_DIR_ENV):
        return Path(os.environ[PRESET_DIR_ENV])
    import bpy

    return Path(bpy.utils.user_resource("CONFIG", path=os.path.join("mimic", "bone_maps"), create=True))


def rig_preset(spec: str) -> tuple[str, str]:
    """For batch `--rig PRESET`: the (.blend path, armature object name) a bone-map preset was saved from.
    `spec` is a preset name (in `preset_dir()`) or a path to a preset .json file."""
    path = Path(spec) if spec.endswith(".json") else preset_dir() / f"{spec}.json"
    try:
        rig = rigmap.preset_rig(path)
    except rigmap.RigMapError as exc:
        raise ValueError(f"--rig {spec!r}: {exc}") from exc
    if rig is None:
        raise ValueError(f"--rig {spec!r}: the preset {path} does not name a .blend and armature. Save the preset "
                         f"again from the Mimic panel with the character's .blend saved, or use FILE.blend:ARMATURE.")
    return rig


def overriding_constraints(obj: bpy.types.Object, bones: list[str]) -> list[str]:
    """'bone (constraint)' for each active constraint that overrides the rotation of one of `bones`, so that keys
    on that bone would not show (deform bones of a generated control rig, an IK chain left on IK...)."""
    out = []
    for name in bones:
        for con in obj.pose.bones[name].constraints:
            if con.type in OVERRIDING_CONSTRAINTS and con.enabled and con.influence > 0.5:
                out.append(f"{name} ({con.name})")
    return out


def resolve_target_map(target: bpy.types.Object, bone_map: dict[str, str] | None = None) -> dict[str, str]:
    """The bone map for `target`: the given one, else the one saved on it, else auto-detected (checked either way).
    RetargetError when it is incomplete or when constraints would override the keyed bones."""
    if target is None or target.type != "ARMATURE":
        raise RetargetError("The retarget target must be an armature. Select your character's armature.")
    if target.mode == "EDIT":
        raise RetargetError(f"{target.name} is in Edit Mode. Switch to Object or Pose Mode first.")
    bones = rigmap.armature_bones(target)
    try:
        resolved = rigmap.resolve_bone_map(bones, bone_map if bone_map is not None else stored_bone_map(target),
                                           target.name)
    except rigmap.RigMapError as exc:
        raise RetargetError(str(exc)) from exc
    overridden = overriding_constraints(target, list(resolved.values()))
    if overridden:
        raise RetargetError(f"{target.name}: constraints drive {', '.join(overridden[:4])}"
                            f"{' ...' if len(overridden) > 4 else ''}, so keys on these bones would not show. "
                            f"Disable or mute those constraints (switch IK chains to FK), or map bones that are "
                            f"not driven by constraints.")
    return resolved


def retarget_source(source: SourceMotion, target: bpy.types.Object, action_name: str,
                    bone_map: dict[str, str] | None = None, frame_start: int = 1,
                    source_map: dict[str, str] | None = None) -> bpy.types.Action:
    """Bake a SourceMotion onto armature `target` (see `retarget_motion`); source_map: canonical joint -> source
    joint, None = auto-detect."""
    bone_map = resolve_target_map(target, bone_map)
    try:
        source_map = rigmap.resolve_bone_map(source.bones, source_map, "The source motion")
    except rigmap.RigMapError as exc:
        raise RetargetError(str(exc)) from exc
    bones = rigmap.armature_bones(target)
    baked = solve(source, TargetRig.from_object(target), bone_map, source_map, rigmap.joint_bones(bone_map, bones))
    if needs_evaluation(target, list(bone_map.values())):
        baked = pose_through_constraints(target, baked, bone_map, rigmap.control_settings(bone_map, bones))
    return bake_action(target, baked, action_name, frame_start)


def retarget_motion(motion: MotionData, target: bpy.types.Object, action_name: str,
                    bone_map: dict[str, str] | None = None) -> bpy.types.Action:
    """Bake `motion` onto armature object `target` as a new action named `action_name`; returns the action.

    bone_map maps Mimic joint names (rigs/humanoid.json) to the target's bone names; None = the map saved on the
    target by the panel, else auto-detect. RetargetError says what to fix (e.g. which required bones are missing).
    """
    return retarget_source(source_from_motion(motion), target, action_name, bone_map)


def retarget_action(source: bpy.types.Object, target: bpy.types.Object, action_name: str,
                    bone_map: dict[str, str] | None = None, source_map: dict[str, str] | None = None
                    ) -> bpy.types.Action:
    """Retarget the action playing on armature `source` (an earlier import, a BVH...) onto `target`.
    source_map: the source's bone map, None = the one saved on it, else auto-detected."""
    anim = source.animation_data if source is not None else None
    if source is None or source.type != "ARMATURE" or anim is None or anim.action is None:
        raise RetargetError("The source must be an armature with an action. Import a motion or a BVH first.")
    if source == target:
        raise RetargetError("Source and target are the same armature. Pick another armature as the target.")
    start, end = (int(round(v)) for v in anim.action.frame_range)
    return retarget_source(source_from_armature(source, start, end), target, action_name, bone_map, start,
                           source_map if source_map is not None else stored_bone_map(source))


def retarget_bvh(path: str, target: bpy.types.Object, action_name: str,
                 bone_map: dict[str, str] | None = None) -> bpy.types.Action:
    """Retarget a BVH file onto `target` through Blender's bundled BVH importer (Y-up files, any scale)."""
    import bpy

    before = set(bpy.data.objects)
    actions = set(bpy.data.actions)
    view_layer = bpy.context.view_layer
    active, selected = view_layer.objects.active, [o for o in view_layer.objects if o.select_get()]
    bpy.ops.import_anim.bvh(filepath=str(path), update_scene_fps=False, update_scene_duration=False)
    imported = [o for o in bpy.data.objects if o not in before and o.type == "ARMATURE"]
    temporary = set(bpy.data.actions) - actions
    for act in temporary:
        act.name = "mimic_bvh_source"  # leave the clip's name free for the retargeted action
    try:
        if not imported:
            raise RetargetError(f"{path} could not be imported as BVH. Check the file.")
        return retarget_action(imported[0], target, action_name, bone_map)
    finally:
        for obj in imported:
            data = obj.data
            bpy.data.objects.remove(obj)
            bpy.data.armatures.remove(data)
        for act in temporary:
            bpy.data.actions.remove(act)
        for obj in selected:
            obj.select_set(True)
        view_layer.objects.active = active
