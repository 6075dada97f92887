"""The finger skeleton (rigs/hand.json) and the body-plus-fingers skeleton that writers and the add-on use.

A motion file keeps fingers apart from the body (hand_rotations (F, 2, H, 4), hand_joints without a side), so the
body's skeleton is the same with or without hands; `with_fingers` joins them into one skeleton whose finger joints
carry Unity Humanoid names (LeftIndexProximal ...), the form BVH, FBX, VRMA, VMD and the add-on's armature need.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from . import rigs
from .errors import BadRigData
from .skeleton import Skeleton

if TYPE_CHECKING:
    from .motionfile import Motion

SIDES = ("Left", "Right")  # the order of the motion file's HANDS axis


@lru_cache(maxsize=1)
def hand_skeleton() -> Skeleton:
    """The left hand's finger joints (H = 15) as a forest: the Proximal joints are roots (parent -1), their offsets
    relative to the body's LeftHand joint; metres, world-aligned T-pose rest."""
    try:
        joints = rigs.load("hand")["joints"]
        names = [str(j["name"]) for j in joints]
        parents = [-1 if j["parent"] is None else names.index(j["parent"]) for j in joints]
        offsets = np.asarray([j["offset"] for j in joints], dtype=np.float64)
        ends = np.asarray([j.get("end", [0.0, 0.0, 0.0]) for j in joints], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRigData(f"Mimic's rig data {rigs.RIGS_DIR / 'hand.json'} is malformed ({exc}).",
                         "Reinstall Mimic.") from exc
    return _Forest(tuple(names), np.asarray(parents), offsets, ends)


class _Forest(Skeleton):
    """A Skeleton that may have several roots (the five finger chains of a hand)."""

    def __post_init__(self) -> None:
        parents = np.asarray(self.parents, dtype=np.int64)
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "parents", parents)
        object.__setattr__(self, "offsets", np.asarray(self.offsets, dtype=np.float64).reshape(-1, 3))
        object.__setattr__(self, "end_sites", np.asarray(self.end_sites, dtype=np.float64).reshape(-1, 3))
        if np.any(parents >= np.arange(len(parents))):
            raise ValueError("parents must come before their children")


def hand_joint_names() -> tuple[str, ...]:
    """The motion file's hand_joints: finger joint names without a side (ThumbProximal ... LittleDistal)."""
    return hand_skeleton().names


def hand_landmarks() -> np.ndarray:
    """(H, 2) int: for each finger joint, the MediaPipe Hands landmark at the joint and at its child."""
    return np.asarray([j["landmarks"] for j in rigs.load("hand")["joints"]], dtype=np.int64)


def hand_limits_deg() -> np.ndarray:
    """(H, 2, 2) degrees: per finger joint, [flexion min, max] and [abduction min, max]."""
    joints = rigs.load("hand")["joints"]
    return np.asarray([[j["limits_deg"]["flexion"], j["limits_deg"]["abduction"]] for j in joints], dtype=np.float64)


def mirrored_offsets(offsets: np.ndarray) -> np.ndarray:
    """Left-hand offsets (..., 3) -> the right hand's (X mirrored)."""
    return np.asarray(offsets) * np.array([-1.0, 1.0, 1.0])


def full_name(side: int, joint: str) -> str:
    """The joined skeleton's name of a finger joint: side 0 (left) / 1 (right) + joint, e.g. LeftIndexProximal."""
    return f"{SIDES[side]}{joint}"


