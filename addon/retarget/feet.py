"""Planted feet on the target (numpy only): after the retarget solve, each foot the source marks planted is held at
one place on the target's floor for the whole contact, whatever the target's proportions.

Per contact span of a foot the ankle (the foot bone's head) is held at its mean horizontal place over the span, at
the height that puts the foot's lowest point (heel, ball or toe tip, from the target's own foot) on the target's rest
floor; the corrections blend across the swings between contacts so nothing pops. An analytic two-bone IK (thigh,
shin) reaches that ankle with the knee in the plane of its current bend and the foot's world rotation kept; the hips
go down only where an ankle is out of reach. The result is a new `Baked` (world deltas, basis rotations, the hips'
travel), so both the vectorised path and constrained rigs (`pose_through_constraints`) key it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..common import legs as leg_ik
from ..common import rotations as quat
from .solve import FEET, Baked, TargetRig

LEGS = tuple((f"{side}UpperLeg", f"{side}LowerLeg", f"{side}Foot", f"{side}Toes") for side in ("Left", "Right"))


@dataclass(frozen=True)
class PlantSettings:
    """fade_s: corrections of two contacts fewer than 2·fade_s apart blend into each other across the swing, across
    longer gaps they fade out and in over fade_s. reach: the fraction of the leg's full length the ankle may be from
    the hip. max_drop: the most the hips go down, as a fraction of the target's leg length. drop_smooth_s: the drop
    is smoothed over this window (never below what the legs need)."""

    fade_s: float = 0.2
    reach: float = 0.9999
    max_drop: float = 0.2
    drop_smooth_s: float = 0.1


DEFAULT = PlantSettings()


def skip_reason(baked: Baked, contacts: np.ndarray | None) -> str | None:
    """Why the feet cannot be planted (one line for the user), or None when they can."""
    if contacts is None:
        return "The motion has no foot contacts, so the feet were not planted on the character."
    frames = baked.location.shape[0]
    if np.shape(contacts) != (frames, len(FEET)) or frames < 2:
        return "The motion's foot contacts do not match its frames, so the feet were not planted on the character."
    if any(j not in baked.deltas for leg in LEGS for j in leg[:3]):
        return "The legs are not mapped on both the motion and the character, so the feet were not planted."
    if not np.any(contacts):
        return "The motion has no planted feet, so nothing was planted on the character."
    return None


def slide_mm(ankles: np.ndarray, contacts: np.ndarray) -> float | None:
    """Mean horizontal ankle motion (mm/frame) between consecutive frames where the foot is planted in both;
    ankles (F, 2, 3) world metres, Z up."""
    both = contacts[1:] & contacts[:-1]
    step = np.linalg.norm(np.diff(ankles[..., :2], axis=0), axis=-1)
    return round(float(1000 * step[both].mean()), 3) if both.any() else None


def floor_height(rig: TargetRig, foot_bones: list[int]) -> float:
    """The target's rest floor (world Z, metres): the lowest head or tail of its foot bones and their children."""
    below = set(foot_bones)
    for b in range(len(rig.names)):
        if any(a in foot_bones for a in rig.ancestors(b)):
            below.add(b)
    idx = sorted(below)
    points = np.concatenate([rig.world_points(rig.heads[idx]), rig.world_points(rig.tails[idx])])
    return float(points[:, 2].min())


def _sole_below(baked: Baked, rig: TargetRig, geo: dict[str, int], leg: tuple[str, str, str, str],
                floor: float) -> np.ndarray:
    """(F,) metres from the ankle down to the foot's lowest point as posed: a heel straight below the ankle on the
    rest floor, the ball (toe joint, or the foot bone's tail) and the toe tip, turned with the foot and toes."""
    _, _, foot, toes = leg
    heads, tails = rig.world_points(rig.heads), rig.world_points(rig.tails)
    ankle_rest = heads[geo[foot]]
    turn = baked.deltas[foot]
    heel = quat.rotate(turn, np.array([0.0, 0.0, floor - ankle_rest[2]]))[:, 2]
    if toes in baked.deltas and toes in geo:
        ball = baked.positions[toes][:, 2] - baked.positions[foot][:, 2]
        tip = ball + quat.rotate(baked.deltas[toes], tails[geo[toes]] - heads[geo[toes]])[:, 2]
    else:
        ball = quat.rotate(turn, tails[geo[foot]] - ankle_rest)[:, 2]
        tip = ball
    return -np.minimum(np.minimum(heel, ball), tip)


