"""Foot locking after the solve: planted feet stay put (auto), stand on the floor (grounding), or are left alone (off).

Per contact segment of each foot (auto) the foot turns about the sole point on the ground, the heel from heel strike
until the toe is lower (toe off), and that point is held still while the ankle turns about it; where the toe takes
over it is held where it then is, and the whole contact is centred on the ankle's median place. (Holding the ankle
instead slid a rolling foot's heel and toe: on our rendered set, foot skate 3.6 -> 2.4 mm/frame with the pivot.)
In grounding the ankle stays where it is; in both the lowest foot landmark (heel or toe, rigs/humanoid_ik.json)
sits on the floor while planted and never below it. The corrections carry smoothly across the swings between
contacts. In auto the planted foot's heading (where its toes point, seen from above) is held at its median too, so
that the toes stay put. An analytic two-bone IK per leg (UpperLeg, LowerLeg) then moves the ankle onto its target,
the knee staying in the plane of its current bend (the pole) and the foot keeping its world orientation but for that
heading; the hips go down only where a target is out of reach.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.common import legs as leg_ik
from core.common import rotations as quat
from core.common.motionfile import Motion
from core.filters import hysteresis

MODES = ("auto", "off", "grounding")
DEFAULT_MODE = "auto"


@dataclass(frozen=True)
class FootLockSettings:
    """legs: per foot, in the contacts' order (left, right), the upper leg, lower leg and foot joints.
    fade_s: the corrections of two contacts fewer than 2·fade_s apart blend into each other across the swing
    between them; across longer gaps they fade out and in over fade_s. drop_smooth_s: the hips' drop is smoothed
    over this window (never below what the legs need). max_turn_deg: the most a planted foot's heading is turned
    to hold it (auto). reach: the fraction of the
    leg's full length the ankle may be from the hip (1 = a straight knee). max_drop_m: the most the hips may go
    down to let an ankle reach its target, metres. min_confidence: a foot counts as seen on a frame when its lower
    leg's and foot's confidence reach this; contacts count only where the foot is seen, and nothing is done when
    the feet are seen on fewer than min_seen_share of the frames (a clip from the waist up). pivot: a planted foot
    turns about its heel or toe, whichever is on the ground (auto), rather than about a held ankle; the toe takes over
    once it is pivot_margin_m lower than the heel, and the heel back once it is that much lower (a flat foot's
    noise does not rock it)."""

    legs: tuple[tuple[str, str, str], ...] = (("LeftUpperLeg", "LeftLowerLeg", "LeftFoot"),
                                              ("RightUpperLeg", "RightLowerLeg", "RightFoot"))
    fade_s: float = 0.5
    max_turn_deg: float = 45.0
    drop_smooth_s: float = 0.1
    reach: float = 0.9999
    max_drop_m: float = 0.15
    min_confidence: float = 0.5
    min_seen_share: float = 0.5
    pivot: bool = True
    pivot_margin_m: float = 0.01


DEFAULT = FootLockSettings()


def foot_lock(motion: Motion, mode: str = DEFAULT_MODE, settings: FootLockSettings = DEFAULT) -> Motion:
    """`motion` with its planted feet locked (auto), grounded (grounding) or unchanged (off).

    Needs motion.contacts (F, 2) bool; the floor is motion.floor["height_m"] (Y up, metres). Only the legs' and
    feet's local rotations and the root's height change. meta["foot_lock"]: the mode, the mean horizontal ankle
    slide on contact frames before and after (mm/frame; with the pivot the ankle turns about the held heel or toe, so
    some remains by design), the frames and most metres the hips went down.
    """
    if mode not in MODES:
        raise ValueError(f"foot lock mode {mode!r} is not one of {', '.join(MODES)}")
    sk, contacts = motion.skeleton, motion.contacts
    info: dict[str, object] = {"mode": mode}
    has_legs = {n for leg in settings.legs for n in leg} <= set(sk.names)
    skipped = "no contacts" if contacts is None else "no legs" if not has_legs else \
        "too short" if motion.num_frames < 2 else None
    if mode == "off" or skipped:
        return _with_meta(motion, info if mode == "off" else {**info, "skipped": skipped})
    floor = (motion.floor or {}).get("height_m")
    if floor is None or not np.isfinite(floor):
        if mode == "grounding":
            return _with_meta(motion, {**info, "skipped": "no floor"})
        floor = None
    legs = np.array([[sk.index(n) for n in leg] for leg in settings.legs])
    seen = _feet_seen(motion, legs, settings.min_confidence)
    if seen.mean() < settings.min_seen_share:
        return _with_meta(motion, {**info, "skipped": "feet not in view"})
    pos = sk.forward_kinematics(motion.rotations, motion.root_positions)
    ankles = pos[:, legs[:, 2]]
    contacts = np.asarray(contacts, dtype=bool)[:, :len(legs)] & seen
    soles = _soles(motion, len(legs))
    below = ankles[..., 1] - soles[..., 1].min(axis=2)
    glob = sk.global_rotations(motion.rotations)
    fade = max(1, int(round(settings.fade_s * motion.fps)))
    turns = _heading_turns(glob[:, legs[:, 2]], contacts, fade, np.radians(settings.max_turn_deg)) \
        if mode == "auto" else np.zeros(contacts.shape)
    pivots = soles if settings.pivot and mode == "auto" else None
    targets = _targets(ankles, below, contacts, motion.fps, mode, floor, _sole_height(motion), settings, pivots,
                       turns)
    smooth = max(0, int(round(settings.drop_smooth_s * motion.fps)))
    rotations, root, drop = _leg_ik(motion, legs, targets, turns, settings.reach, settings.max_drop_m, smooth)
    out = motion.with_channels(rotations=rotations, root_positions=root)
    after = sk.forward_kinematics(rotations, root)[:, legs[:, 2]]
    info.update(slide_before_mm=_slide_mm(ankles, contacts), slide_after_mm=_slide_mm(after, contacts),
                hips_lowered_frames=int((drop > 1e-6).sum()), hips_lowered_max_m=float(drop.max(initial=0.0)))
    return _with_meta(out, info)


def _feet_seen(motion: Motion, legs: np.ndarray, min_confidence: float) -> np.ndarray:
    """(F, 2) bool: each foot's lower leg and foot were seen (confidence), True everywhere without confidences."""
    if motion.confidence is None:
        return np.ones((motion.num_frames, len(legs)), dtype=bool)
    conf = np.nan_to_num(np.asarray(motion.confidence, dtype=np.float64))
    return np.all(conf[:, legs[:, 1:]] >= min_confidence, axis=-1)


