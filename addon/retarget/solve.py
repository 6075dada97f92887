"""The retargeting maths on plain arrays (no bpy, no mathutils): a source motion and a target's rest pose in,
per-bone basis rotations and the hips' travel out.

Each mapped target bone gets the source joint's world rotation relative to its rest, applied after a fixed rest
offset that turns the target's rest bone onto the source's rest direction (so A-pose, T-pose, any roll and any bone
axis convention give the same limb directions; no per-rig cases). Bones between mapped ones keep their rest relation
(they follow rigidly). The hips travel by the source root motion scaled by the ratio of leg lengths, corrected per
frame so that the supporting foot is as high above the target's rest floor as the source's is (scaled); the
supporting foot is the one the motion's contacts mark planted, else the lower one. Finger joints (rigs/hand.json
below each hand) are ordinary joints here wherever both the source and the bone map have them, so fingers that rest
curled (Rigify) are straight for a zero rotation. Quaternions are w-x-y-z.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import rigmap
from ..common import Motion, axes, layer
from ..common import rotations as quat

FOOT_BLEND_M = 0.02  # how sharply the supporting foot is chosen when both feet are near the floor (source metres)
FEET = ("LeftFoot", "RightFoot")  # in the order of a motion's contacts columns


@dataclass
class SourceMotion:
    """A motion to retarget, in Blender world axes (Z up, metres). names/parents: J joints, parents first;
    rest: (J, 3) rest head positions; tips: (J, 3) where each joint's bone points at rest (its end site / tail);
    rotations: (F, J, 4) world rotation of each joint relative to its rest, w-x-y-z; positions: (F, J, 3);
    contacts: (F, 2) bool, left and right foot planted, or None when the motion does not say."""

    names: list[str]
    parents: np.ndarray
    rest: np.ndarray
    tips: np.ndarray
    rotations: np.ndarray
    positions: np.ndarray
    fps: float
    contacts: np.ndarray | None = None

    @property
    def bones(self) -> dict[str, str | None]:
        return {n: (self.names[p] if p >= 0 else None) for n, p in zip(self.names, self.parents)}


def source_from_motion(motion: Motion) -> SourceMotion:
    """A Mimic motion (Y up, T-pose rest with world-aligned joint frames, local rotations) in Blender world space;
    a motion with hands has both hands' finger joints after the body's (core/common/hands.py)."""
    skeleton, local = layer("hands").motion_with_fingers(motion)
    glob = skeleton.global_rotations(local)
    pos = skeleton.forward_kinematics(local, motion.root_positions)
    rest = skeleton.rest_positions()
    tips = rest + skeleton.end_sites
    turn = axes.MIMIC_TO_BLENDER_QUAT
    contacts = None if motion.contacts is None else np.asarray(motion.contacts, dtype=bool)
    return SourceMotion(
        names=list(skeleton.names), parents=np.asarray(skeleton.parents), rest=quat.rotate(turn, rest),
        tips=quat.rotate(turn, tips), rotations=quat.multiply(quat.multiply(turn, glob), quat.inverse(turn)),
        positions=quat.rotate(turn, pos), fps=float(motion.fps), contacts=contacts)


def orthonormal(m: np.ndarray) -> np.ndarray:
    """Strip scale from (..., 3, 3) matrices (columns normalised)."""
    return m / np.linalg.norm(m, axis=-2, keepdims=True)


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

    @property
    def bones(self) -> dict[str, str | None]:
        return {n: (self.names[p] if p >= 0 else None) for n, p in zip(self.names, self.parents)}

    def world_points(self, p: np.ndarray) -> np.ndarray:
        """Armature-space points (..., 3) -> world space."""
        return p @ self.world[:3, :3].T + self.world[:3, 3]

    def world_rest_rotations(self) -> np.ndarray:
        """(B, 4) each bone's rest orientation in world space."""
        return quat.from_matrix(orthonormal(self.world[:3, :3] @ self.rest[:, :3, :3]))

    def ancestors(self, b: int) -> list[int]:
        """Bone indices above bone b, nearest first."""
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


def body_frame(points: dict[str, np.ndarray]) -> np.ndarray:
    """3x3 world rotation whose columns are the body's left, up and forward axes, from rest joint positions."""
    left = points["LeftUpperLeg"] - points["RightUpperLeg"]
    if "LeftUpperArm" in points and "RightUpperArm" in points:
        left = left + points["LeftUpperArm"] - points["RightUpperArm"]
    up = points["Head"] - points["Hips"]
    up = up / np.linalg.norm(up)
    left = left - up * np.dot(left, up)
    left = left / np.linalg.norm(left)
    return np.stack([left, up, np.cross(left, up)], axis=1)


def leg_length(points: dict[str, np.ndarray]) -> float:
    """Mean hip-to-ankle length of the two legs (metres) from rest joint positions."""
    legs = [np.linalg.norm(points[f"{s}LowerLeg"] - points[f"{s}UpperLeg"]) +
            np.linalg.norm(points[f"{s}Foot"] - points[f"{s}LowerLeg"]) for s in ("Left", "Right")]
    return float(np.mean(legs))


