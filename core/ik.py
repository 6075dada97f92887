"""Inverse kinematics: 3D MediaPipe keypoints -> local joint rotations of the humanoid, twist included.

Every bone's world rotation comes from two observed vectors, an aim and a twist reference, matched to the same two
vectors in the rest pose: with orthonormal bases B = [aim, twist ⊥ aim, aim × twist] the bone's world rotation is
R = B_pose · B_restᵀ, and its local rotation is parent_worldᵀ · R. Which landmarks define each bone, where each
landmark sits on the skeleton and which bone lengths scale together are data (rigs/humanoid_ik.json); this module
only knows four solver kinds:

- basis: the aim/twist rule above. Where the twist vector nearly lines up with the aim (a straight elbow or knee
  for the bend-plane twists), the twist blends smoothly into the parent's frame carried along by the shortest swing.
- spine: the trunk between the hips and the shoulders. Forward lean cannot be told apart from pelvis tilt in the
  landmarks, so the pelvis takes it (its up axis follows the hip-to-shoulder line); the spine and chest share the
  remaining side bend equally (a swing S) and the chest's twist about its own axis (T): Spine = S½·T½,
  Chest = T^-½·S½·T. The trunk length is solved together with the bend so that the chain reaches the shoulders.
- neck: the head's own frame comes from its landmarks (basis); the neck aims from its joint at the head joint
  that the head landmarks imply, twisted by the ear line, so the head on the neck only nods and tilts.
- fixed: identity local rotation (toes: no landmark sees them).
A basis bone without a twist reference only swings from its parent's frame (the clavicles, aimed from their joint
at the shoulder landmark: shrugs). Points are landmarks, means of landmarks, or "@Joint" for a joint's position
from the bones solved before it.

Bone lengths are measured per clip (median over confident frames) and kept constant; the rest directions of the
skeleton are kept, only lengths scale (Skeleton.with_offsets).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from core import contacts
from core.filters import fill_gaps
from core.common.motionfile import Motion
from core.common.rotations import basis, make_continuous, smoothstep, unit
from core.scipy_rotations import from_wxyz, to_wxyz
from core.common import rigs
from core.common.errors import BadRigData
from core.common.skeleton import Skeleton, load_rig_skeleton

MIN_CONFIDENCE = 0.5
SCALE_LIMITS = (0.25, 4.0)  # a bone measured outside this range of the rig's length is a failed measurement


@dataclass(frozen=True)
class IkRig:
    """rigs/<name>.json parsed: landmarks on the skeleton (K = 33, MediaPipe order), scale groups, bone solvers.

    landmark_joint: (K,) joint index each landmark is attached to; landmark_offset: (K, 3) metres at default
    proportions in that joint's rest frame; landmark_scale: (K,) scale group name or "" (no offset).
    points: every landmark and derived point name -> landmark indices averaged. twist_blend: (lo, hi) radians,
    the angle between twist vector and aim over which the twist fades in; twist_confidence: (lo, hi) the landmark
    confidence over which it fades in.
    """

    name: str
    skeleton: Skeleton
    landmark_names: tuple[str, ...]
    landmark_joint: np.ndarray
    landmark_offset: np.ndarray
    landmark_scale: tuple[str, ...]
    points: dict[str, np.ndarray]
    scales: tuple[dict[str, Any], ...]
    bones: tuple[dict[str, Any], ...]
    twist_blend: tuple[float, float]
    twist_confidence: tuple[float, float]
    feet: dict[str, tuple[int, ...]]
    body_axis: tuple[tuple[int, ...], tuple[int, ...]]
    centre: np.ndarray

    def group_of(self, name: str) -> dict[str, Any]:
        return next(g for g in self.scales if g["name"] == name)

    def points_of_bone(self, joint: int) -> list[str]:
        """Names of the points that the bone of `joint` is solved from (empty for fixed bones)."""
        bone = next((b for b in self.bones if b["joint"] == self.skeleton.names[joint]), {})
        names = [*bone.get("aim", []), *bone.get("twist", []), *bone.get("across", [])]
        return names + [bone[k] for k in ("anchor", "top") if k in bone]


@lru_cache(maxsize=4)
def load_ik_rig(name: str = "humanoid_ik") -> IkRig:
    """Load IK definitions from rigs/<name>.json (landmark order from rigs/mediapipe_pose.json)."""
    try:
        return _load_ik_rig_unchecked(name)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise BadRigData(f"Mimic's rig data {rigs.RIGS_DIR / name}.json is malformed ({exc}).",
                         "Reinstall Mimic.") from exc


def _load_ik_rig_unchecked(name: str = "humanoid_ik") -> IkRig:
    """The parse itself; the caller turns malformed data into BadRigData."""
    data = rigs.load(name)
    names = rigs.landmark_names()
    skeleton = load_rig_skeleton(data["skeleton"])
    lms = data["landmarks"]
    joint = np.array([skeleton.index(lms[n]["joint"]) for n in names])
    offset = np.array([lms[n].get("offset", [0.0, 0.0, 0.0]) for n in names], dtype=np.float64)
    scale = tuple(lms[n].get("scale", "") for n in names)
    points = {n: np.array([k]) for k, n in enumerate(names)}
    points.update({p: np.array([names.index(n) for n in members]) for p, members in data["points"].items()})
    feet = {side: tuple(names.index(n) for n in lm) for side, lm in data["feet"].items()}
    axis = tuple(tuple(names.index(n) for n in data["body_axis"][end]) for end in ("lower", "upper"))
    lo, hi = np.radians(data["twist_blend_deg"])
    return IkRig(data["name"], skeleton, names, joint, offset, scale, points, tuple(data["scales"]),
                 tuple(data["bones"]), (float(lo), float(hi)), tuple(data["twist_confidence"]), feet, axis,
                 points[data["centre"]])  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------- the body model

def scaled_skeleton(rig: IkRig, scales: dict[str, float], base: Skeleton | None = None) -> Skeleton:
    """`base` (default: the rig's skeleton) with each scale group's offsets and end sites multiplied by its scale.

    The root's rest height follows the legs so that the rest pose keeps standing on the floor.
    """
    base = base or rig.skeleton
    offsets, ends = base.offsets.copy(), base.end_sites.copy()
    for group in rig.scales:
        s = scales.get(group["name"], 1.0)
        for j in group.get("offsets", []):
            offsets[base.index(j)] *= s
        for j in group.get("ends", []):
            ends[base.index(j)] *= s
    offsets[0] = base.offsets[0] * (_drop(base.with_offsets(offsets, ends)) / _drop(base))
    return base.with_offsets(offsets, ends)


def _drop(skeleton: Skeleton) -> float:
    """How far the lowest joint or end site hangs below the root in the rest pose, metres."""
    pos = skeleton.rest_positions() - skeleton.offsets[0]
    return float(-min(np.min(pos[:, 1]), np.min((pos + skeleton.end_sites)[:, 1])))


def scales_of(skeleton: Skeleton, rig: IkRig | None = None) -> dict[str, float]:
    """Each scale group's factor, read back from a skeleton made by `scaled_skeleton` (or one like it)."""
    rig = rig or load_ik_rig()
    out: dict[str, float] = {}
    for group in rig.scales:
        members = [(rig.skeleton.offsets, skeleton.offsets, j) for j in group.get("offsets", [])]
        members += [(rig.skeleton.end_sites, skeleton.end_sites, j) for j in group.get("ends", [])]
        for rest, actual, j in members:
            length = np.linalg.norm(rest[rig.skeleton.index(j)])
            if length > 0:
                out[group["name"]] = float(np.linalg.norm(actual[skeleton.index(j)]) / length)
                break
    return out


def _landmark_offsets(rig: IkRig, scales: dict[str, float]) -> np.ndarray:
    """(K, 3) landmark offsets in their joints' frames at the given scales, metres."""
    factor = np.array([scales.get(g, 1.0) if g else 1.0 for g in rig.landmark_scale])
    return rig.landmark_offset * factor[:, None]


def keypoints_from_pose(rotations: np.ndarray, root_positions: np.ndarray, skeleton: Skeleton | None = None,
                        rig: IkRig | None = None) -> np.ndarray:
    """The 33 landmarks (F, 33, 3) metres of a posed skeleton, exactly as the IK data places them.

    rotations: (F, J, 4) local w-x-y-z; root_positions: (F, 3) metres. Landmark offsets scale with the skeleton's
    proportions (`scales_of`). This is the IK's forward model: solve(keypoints_from_pose(...)) gives the pose back.
    """
    rig = rig or load_ik_rig()
    skeleton = skeleton or rig.skeleton
    rotations = np.asarray(rotations, dtype=np.float64)
    joints = skeleton.forward_kinematics(rotations, root_positions)
    world = skeleton.global_rotations(rotations)
    offsets = _landmark_offsets(rig, scales_of(skeleton, rig))
    frames, k = rotations.shape[0], len(rig.landmark_names)
    rot = from_wxyz(world[:, rig.landmark_joint].reshape(-1, 4))
    moved = rot.apply(np.tile(offsets, (frames, 1))).reshape(frames, k, 3)
    return joints[:, rig.landmark_joint] + moved


def _rest_points(rig: IkRig, skeleton: Skeleton, scales: dict[str, float]) -> np.ndarray:
    """(K, 3) landmark positions in the rest pose of `skeleton`, metres."""
    return skeleton.rest_positions()[rig.landmark_joint] + _landmark_offsets(rig, scales)


# ------------------------------------------------------------------------------------------- vector utilities

def _swing(v_from: np.ndarray, v_to: np.ndarray) -> Rotation:
    """Shortest rotations taking directions v_from (N, 3) to v_to (N, 3)."""
    a, b = unit(v_from), unit(v_to)
    axis = np.cross(a, b)
    sin, cos = np.linalg.norm(axis, axis=-1), np.sum(a * b, axis=-1)
    # Opposite directions: any axis perpendicular to a will do.
    perp = np.cross(a, np.where(np.abs(a[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]))
    axis = np.where((sin < 1e-9)[:, None], unit(perp), axis / np.maximum(sin, 1e-300)[:, None])
    return Rotation.from_rotvec(axis * np.arctan2(sin, cos)[:, None])


def _valid_rotation(r: Rotation, fallback: Rotation) -> Rotation:
    """r where it is finite, fallback elsewhere."""
    q = r.as_quat()
    bad = ~np.all(np.isfinite(q), axis=-1)
    if not np.any(bad):
        return r
    q[bad] = fallback.as_quat()[bad]
    return Rotation.from_quat(q)


def _from_bases(pose: np.ndarray, rest: np.ndarray) -> tuple[Rotation, np.ndarray]:
    """World rotations B_pose · B_restᵀ from (F, 3, 3) and (3, 3), and (F,) bool where they are defined (identity
    stands in elsewhere)."""
    m = pose @ rest.T
    finite = np.all(np.isfinite(m), axis=(1, 2))
    q = np.full((m.shape[0], 4), np.nan)
    if np.any(finite):
        q[finite] = Rotation.from_matrix(m[finite]).as_quat()
    return Rotation.from_quat(np.where(np.isfinite(q), q, [0.0, 0.0, 0.0, 1.0])), finite


def _basis_rotation(aim: np.ndarray, twist: np.ndarray, aim_rest: np.ndarray, twist_rest: np.ndarray,
                    parent: Rotation, blend: tuple[float, float], trust: np.ndarray | None = None) -> Rotation:
    """World rotations (F) mapping the rest (aim, twist) pair onto the observed one (F, 3) each.

    Where the twist vector lines up with the aim (angle below blend[0]) the result is the parent's frame swung
    onto the aim; between blend[0] and blend[1] it turns smoothly (smoothstep) into the full twist. trust (F,) 0..1
    scales the twist the same way (how far the landmarks that give it can be believed).
    """
    frames = aim.shape[0]
    carried = parent.apply(np.tile(aim_rest, (frames, 1)))
    lost = ~np.all(np.isfinite(aim), axis=-1) | (np.linalg.norm(np.nan_to_num(aim), axis=-1) < 1e-9)
    aim = np.where(lost[:, None], carried, aim)  # an unseen bone keeps its parent's frame
    full, ok = _from_bases(basis(aim, twist), basis(aim_rest, twist_rest))
    with np.errstate(invalid="ignore", divide="ignore"):
        sin = np.linalg.norm(np.cross(unit(aim), unit(twist)), axis=-1)
    lo, hi = np.sin(blend[0]), np.sin(blend[1])
    x = np.clip((np.nan_to_num(sin) - lo) / (hi - lo), 0.0, 1.0)
    weight = np.where(ok, smoothstep(x), 0.0) * (1.0 if trust is None else trust)
    rows = np.flatnonzero(weight < 1.0)  # usually few: only these need the fallback
    if rows.size == 0:
        return full
    fallback = _swing(carried[rows], aim[rows]) * parent[rows]
    rel = (fallback.inv() * full[rows]).as_rotvec()
    rel = np.where(np.isfinite(rel), rel, 0.0) * weight[rows, None]
    quat = full.as_quat()
    quat[rows] = (fallback * Rotation.from_rotvec(rel)).as_quat()
    return _valid_rotation(Rotation.from_quat(quat), parent)


# ------------------------------------------------------------------------------------------------ the solver

class _Solver:
    """One clip's solve: keypoints, scales and the world rotations found so far."""

    def __init__(self, rig: IkRig, base: Skeleton, keypoints: np.ndarray, confidence: np.ndarray,
                 confident: np.ndarray, symmetric: bool) -> None:
        self.rig, self.base, self.kp, self.symmetric = rig, base, keypoints, symmetric
        self.confidence, self.confident = confidence, confident
        self.frames = keypoints.shape[0]
        self.scales: dict[str, float] = {}
        self.world: dict[int, Rotation] = {}
        self.joint_conf: dict[int, np.ndarray] = {}
        self.root = np.zeros((self.frames, 3))

    # points and the model at the current scales
    def point(self, name: str) -> np.ndarray:
        """(F, 3) a landmark, a derived point, or "@Joint": that joint's position from the bones solved so far."""
        if name.startswith("@"):
            return self.position(self.base.index(name[1:]))
        return self.kp[:, self.rig.points[name]].mean(axis=1)

    def _landmarks(self, names: tuple[str, ...]) -> np.ndarray:
        found = [self.rig.points[n] for n in names if not n.startswith("@")]
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)

    def seen(self, *names: str) -> np.ndarray:
        """(F,) bool: every landmark behind these points is confidently seen."""
        return np.all(self.confident[:, self._landmarks(names)], axis=1)

    def conf(self, *names: str) -> np.ndarray:
        """(F,) the lowest confidence of the landmarks behind these points (1 where there are none)."""
        idx = self._landmarks(names)
        return np.min(self.confidence[:, idx], axis=1) if idx.size else np.ones(self.frames)

    def trust(self, *names: str) -> np.ndarray:
        """(F,) 0..1 how far a twist taken from these points is believed: a smoothstep over the rig's
        twist_confidence range of their lowest landmark confidence (unsure hands fall back to the arm's frame)."""
        lo, hi = self.rig.twist_confidence
        return smoothstep((self.conf(*names) - lo) / (hi - lo))

    @property
    def skeleton(self) -> Skeleton:
        return scaled_skeleton(self.rig, self.scales, self.base)

    def rest_point(self, name: str) -> np.ndarray:
        if name.startswith("@"):
            return self.skeleton.rest_positions()[self.base.index(name[1:])]
        rest = _rest_points(self.rig, self.skeleton, self.scales)
        return rest[self.rig.points[name]].mean(axis=0)

    def rest_vector(self, pair: list[str]) -> np.ndarray:
        return self.rest_point(pair[1]) - self.rest_point(pair[0])

    def vector(self, pair: list[str]) -> np.ndarray:
        return self.point(pair[1]) - self.point(pair[0])

    def solve_bones(self) -> None:
        """Every bone's world rotation, in the rig's order, by the solver its data names."""
        for bone in self.rig.bones:
            kind = bone["solver"]
            if kind == "basis":
                self.solve_basis(bone)
            elif kind == "spine":
                self.solve_spine(bone)
            elif kind == "neck":
                self.solve_neck(bone)
            elif kind == "fixed":
                j = self.base.index(bone["joint"])
                self.world[j] = self.parent_world(j)
            else:
                raise ValueError(f"{self.rig.name}: unknown solver {kind!r} for {bone['joint']}")

    def parent_world(self, j: int) -> Rotation:
        """World rotation of the nearest solved ancestor (identity above the root)."""
        p = int(self.rig.skeleton.parents[j])
        while p >= 0 and p not in self.world:
            p = int(self.rig.skeleton.parents[p])
        return self.world[p] if p >= 0 else Rotation.identity(self.frames)

    def position(self, j: int) -> np.ndarray:
        """(F, 3) world position of joint j by forward kinematics over the solved ancestors."""
        sk = self.skeleton
        chain = []
        while j > 0:
            chain.append(j)
            j = int(sk.parents[j])
        pos = self.root.copy()
        for c in reversed(chain):
            pos = pos + self.world[int(sk.parents[c])].apply(sk.offsets[c])
        return pos

    # scales
    def measure_distances(self) -> None:
        """Scale groups measured by a landmark distance: median over confident frames, left/right pooled."""
        rest = _rest_points(self.rig, self.base, {})
        ratios: dict[str, np.ndarray] = {}
        for group in self.rig.scales:
            if not isinstance(group["measure"], list):
                continue
            a, b = group["measure"]
            rest_len = np.linalg.norm(rest[self.rig.points[b]].mean(0) - rest[self.rig.points[a]].mean(0))
            obs = np.linalg.norm(self.point(b) - self.point(a), axis=-1)
            ratios[group["name"]] = (obs / rest_len)[self.seen(a, b)]
        for name, r in ratios.items():
            pair = self.rig.group_of(name).get("pair")
            if self.symmetric and pair in ratios:
                r = np.concatenate([r, ratios[pair]])
            self.scales[name] = _sane(float(np.median(r))) if r.size else 1.0

    # solvers
    def solve_basis(self, bone: dict[str, Any]) -> None:
        j = self.base.index(bone["joint"])
        aim, twist = bone["aim"], bone.get("twist", [])
        if twist:
            twist_obs = self.vector(twist)
            twist_rest = np.asarray(bone["twist_rest"]) if "twist_rest" in bone else self.rest_vector(twist)
        else:  # no twist reference: the parent's frame swung onto the aim
            twist_obs, twist_rest = np.full((self.frames, 3), np.nan), self.rest_vector(aim)
        self.world[j] = _basis_rotation(self.vector(aim), twist_obs, self.rest_vector(aim), twist_rest,
                                        self.parent_world(j), self.rig.twist_blend, self.trust(*twist))
        used = [*aim, *twist]
        if "anchor" in bone:
            used.append(bone["anchor"])
            if j == 0:
                self.root = self.anchored_position(j, bone["anchor"])
        self.joint_conf[j] = self.conf(*used)

    def anchored_position(self, j: int, anchor: str) -> np.ndarray:
        """(F, 3) the position of joint j implied by its anchor point and its solved world rotation."""
        rest_rel = self.rest_point(anchor) - self.skeleton.rest_positions()[j]
        return self.point(anchor) - self.world[j].apply(rest_rel)

    def solve_spine(self, bone: dict[str, Any]) -> None:
        """Spine and chest from the hip-to-shoulder chord and the shoulder line; measures the trunk scale."""
        sk = self.base
        chest, spine = sk.index(bone["joint"]), sk.index(bone["between"])
        hips = int(sk.parents[spine])
        up = unit(sk.offsets[spine])
        a0, b0 = float(np.linalg.norm(sk.offsets[spine])), float(np.linalg.norm(sk.offsets[chest]))
        c = float(np.linalg.norm(self.rest_point(bone["top"]) - self.skeleton.rest_positions()[chest]))
        hips_world = self.world[hips]
        d = hips_world.inv().apply(self.point(bone["top"]) - self.root)
        length = np.linalg.norm(d, axis=-1)
        axis = np.cross(up, d)
        phi = np.arctan2(np.linalg.norm(axis, axis=-1), d @ up)
        axis = unit(np.where((np.linalg.norm(axis, axis=-1) < 1e-12 * np.maximum(length, 1e-9))[:, None],
                              np.cross(up, _perpendicular(up)), axis))
        seen = self.seen(bone["top"], *bone["across"], *self.rig.points_of_bone(hips)) & np.isfinite(length)
        scale = (float(np.median(length[seen])) - c) / (a0 + b0) if np.any(seen) else 1.0
        # The bend depends on the trunk-to-clavicle proportion and the chord length on the bend: iterate both.
        for _ in range(10):
            gamma = _invert_chord_angle(phi, scale * a0, scale * b0, c)
            big_a = np.stack([b0 * np.sin(gamma / 2), a0 + b0 * np.cos(gamma / 2)], axis=-1)
            big_c = c * np.stack([np.sin(gamma), np.cos(gamma)], axis=-1)
            aa, ac, cc = np.sum(big_a ** 2, -1), np.sum(big_a * big_c, -1), np.sum(big_c ** 2, -1)
            per_frame = (np.sqrt(np.maximum(ac ** 2 - aa * (cc - length ** 2), 0.0)) - ac) / aa
            ok = seen & np.isfinite(per_frame)
            if not np.any(ok):
                break
            previous, scale = scale, float(np.median(per_frame[ok]))
            if abs(scale - previous) < 1e-9:
                break
        scale = _sane(scale)
        self.scales[self._group_measured_by("spine")] = scale
        gamma = _invert_chord_angle(phi, scale * a0, scale * b0, c)
        swing = np.nan_to_num(axis * gamma[:, None])
        across_rest = unit(self.rest_vector(bone["across"]))
        across = hips_world.inv().apply(self.vector(bone["across"]))
        bent_up = Rotation.from_rotvec(swing).apply(up)
        base = Rotation.from_rotvec(swing).apply(across_rest)
        across = across - np.sum(across * bent_up, -1, keepdims=True) * bent_up
        tau = np.arctan2(np.sum(np.cross(base, across) * bent_up, -1), np.sum(base * across, -1))
        tau = np.nan_to_num(tau)
        half_swing, half_twist = Rotation.from_rotvec(swing / 2), Rotation.from_rotvec(np.outer(tau / 2, up))
        self.world[spine] = hips_world * half_swing * half_twist
        self.world[chest] = hips_world * Rotation.from_rotvec(swing) * Rotation.from_rotvec(np.outer(tau, up))
        conf = np.minimum(self.joint_conf[hips], self.conf(bone["top"], *bone["across"]))
        self.joint_conf[spine] = self.joint_conf[chest] = conf

    def solve_neck(self, bone: dict[str, Any]) -> None:
        """Neck aimed at the head joint implied by the head landmarks; measures the neck length."""
        sk = self.base
        neck, head = sk.index(bone["joint"]), sk.index(bone["head"])
        head_bone = next(b for b in self.rig.bones if b["joint"] == bone["head"])
        head_pos = self.anchored_position(head, head_bone["anchor"])
        aim = head_pos - self.position(neck)
        seen = self.seen(*self.rig.points_of_bone(head), *self.rig.points_of_bone(int(sk.parents[neck])))
        length = np.linalg.norm(aim, axis=-1)[seen & np.isfinite(aim).all(-1)]
        rest_len = float(np.linalg.norm(sk.offsets[head]))
        self.scales[self._group_measured_by("neck")] = _sane(float(np.median(length)) / rest_len) if length.size else 1.0
        twist = bone["twist"]
        self.world[neck] = _basis_rotation(aim, self.vector(twist), sk.offsets[head], self.rest_vector(twist),
                                           self.parent_world(neck), self.rig.twist_blend, self.trust(*twist))
        self.joint_conf[neck] = np.minimum(self.joint_conf[head], self.conf(*twist))

    def _group_measured_by(self, kind: str) -> str:
        return next(g["name"] for g in self.rig.scales if g["measure"] == kind)


def _sane(scale: float) -> float:
    """A measured scale, or 1 (the rig's proportions) where the measurement failed."""
    return scale if np.isfinite(scale) and SCALE_LIMITS[0] <= scale <= SCALE_LIMITS[1] else 1.0


def _perpendicular(v: np.ndarray) -> np.ndarray:
    """A unit vector perpendicular to the unit vector v (3,)."""
    other = np.array([1.0, 0.0, 0.0]) if abs(v[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    return unit(np.cross(v, other))


def _invert_chord_angle(phi: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """Bend angles γ (F,) of a chain a·up, b·S(γ/2)·up, c·S(γ)·up whose chord leans phi (F,) radians from up.

    The chord angle grows monotonically with γ over the range of a human trunk; a dense table inverts it.
    """
    gamma = np.linspace(0.0, np.radians(170.0), 20001)
    chord = np.arctan2(b * np.sin(gamma / 2) + c * np.sin(gamma), a + b * np.cos(gamma / 2) + c * np.cos(gamma))
    chord = np.maximum.accumulate(chord)
    return np.interp(np.nan_to_num(phi), chord, gamma)


def solve(keypoints: np.ndarray, confidence: np.ndarray, fps: float, skeleton: Skeleton | None = None, *,
          rig: IkRig | None = None, symmetric: bool = True, ground: bool = True,
          min_confidence: float = MIN_CONFIDENCE) -> Motion:
    """3D keypoints -> Motion with per-clip bone lengths and local rotations (twist included).

    keypoints: (F, 33, 3) metres, Mimic world axes, root trajectory included; NaN where unknown.
    confidence: (F, 33) 0..1; frames below min_confidence do not count when measuring bone lengths.
    skeleton: the hierarchy and rest directions to solve for (default rigs/humanoid.json); lengths are re-measured.
    symmetric: left and right limbs share one length. ground: level a tilted camera (core.contacts.level_rotation),
    then move the clip so that the feet stand on Y = 0 and the first frame's hips sit above the origin
    (core.contacts.ground_offset); meta["ik"] records both.
    Returns rotations (F, J, 4) w-x-y-z continuous over time, root_positions (F, 3), confidence (F, J),
    keypoints_3d (the keypoints as solved, after grounding), contacts (F, 2); meta holds the scales and the offset.
    """
    rig = rig or load_ik_rig()
    base = skeleton or rig.skeleton
    kp = np.asarray(keypoints, dtype=np.float64)
    conf = np.nan_to_num(np.asarray(confidence, dtype=np.float64))
    frames = kp.shape[0]
    finite = np.all(np.isfinite(kp), axis=-1)
    kp, _ = fill_gaps(kp, finite, fps, max_gap_s=(frames + 1) / fps)
    confident = finite & (conf >= min_confidence)
    conf = np.where(finite, conf, 0.0)

    solver = _Solver(rig, base, kp, conf, confident, symmetric)
    solver.measure_distances()
    offset, level = np.zeros(3), Rotation.identity()
    if ground:
        level = contacts.level_rotation(kp, confident, *rig.body_axis)
        kp = level.apply(kp.reshape(-1, 3)).reshape(kp.shape)
        offset = contacts.ground_offset(kp, confident, fps, rig.feet, rig.centre, _sole_height(rig, solver))
        solver.kp = kp = kp + offset
    solver.solve_bones()

    sk = solver.skeleton
    rotations = np.empty((frames, sk.num_joints, 4))
    joint_conf = np.zeros((frames, sk.num_joints))
    for j, p in enumerate(sk.parents):
        world = solver.world[j]
        parent = solver.world[int(p)] if p >= 0 else Rotation.identity(frames)
        rotations[:, j] = to_wxyz(parent.inv() * world)
        joint_conf[:, j] = solver.joint_conf.get(j, joint_conf[:, int(p)] if p >= 0 else 0.0)
    rotations = make_continuous(rotations)
    root = np.nan_to_num(solver.root)
    sole = _sole_height(rig, solver)
    floor = 0.0 if ground else contacts.floor_height(kp, confident, fps, rig.feet, sole)
    probability = contacts.contact_probability(kp, fps, rig.feet, floor=floor if np.isfinite(floor) else 0.0,
                                               sole_height=sole)
    feet = contacts.foot_contacts(kp, fps, rig.feet, probability=probability)
    motion = Motion(skeleton=sk, fps=float(fps), rotations=rotations, root_positions=root, confidence=joint_conf,
                    keypoints_3d=kp, contacts=feet, contact_probability=probability,
                    floor={"height_m": float(floor), "up": [0.0, 1.0, 0.0]} if np.isfinite(floor) else None)
    motion.meta.update(ik={"rig": rig.name, "scales": dict(solver.scales), "symmetric": symmetric,
                           "level_wxyz": to_wxyz(level).tolist(), "ground_offset": offset.tolist()})
    return motion


def _sole_height(rig: IkRig, solver: _Solver) -> float:
    """Height of the foot landmarks above the floor in the rest pose at the clip's proportions, metres."""
    rest = _rest_points(rig, solver.skeleton, solver.scales)
    idx = np.array([k for side in rig.feet.values() for k in side])
    return float(np.min(rest[idx, 1]))