def _with_meta(motion: Motion, info: dict[str, object]) -> Motion:
    return motion.with_channels(meta={**motion.meta, "foot_lock": info})


def _slide_mm(ankles: np.ndarray, contacts: np.ndarray) -> float | None:
    """Mean horizontal ankle motion (mm/frame) between consecutive frames where the foot is planted in both."""
    both = contacts[1:] & contacts[:-1]
    step = np.linalg.norm(np.diff(ankles[..., [0, 2]], axis=0), axis=-1)
    return round(float(1000 * step[both].mean()), 3) if both.any() else None


def _soles(motion: Motion, n_legs: int) -> np.ndarray:
    """(F, n_legs, 2, 3) each foot's sole landmarks (heel, toe; rigs/humanoid_ik.json), metres; the leg IK keeps the
    foot's world orientation, so their place relative to the ankle does not change but for the heading turn."""
    from core.ik import keypoints_from_pose, load_ik_rig

    rig = load_ik_rig()
    landmarks = keypoints_from_pose(motion.rotations, motion.root_positions, motion.skeleton, rig)
    return np.stack([landmarks[:, list(side)] for side in list(rig.feet.values())[:n_legs]], axis=1)


def _sole_height(motion: Motion) -> float:
    """How far the lowest foot landmark sits above the floor in the rest pose, metres (the rest stands on Y = 0,
    as core.ik.scaled_skeleton makes it): a planted foot's lowest landmark stands this high, as core.ik grounds it."""
    from core.ik import keypoints_from_pose, load_ik_rig

    sk, rig = motion.skeleton, load_ik_rig()
    rest = keypoints_from_pose(quat.identity(1, sk.num_joints), sk.offsets[:1], sk, rig)[0]
    feet = [k for side in rig.feet.values() for k in side]
    return float(rest[feet, 1].min())