def support_weights(heights: np.ndarray, contacts: np.ndarray | None, scale: float) -> np.ndarray:
    """How much each foot carries the body, (F, 2) from source foot heights (F, 2) (target metres) and contacts
    (F, 2) bool: the one planted foot where the contacts mark exactly one, else softly the lower foot."""
    weight = np.exp(-(heights - heights.min(axis=1, keepdims=True)) / (scale * FOOT_BLEND_M))
    if contacts is not None:
        one = np.count_nonzero(contacts, axis=1) == 1
        weight[one] = contacts[one]
    return weight


def solve(source: SourceMotion, rig: TargetRig, bone_map: dict[str, str],
          source_map: dict[str, str], joint_bones: dict[str, str] | None = None) -> Baked:
    """The retargeting maths (numpy only). bone_map / source_map: canonical joint -> target bone / source joint;
    joint_bones: canonical joint -> the bone whose rest head and tail mark the joint (default: the mapped bone)."""
    human = rigmap.load_humanoid()
    joints = [j for j in human.joints if j in bone_map and j in source_map]
    src_idx = {j: source.names.index(source_map[j]) for j in joints}
    tgt_idx = {j: rig.names.index(bone_map[j]) for j in joints}
    geo_idx = {j: rig.names.index((joint_bones or bone_map).get(j, bone_map[j])) for j in joints}
    heads_w = rig.world_points(rig.heads)
    tails_w = rig.world_points(rig.tails)
    rest_rot = rig.world_rest_rotations()
    t_pts = {j: heads_w[geo_idx[j]] for j in joints}
    s_pts = {j: source.rest[src_idx[j]] for j in joints}

    body = quat.from_matrix(body_frame(s_pts) @ body_frame(t_pts).T)
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
            offset[j] = quat.multiply(quat.between(quat.rotate(body, d_t), d_s), body)

    glob = {j: source.rotations[:, src_idx[j]] for j in joints}
    mapped_bone = {tgt_idx[j]: j for j in joints}
    anc_joint: dict[str, str | None] = {}
    for j in joints:
        anc_joint[j] = next((mapped_bone[a] for a in rig.ancestors(tgt_idx[j]) if a in mapped_bone), None)

    rotations: dict[str, np.ndarray] = {}
    deltas: dict[str, np.ndarray] = {}
    for j in joints:
        r_b = rest_rot[tgt_idx[j]]
        deltas[j] = world_delta = quat.multiply(glob[j], offset[j])  # G_j * O_j
        k = anc_joint[j]
        rel = world_delta if k is None else quat.multiply(quat.inverse(quat.multiply(glob[k], offset[k])), world_delta)
        rotations[bone_map[j]] = quat.make_continuous(
            quat.normalize(quat.multiply(quat.multiply(quat.inverse(r_b), rel), r_b)))

    # Root motion: scaled by leg lengths, then lifted so the supporting foot stands as the source's does.
    scale = leg_length(t_pts) / leg_length(s_pts)
    root = "Hips"
    hips_src = source.positions[:, src_idx[root]]
    hips = t_pts[root] + scale * (hips_src - s_pts[root])
    positions = forward(joints, anc_joint, glob, offset, t_pts, hips)
    feet = [f for f in FEET if f in positions]
    src_h = np.stack([scale * (source.positions[:, src_idx[f], 2] - s_pts[f][2]) for f in feet], axis=1)
    tgt_h = np.stack([positions[f][:, 2] - t_pts[f][2] for f in feet], axis=1)
    weight = support_weights(src_h, source.contacts if len(feet) == len(FEET) else None, scale)
    lift = np.sum(weight * (src_h - tgt_h), axis=1) / np.sum(weight, axis=1)
    hips[:, 2] += lift
    for j in positions:
        positions[j][:, 2] += lift

    hb = tgt_idx[root]
    head = hips + quat.rotate(deltas[root], heads_w[hb] - t_pts[root])  # the hips bone's head, where not the joint
    local = (head - heads_w[hb]) @ np.linalg.inv(rig.world[:3, :3]).T  # armature-space displacement
    location = local @ rig.rest[hb, :3, :3]  # into the hips bone's rest frame: R^T d for each frame
    mapped_set = set(tgt_idx.values())
    chain = {a for b in mapped_set for a in rig.ancestors(b)} - mapped_set
    return Baked(rotations, location, bone_map[root], [rig.names[b] for b in sorted(chain)], positions, scale,
                 deltas, head)


def forward(joints: list[str], anc: dict[str, str | None], glob: dict[str, np.ndarray],
            offset: dict[str, np.ndarray], rest: dict[str, np.ndarray], hips: np.ndarray) -> dict[str, np.ndarray]:
    """World head positions (F, 3) of the mapped joints: each moves rigidly with its nearest mapped ancestor."""
    out: dict[str, np.ndarray] = {}
    for j in joints:  # canonical order: ancestors first
        k = anc[j]
        if k is None:
            out[j] = hips.copy()
        else:
            out[j] = out[k] + quat.rotate(quat.multiply(glob[k], offset[k]), rest[j] - rest[k])
    return out