def plant(baked: Baked, rig: TargetRig, bone_map: dict[str, str], joint_bones: dict[str, str],
          contacts: np.ndarray, fps: float, settings: PlantSettings = DEFAULT) -> tuple[Baked, dict[str, object]]:
    """`baked` with each planted foot (contacts (F, 2) bool, left and right) held on the target's floor, and what
    was done: the mean horizontal ankle slide on contact frames before and after (mm/frame), the floor (world Z,
    metres) and the most the hips went down (metres). bone_map / joint_bones as for `solve.solve`; call
    `skip_reason` first."""
    contacts = np.asarray(contacts, dtype=bool)
    names = {n: i for i, n in enumerate(rig.names)}
    geo = {j: names[joint_bones.get(j, b)] for j, b in bone_map.items() if j in baked.deltas}
    pos = {j: p.copy() for j, p in baked.positions.items()}
    floor = floor_height(rig, [geo[leg[2]] for leg in LEGS])
    heads = rig.world_points(rig.heads)
    legs = [(leg, np.linalg.norm(heads[geo[leg[1]]] - heads[geo[leg[0]]]),
             np.linalg.norm(heads[geo[leg[2]]] - heads[geo[leg[1]]])) for leg in LEGS]
    fade = max(1, int(round(settings.fade_s * fps)))
    ankles = np.stack([pos[leg[2]] for leg, _, _ in legs], axis=1)  # (F, 2, 3)
    targets = ankles.copy()
    for side, (leg, _, _) in enumerate(legs):
        spans = leg_ik.segments(contacts[:, side])
        below = _sole_below(baked, rig, geo, leg, floor)
        planted = ankles[:, side].copy()
        for start, end in spans:
            planted[start:end + 1, :2] = ankles[start:end + 1, side, :2].mean(axis=0)
            planted[start:end + 1, 2] = floor + np.median(below[start:end + 1])
        targets[:, side] += leg_ik.carry(planted - ankles[:, side], spans, fade)

    # The hips go down where an ankle cannot reach its target, smoothly and never less than needed.
    hips = np.stack([pos[leg[0]] for leg, _, _ in legs], axis=1)
    longest = settings.reach * np.array([l1 + l2 for _, l1, l2 in legs])
    drop = leg_ik.hips_drop(targets, hips, longest, 2, settings.max_drop * float(np.mean(longest)))
    half = max(0, int(round(settings.drop_smooth_s * fps)))
    drop = leg_ik.smooth_drop(drop, half)
    down = np.outer(drop, [0.0, 0.0, 1.0])
    for j in pos:
        pos[j] -= down

    deltas = dict(baked.deltas)
    body_left = heads[geo[LEGS[0][0]]] - heads[geo[LEGS[1][0]]]
    forward_rest = quat.unit(np.cross(body_left, [0.0, 0.0, 1.0]))  # the body's forward at rest, world
    children = _descendants(rig, bone_map, baked)
    for side, (leg, l1, l2) in enumerate(legs):
        upper, lower, foot, _ = leg
        h, k, a = pos[upper], pos[lower], pos[foot]
        rows = np.flatnonzero(np.linalg.norm(targets[:, side] - a, axis=-1) > 1e-9)
        if rows.size == 0:
            continue
        forward = quat.rotate(deltas[upper][rows], forward_rest)
        turn_up, turn_low, k_new, a_new = leg_ik.two_bone(h[rows], k[rows], a[rows], targets[rows, side], forward,
                                                    l1, l2, settings.reach * (l1 + l2))
        for joint, turn in ((upper, turn_up), (lower, turn_low)):
            deltas[joint] = deltas[joint].copy()
            deltas[joint][rows] = quat.normalize(quat.multiply(turn, deltas[joint][rows]))
        shift = a_new - a[rows]
        for j in children[foot]:
            pos[j][rows] += shift
        pos[lower][rows], pos[foot][rows] = k_new, a_new

    changed = {leg[i] for leg, _, _ in legs for i in range(3)}
    rotations = dict(baked.rotations)
    for j, parent in _mapped_parents(rig, bone_map, baked).items():
        if j in changed or parent in changed:
            rotations[bone_map[j]] = _basis(rig, names[bone_map[j]], deltas[j],
                                            None if parent is None else deltas[parent], baked.rotations[bone_map[j]])
    world_inv = np.linalg.inv(rig.world[:3, :3])
    hb = names[baked.hips]
    location = baked.location - (down @ world_inv.T) @ rig.rest[hb, :3, :3]
    hips_head = None if baked.hips_head is None else baked.hips_head - down
    after = np.stack([pos[leg[2]] for leg, _, _ in legs], axis=1)
    info = {"slide_before_mm": slide_mm(ankles, contacts), "slide_after_mm": slide_mm(after, contacts),
            "floor_m": floor, "hips_lowered_max_m": float(drop.max(initial=0.0))}
    return replace(baked, rotations=rotations, location=location, positions=pos, deltas=deltas,
                   hips_head=hips_head), info


def _mapped_parents(rig: TargetRig, bone_map: dict[str, str], baked: Baked) -> dict[str, str | None]:
    """Each solved joint's nearest mapped ancestor in the target's hierarchy (the one its basis is relative to)."""
    names = {n: i for i, n in enumerate(rig.names)}
    mapped = {names[bone_map[j]]: j for j in baked.deltas}
    return {j: next((mapped[a] for a in rig.ancestors(names[bone_map[j]]) if a in mapped), None)
            for j in baked.deltas}


def _descendants(rig: TargetRig, bone_map: dict[str, str], baked: Baked) -> dict[str, list[str]]:
    """Each solved joint's mapped descendants (the joints that move rigidly with it when nothing else turns)."""
    parents = _mapped_parents(rig, bone_map, baked)
    out: dict[str, list[str]] = {j: [] for j in parents}
    for j in parents:
        p = parents[j]
        while p is not None:
            out[p].append(j)
            p = parents[p]
    return out


def _basis(rig: TargetRig, bone: int, delta: np.ndarray, parent: np.ndarray | None, old: np.ndarray) -> np.ndarray:
    """(F, 4) basis rotation of target bone `bone` that turns it by world `delta` from its rest under a parent
    turned by `parent` (as `solve.solve` keys it), in the hemisphere of the `old` keys."""
    rest = rig.world_rest_rotations()[bone]
    rel = delta if parent is None else quat.multiply(quat.inverse(parent), delta)
    q = quat.normalize(quat.multiply(quat.multiply(quat.inverse(rest), rel), rest))
    return q * np.where(np.sum(q * old, axis=-1, keepdims=True) < 0, -1.0, 1.0)