def _targets(ankles: np.ndarray, below: np.ndarray, contacts: np.ndarray, fps: float, mode: str,
             floor: float | None, sole: float, settings: FootLockSettings, soles: np.ndarray | None = None,
             turns: np.ndarray | None = None) -> np.ndarray:
    """(F, n_legs, 3) ankle targets, metres: locked (auto) and grounded while planted, the corrections carried
    smoothly across the swings between contacts (`core.common.legs.carry`), and never with the foot below the floor.
    With soles (F, n_legs, 2, 3) heel and toe, a planted foot turns about whichever is lower (heel strike, toe off)
    and that point is held still, not the ankle; turns (F, n_legs): the heading turn the IK will add."""
    out = ankles.copy()
    fade = max(1, int(round(settings.fade_s * fps)))
    for leg in range(ankles.shape[1]):
        ankle, segments = ankles[:, leg], leg_ik.segments(contacts[:, leg])
        planted = ankle.copy()
        for start, end in segments:
            if mode == "auto" and soles is not None:
                planted[start:end + 1] = _pivoted(ankle[start:end + 1], soles[start:end + 1, leg],
                                                  np.zeros(end + 1 - start) if turns is None
                                                  else turns[start:end + 1, leg], settings.pivot_margin_m)
            elif mode == "auto":
                planted[start:end + 1] = np.median(ankle[start:end + 1], axis=0)
            if floor is not None:
                planted[start:end + 1, 1] = floor + sole + below[start:end + 1, leg]
        target = ankle + leg_ik.carry(planted - ankle, segments, fade)
        if floor is not None:
            target[:, 1] = np.maximum(target[:, 1], floor + sole + below[:, leg])
        out[:, leg] = target
    return out


def _pivoted(ankle: np.ndarray, soles: np.ndarray, turns: np.ndarray, margin: float) -> np.ndarray:
    """(n, 3) ankle targets over one contact: the foot turns about its sole point on the ground, the heel until the
    toe is lower by `margin` metres and back when the heel is (soles (n, 2, 3) heel, toe), and that point is held
    still; when the other takes over it is held where it then is, so nothing jumps. The ankle is placed from the
    point as the foot is turned (turns (n,) radians about the vertical, which the IK adds); the whole contact is
    centred on the ankle's median place and height, as a plain lock would hold it."""
    toe = hysteresis(soles[:, 0, 1] - soles[:, 1, 1], margin, -margin).astype(int)
    lever = quat.rotate(_about_y(turns), ankle - soles[np.arange(len(soles)), toe])  # point -> ankle, as turned
    out = np.empty_like(ankle)
    switches = np.flatnonzero(np.diff(toe)) + 1
    anchor = np.zeros(3)
    for a, b in zip(np.r_[0, switches], np.r_[switches, len(toe)]):
        if a > 0:  # the new point is held where the foot, as placed so far, has it now
            anchor = out[a - 1] - quat.rotate(_about_y(turns[a - 1:a]), ankle[a - 1:a] - soles[a - 1:a, toe[a]])[0]
        out[a:b] = anchor + lever[a:b]
    out += np.median(ankle, axis=0) - np.median(out, axis=0)
    out[:, 1] = np.median(ankle[:, 1])
    return out