def with_fingers(skeleton: Skeleton, rotations: np.ndarray, hand_rotations: np.ndarray | None,
                 hand_joints: tuple[str, ...]) -> tuple[Skeleton, np.ndarray]:
    """The body skeleton and its (F, J, 4) rotations joined with both hands' fingers (F, 2, H, 4) -> a skeleton of
    J + 2H joints (fingers after the body, left hand first) and (F, J + 2H, 4) rotations, w-x-y-z.

    Finger offsets are rigs/hand.json's scaled to the body's hand length; with hand_rotations None the body is
    returned unchanged."""
    if hand_rotations is None or not hand_joints:
        return skeleton, rotations
    hand = hand_skeleton()
    order = [hand.names.index(n) for n in hand_joints]
    names, parents = list(skeleton.names), list(skeleton.parents)
    offsets, ends = [skeleton.offsets], [skeleton.end_sites]
    for side in (0, 1):
        wrist = skeleton.index(f"{SIDES[side]}Hand")
        scale = _hand_scale(skeleton, wrist)
        base = len(names)
        for k in order:
            names.append(full_name(side, hand.names[k]))
            p = hand.parents[k]
            parents.append(wrist if p < 0 else base + order.index(int(p)))
        off, end = hand.offsets[order] * scale, hand.end_sites[order] * scale
        offsets.append(off if side == 0 else mirrored_offsets(off))
        ends.append(end if side == 0 else mirrored_offsets(end))
    # the Hand joints now have children: their end sites are not leaves any more
    end_sites = np.concatenate(ends)
    joined = Skeleton(tuple(names), np.asarray(parents), np.concatenate(offsets), end_sites)
    hands = np.asarray(hand_rotations, dtype=np.float64).reshape(rotations.shape[0], 2 * len(order), 4)
    return joined, np.concatenate([np.asarray(rotations, dtype=np.float64), hands], axis=1)


def _hand_scale(skeleton: Skeleton, wrist: int) -> float:
    """The body's hand length (its end site) over rigs/humanoid.json's 0.18 m, 1.0 when the hand has no end."""
    length = float(np.linalg.norm(skeleton.end_sites[wrist]))
    return length / 0.18 if length > 1e-6 else 1.0


def motion_with_fingers(motion: Motion) -> tuple[Skeleton, np.ndarray]:
    """`with_fingers` of a Motion: its joined skeleton and rotations (the body alone when it has no hands)."""
    return with_fingers(motion.skeleton, motion.rotations, motion.hand_rotations, motion.hand_joints)


def split_fingers(skeleton: Skeleton, rotations: np.ndarray
                  ) -> tuple[Skeleton, np.ndarray, np.ndarray | None, tuple[str, ...]]:
    """The inverse of `with_fingers`: a joined skeleton and (F, J + 2H, 4) rotations -> the body skeleton, its
    (F, J, 4) rotations, the fingers (F, 2, H, 4) (None when the skeleton has none) and hand_joints."""
    names = hand_joint_names()
    finger = [full_name(side, n) for side in (0, 1) for n in names]
    if not all(n in skeleton.names for n in finger):
        return skeleton, rotations, None, ()
    body = [j for j, n in enumerate(skeleton.names) if n not in finger]  # a BVH lists fingers under each hand
    new_index = {j: k for k, j in enumerate(body)}
    parents = np.asarray([-1 if skeleton.parents[j] < 0 else new_index[int(skeleton.parents[j])] for j in body])
    ends = skeleton.end_sites[body].copy()
    for side in (0, 1):  # the Hand joints are leaves of the body alone again
        wrist = new_index[skeleton.index(f"{SIDES[side]}Hand")]
        if not np.any(ends[wrist]):
            ends[wrist] = mirrored_offsets(np.array([0.18, 0.0, 0.0])) if side else np.array([0.18, 0.0, 0.0])
    out = Skeleton(tuple(skeleton.names[j] for j in body), parents, skeleton.offsets[body], ends)
    index = [skeleton.index(n) for n in finger]
    hands = np.asarray(rotations)[:, index].reshape(rotations.shape[0], 2, len(names), 4)
    return out, np.asarray(rotations)[:, body], hands, names


@lru_cache(maxsize=1)
def expression_names() -> tuple[str, ...]:
    """Every expression channel Mimic estimates, in rigs/expressions.json's order."""
    data = rigs.load("expressions").get("expressions")
    if not isinstance(data, dict) or not data:
        raise BadRigData(f"{rigs.RIGS_DIR / 'expressions.json'} lists no expressions.", "Reinstall Mimic.")
    return tuple(data)


def expression_targets() -> dict[str, dict[str, list[str]]]:
    """Default shape-key names per expression, by convention (vrm, arkit, mmd), first match wins."""
    return {name: dict(e["targets"]) for name, e in rigs.load("expressions")["expressions"].items()}