def _heading_turns(feet: np.ndarray, contacts: np.ndarray, fade: int, limit: float) -> np.ndarray:
    """(F, n_legs) radians about the vertical that hold each planted foot's heading (feet: (F, n_legs, 4) world
    rotations; heading: where the toes point, seen from above) at its median over the contact, carried across the
    swings as the ankles' corrections are, at most `limit`."""
    forward = quat.rotate(feet, [0.0, 0.0, 1.0])
    heading = np.unwrap(np.arctan2(forward[..., 0], forward[..., 2]), axis=0)
    out = np.zeros(contacts.shape)
    for leg in range(contacts.shape[1]):
        segments = leg_ik.segments(contacts[:, leg])
        held = heading[:, leg].copy()
        for start, end in segments:
            held[start:end + 1] = np.median(heading[start:end + 1, leg])
        out[:, leg] = leg_ik.carry((held - heading[:, leg])[:, None], segments, fade)[:, 0]
    return np.clip(out, -limit, limit)


def _about_y(angle: np.ndarray) -> np.ndarray:
    """(N, 4) rotations by angle (N,) radians about +Y."""
    return np.stack([np.cos(angle / 2), 0 * angle, np.sin(angle / 2), 0 * angle], axis=-1)


def _leg_ik(motion: Motion, legs: np.ndarray, targets: np.ndarray, turns: np.ndarray, reach: float,
            max_drop: float, smooth: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotations (F, J, 4), root positions (F, 3) and the hips' drop (F,) metres that put each ankle on its target
    (F, n_legs, 3) and turn each foot by turns (F, n_legs) radians about the vertical (its world orientation
    otherwise kept); frames with nothing to change are left exactly as they were."""
    sk = motion.skeleton
    rotations = np.array(motion.rotations, dtype=np.float64, copy=True)
    root = np.array(motion.root_positions, dtype=np.float64, copy=True)
    glob = sk.global_rotations(rotations)
    pos = sk.forward_kinematics(rotations, root)
    hips, knees, ankles = (pos[:, legs[:, k]] for k in range(3))
    l1 = np.linalg.norm(sk.offsets[legs[:, 1]], axis=-1)
    l2 = np.linalg.norm(sk.offsets[legs[:, 2]], axis=-1)
    longest = reach * (l1 + l2)
    drop = leg_ik.smooth_drop(leg_ik.hips_drop(targets, hips, longest, 1, max_drop), smooth)
    root[:, 1] -= drop
    down = drop[:, None, None] * np.array([0.0, 1.0, 0.0])
    hips, knees, ankles = hips - down, knees - down, ankles - down
    moved = (np.linalg.norm(targets - ankles, axis=-1) > 1e-9) | (np.abs(turns) > 1e-9)
    for leg, (upper, lower, foot) in enumerate(legs):
        rows = np.flatnonzero(moved[:, leg])
        if rows.size == 0:
            continue
        forward = quat.rotate(glob[rows, upper], [0.0, 0.0, 1.0])  # the thigh's, for a straight leg
        turn_upper, turn_lower, _, _ = leg_ik.two_bone(hips[rows, leg], knees[rows, leg], ankles[rows, leg],
                                                     targets[rows, leg], forward, l1[leg], l2[leg], longest[leg])
        g_upper = quat.multiply(turn_upper, glob[rows, upper])
        g_lower = quat.multiply(turn_lower, glob[rows, lower])
        local = np.stack([quat.multiply(quat.inverse(glob[rows, sk.parents[upper]]), g_upper),
                          quat.multiply(quat.inverse(g_upper), g_lower),
                          quat.multiply(quat.inverse(g_lower), quat.multiply(_about_y(turns[rows, leg]),
                                                                             glob[rows, foot]))], axis=1)
        old = rotations[rows][:, [upper, lower, foot]]
        local = quat.normalize(local) * np.where(np.sum(local * old, -1, keepdims=True) < 0, -1.0, 1.0)
        rotations[rows[:, None], [upper, lower, foot]] = local  # in the original's hemisphere: as continuous
    return rotations, root, drop
