"""Finger rotations from MediaPipe Hands world landmarks: the palm's frame, then each finger joint's flexion and
abduction, clamped to rigs/hand.json's limits, gap-filled and low-passed like the body.

Conventions (rigs/hand.json, the motion file's hand_rotations): local rotations w-x-y-z relative to the world-aligned
T-pose rest of the LEFT hand (fingers +X, palm down -Y, thumb +Z); global = parent_global * local, the Proximal
joints' parent being the Hand (whose frame the palm gives). Each joint j has a rest bone direction d_j (its child's
rest offset), a lateral axis l_j = d_j x Y and an abduction sign s_j (+1 thumb, index, middle: positive spreads
toward +Z; -1 ring, little: toward -Z). Its local rotation is

    q_j = R(-s_j Y, abduction) * R(-l_j, flexion)

flexion first about the joint's lateral axis (positive curls the tip toward the palm, -Y), then abduction about the
palm normal. The right hand's rest is the left's mirrored in X; a right hand posed as the X-mirror of a left hand
has the same flexion/abduction and the mirrored quaternions (w, x, -y, -z) (`mirror_rotations`). Its landmarks are
mirrored in x and solved as a left hand, so both hands share one solver.

An image cannot tell a left palm from a right hand's back (a mirror in depth): MediaPipe now and then builds the
other hand than the body's side says (its handedness is wrong); such frames (`chirality`) are mirrored in depth
before solving and reported in FingerSolve.flipped.

With the hands' image landmarks (`image_points`), x and y come from the image (MediaPipe's 2D, the observed half)
under a weak-perspective camera fitted to the palm, and depth from the image landmarks' z and the world landmarks'
(MediaPipe's two estimates of it); optionally each bone's depth also from its length (Taylor 2000: |dz| =
sqrt(L^2 - l^2) for a bone of length L seen l long), blended with MediaPipe's by their variances.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from core.common import rigs
from core.common.errors import WeightsMissing
from core.common import rotations as quat
from core.common.hands import hand_joint_names, hand_landmarks, hand_limits_deg, hand_skeleton
from core.filters import fill_gaps, smooth

LANDMARKS = 21
MIRROR = np.array([-1.0, 1.0, 1.0])
CORRECTION = Path(__file__).resolve().parent / "weights" / "finger_correction.json"


@dataclass(frozen=True)
class FingerSettings:
    """max_gap_s: gaps up to this long are interpolated (longer ones hold the last pose, confidence 0). cutoff_hz:
    the low-pass of angles and palm axes. outlier: a bone whose length differs from the clip's fit by more than this
    share disagrees; a frame's confidence is its score times the share of bones that agree, and a frame where fewer
    than min_agreement agree is dropped (filled). hinge_prior: the weight pulling an ill-defined abduction to 0.
    With image landmarks: image_depth weighs the image's depth (MediaPipe's landmark z) against the world
    landmarks' (two estimates of one depth, equal weights by default); length_depth also takes each bone's depth
    from its length, weighted against MediaPipe's by length_noise (the 2D bone's error, a share of its length) and
    depth_noise (MediaPipe's depth error, likewise); a bone's length is the larger of its length_percentile
    projected length over the clip and MediaPipe's median world length. correction: map the measured flexions
    through the learned linear correction (CORRECTION, trained by training/finger_correction.py): MediaPipe's hand
    model under-bends curled fingers, most at the knuckles."""

    max_gap_s: float = 0.5
    cutoff_hz: float = 6.0
    outlier: float = 0.35
    min_agreement: float = 0.6
    hinge_prior: float = 0.01
    chirality_margin: float = 0.1
    fix_chirality: bool = True
    image_depth: float = 0.5
    length_depth: bool = False
    length_noise: float = 0.2
    depth_noise: float = 0.2
    length_percentile: float = 95.0
    correction: bool = True


SETTINGS = FingerSettings()


@dataclass(frozen=True)
class FingerSolve:
    """hand_rotations (F, 2, H, 4) local w-x-y-z (rigs/hand.json order; axis 1 = the person's left, right hand);
    hand_confidence (F, 2) 0..1 (0 where filled or unseen); palm_rotations (F, 2, 4) w-x-y-z: landmarks (camera
    frame, wrist-relative) ~= palm_rotation * the rest hand (the right hand's rest mirrored in X); finger_lengths
    (2, H) metres, each joint's bone (median over the clip, the rig's length where never seen); angles_deg
    (F, 2, H, 2) the flexion and abduction behind hand_rotations; flipped (F, 2) bool: frames whose landmarks had the
    other hand's shape (MediaPipe's handedness disagreed with the side) and were mirrored in depth."""

    hand_rotations: np.ndarray
    hand_confidence: np.ndarray
    palm_rotations: np.ndarray
    finger_lengths: np.ndarray
    angles_deg: np.ndarray
    flipped: np.ndarray
    hand_joints: tuple[str, ...]


# ----------------------------------------------------------------------------------------------- the hand model

@lru_cache(maxsize=1)
def _model() -> dict[str, np.ndarray]:
    """Per joint: rest bone direction (H, 3), lateral axis (H, 3), abduction sign (H,), the child joint (H,) (-1
    for the last of a chain), whether the child's rest bone is parallel (H,) bool, rest bone length (H,)."""
    hand = hand_skeleton()
    count = len(hand.names)
    child = np.full(count, -1)
    for j, p in enumerate(hand.parents):
        if p >= 0:
            child[p] = j
    bone = np.where((child >= 0)[:, None], hand.offsets[np.maximum(child, 0)], hand.end_sites)
    length = np.linalg.norm(bone, axis=-1)
    rest = bone / length[:, None]
    lateral = np.cross(rest, [0.0, 1.0, 0.0])
    lateral /= np.linalg.norm(lateral, axis=-1, keepdims=True)
    sign = np.array([-1.0 if n.startswith(("Ring", "Little")) else 1.0 for n in hand.names])
    parallel = (child >= 0) & (np.sum(rest * rest[np.maximum(child, 0)], axis=-1) > 0.9995)
    return {"rest": rest, "lateral": lateral, "sign": sign, "child": child, "parallel": parallel, "length": length}


@lru_cache(maxsize=1)
def rest_landmarks() -> np.ndarray:
    """(21, 3) the MediaPipe landmarks of the rest left hand (rigs/hand.json), metres, the wrist at the origin."""
    hand = hand_skeleton()
    pos = np.zeros((len(hand.names), 3))
    for j, p in enumerate(hand.parents):
        pos[j] = hand.offsets[j] + (pos[p] if p >= 0 else 0.0)
    out = np.zeros((LANDMARKS, 3))
    pairs = hand_landmarks()
    model = _model()
    out[pairs[:, 0]] = pos
    out[pairs[:, 1]] = pos + model["rest"] * model["length"][:, None]
    return out


def finger_rotations(angles: np.ndarray) -> np.ndarray:
    """Flexion and abduction (..., H, 2) radians -> local rotations (..., H, 4) w-x-y-z of the left hand."""
    angles = np.asarray(angles, dtype=np.float64)
    return np.stack([_joint_rotation(angles[..., j, :], j) for j in range(angles.shape[-2])], axis=-2)


def mirror_rotations(q: np.ndarray) -> np.ndarray:
    """Rotations (..., 4) w-x-y-z of one hand -> those of its X-mirror (left <-> right)."""
    return np.asarray(q, dtype=np.float64) * np.array([1.0, 1.0, -1.0, -1.0])


def _axis_angle(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    half = 0.5 * np.asarray(angle)[..., None]
    return np.concatenate([np.cos(half), np.sin(half) * axis], axis=-1)


def palm_basis(points: np.ndarray) -> np.ndarray:
    """Left-hand landmarks (..., 21, 3) -> (..., 3, 3) orthonormal columns: wrist->middle MCP, index-pinky MCP
    across it, and their cross product (the palm side); NaN where degenerate."""
    palm = rigs.load("hand")["palm"]
    aim = points[..., palm["middle"], :] - points[..., palm["wrist"], :]
    across = points[..., palm["index"], :] - points[..., palm["pinky"], :]
    return quat.basis(aim, across)


# ------------------------------------------------------------------------------------------------------ solving

def measure(points: np.ndarray, hinge_prior: float = SETTINGS.hinge_prior) -> tuple[np.ndarray, np.ndarray]:
    """Left-hand landmarks (N, 21, 3) -> palm rotation matrices (N, 3, 3) (landmarks ~= R * rest) and flexion,
    abduction (N, H, 2) radians within rigs/hand.json's limits; NaN where a landmark is missing.

    Each joint's bone direction is taken into its parent's solved frame; abduction comes from that direction where
    the joint is not bent near 90 degrees, and from the plane of the joint's bone and its child's (the flexion plane)
    where the child is bent; flexion is then the angle in that plane."""
    model, limits = _model(), np.radians(hand_limits_deg())
    pairs = hand_landmarks()
    palm = palm_basis(points) @ palm_basis(rest_landmarks()).T
    local = np.einsum("nji,nkj->nki", palm, points - points[:, :1])  # in the palm (Hand) frame
    bones = quat.unit(local[:, pairs[:, 1]] - local[:, pairs[:, 0]])  # (N, H, 3)
    parents = hand_skeleton().parents
    frames, count = points.shape[0], len(parents)
    glob = np.empty((frames, count, 4))
    angles = np.empty((frames, count, 2))
    for j in range(count):
        to_parent = quat.inverse(glob[:, parents[j]]) if parents[j] >= 0 else quat.identity(frames)
        axes = np.stack([model["rest"][j], [0.0, 1.0, 0.0], model["lateral"][j]], axis=-1)  # columns: x, y, z
        u = quat.rotate(to_parent, bones[:, j]) @ axes  # (N, 3) in the joint's rest axes
        s = model["sign"][j]
        fold = np.where(u[:, 0] < 0, -1.0, 1.0)  # |abduction| < 90 degrees: beyond the pole the finger is curled
        a_dir = np.arctan2(s * u[:, 2] * fold, u[:, 0] * fold)
        w_dir = u[:, 0] ** 2 + u[:, 2] ** 2
        sin_sum, cos_sum = w_dir * np.sin(a_dir), w_dir * np.cos(a_dir) + hinge_prior
        c = model["child"][j]
        if model["parallel"][j]:
            v = quat.rotate(to_parent, bones[:, c]) @ axes
            m = -np.cross(u, v)  # sin(child's flexion) times the lateral axis R(-sY, a) z = (-s sin a, 0, cos a)
            fold = np.where(m[:, 2] < 0, -1.0, 1.0)
            a_plane = np.arctan2(-s * m[:, 0] * fold, m[:, 2] * fold)
            w_plane = m[:, 0] ** 2 + m[:, 2] ** 2
            sin_sum, cos_sum = sin_sum + w_plane * np.sin(a_plane), cos_sum + w_plane * np.cos(a_plane)
        abduction = np.clip(np.arctan2(sin_sum, cos_sum), *limits[j, 1])
        # undo the abduction (about y by s * a), then flexion is the angle from x toward -y
        ca, sa = np.cos(s * abduction), np.sin(s * abduction)
        x = ca * u[:, 0] + sa * u[:, 2]
        flexion = np.clip(np.arctan2(-u[:, 1], x), *limits[j, 0])
        angles[:, j] = np.stack([flexion, abduction], axis=-1)
        parent = glob[:, parents[j]] if parents[j] >= 0 else quat.identity(frames)
        glob[:, j] = quat.multiply(parent, _joint_rotation(angles[:, j], j))
    missing = ~np.all(np.isfinite(points), axis=(1, 2))
    angles[missing] = np.nan
    return palm, angles


def _joint_rotation(angles: np.ndarray, j: int) -> np.ndarray:
    """Flexion, abduction (..., 2) radians of joint j -> its local rotations (..., 4)."""
    model = _model()
    abd = _axis_angle(-model["sign"][j] * np.array([0.0, 1.0, 0.0]), angles[..., 1])
    return quat.multiply(abd, _axis_angle(-model["lateral"][j], angles[..., 0]))


def chirality(points: np.ndarray) -> np.ndarray:
    """Left-hand landmarks (..., 21, 3) -> (...) how far the fingers and thumb lie on the palm's side (positive, a
    left hand) rather than its back (negative: the shape of a right hand), over the palm's length.

    A hand's image cannot tell a left palm from a right back (a mirror in depth); MediaPipe picks one with its
    handedness, which is wrong now and then. Its hand model does not bend fingers far backwards, so the side the
    fingers lie on tells which hand it built."""
    palm = palm_basis(points) @ palm_basis(rest_landmarks()).T
    local = np.einsum("...ji,...kj->...ki", palm, points - points[..., :1, :])
    fingers = np.setdiff1d(np.arange(2, LANDMARKS), [5, 9, 13, 17])
    return -np.mean(local[..., fingers, 1], axis=-1) / np.linalg.norm(local[..., 9, :], axis=-1)


def bone_lengths(points: np.ndarray) -> np.ndarray:
    """Landmarks (..., 21, 3) -> (..., H) each finger joint's bone length, metres."""
    pairs = hand_landmarks()
    return np.linalg.norm(points[..., pairs[:, 1], :] - points[..., pairs[:, 0], :], axis=-1)


def solve_fingers(hands_world: np.ndarray, hand_score: np.ndarray, fps: float,
                  settings: FingerSettings = SETTINGS, hands_image: np.ndarray | None = None) -> FingerSolve:
    """MediaPipe hand world landmarks (F, 2, 21, 3) metres (camera axes, NaN where not found; axis 1 = the person's
    left, right hand), scores (F, 2) 0..1 and, if given, image landmarks (F, 2, 21, 2 or 3) pixels (x, y used; see
    `image_points`) -> a FingerSolve (see there)."""
    points = np.array(hands_world, dtype=np.float64).reshape(-1, 2, LANDMARKS, 3)
    if hands_image is not None:
        points = image_points(hands_image, points, settings)
    score = np.nan_to_num(np.asarray(hand_score, dtype=np.float64).reshape(-1, 2))
    frames, count = points.shape[0], len(hand_joint_names())
    points[:, 1] *= MIRROR  # the right hand as a left hand
    seen = np.all(np.isfinite(points), axis=(2, 3))
    flipped = np.zeros_like(seen)
    if settings.fix_chirality:
        flipped = _other_hand(chirality(points), seen, fps, settings)
        points[flipped] *= np.array([1.0, 1.0, -1.0])

    lengths = bone_lengths(points)  # (F, 2, H)
    fit = np.full((2, count), np.nan)
    for side in (0, 1):
        if np.any(seen[:, side]):
            fit[side] = np.median(lengths[seen[:, side], side], axis=0)
    with np.errstate(invalid="ignore"):
        agree = np.mean(np.abs(lengths / fit - 1.0) <= settings.outlier, axis=-1)
    seen &= agree >= settings.min_agreement
    confidence = np.where(seen, np.clip(score, 0.0, 1.0) * agree, 0.0)
    fit = np.where(np.isfinite(fit), fit, _model()["length"])

    palm, angles = measure(points.reshape(-1, LANDMARKS, 3), settings.hinge_prior)
    palm = palm.reshape(frames, 2, 3, 3)
    angles = angles.reshape(frames, 2, count, 2)
    angles[~seen] = np.nan
    palm[~seen] = np.nan

    limits = np.radians(hand_limits_deg())  # (H, 2, 2)
    filled, _ = fill_gaps(angles.reshape(frames, 2 * count, 2), np.repeat(seen, count, axis=1), fps,
                          settings.max_gap_s)
    angles = smooth(filled, fps, settings.cutoff_hz).reshape(frames, 2, count, 2)
    ever_seen = np.isfinite(angles)
    angles = np.clip(np.nan_to_num(angles), limits[..., 0], limits[..., 1])  # a never-seen hand stays straight
    if settings.correction:
        angles[..., 0] = np.where(ever_seen[..., 0], correct_flexion(angles[..., 0]), 0.0)
        angles = np.clip(angles, limits[..., 0], limits[..., 1])
    axes, _ = fill_gaps(palm[..., :2].transpose(0, 1, 3, 2).reshape(frames, 4, 3), np.repeat(seen, 2, axis=1), fps,
                        settings.max_gap_s)
    axes = smooth(axes, fps, settings.cutoff_hz).reshape(frames, 2, 2, 3)
    palm_q = quat.from_matrix(quat.basis(axes[:, :, 0], axes[:, :, 1]))
    palm_q = np.where(np.all(np.isfinite(palm_q), axis=-1, keepdims=True), palm_q, quat.identity(1))

    local = finger_rotations(angles)
    local[:, 1] = mirror_rotations(local[:, 1])
    palm_q[:, 1] = mirror_rotations(palm_q[:, 1])
    return FingerSolve(hand_rotations=quat.make_continuous(local), hand_confidence=confidence,
                       palm_rotations=quat.make_continuous(palm_q), finger_lengths=fit,
                       angles_deg=np.degrees(angles), flipped=flipped, hand_joints=hand_joint_names())


@lru_cache(maxsize=1)
def load_correction(path: Path = CORRECTION) -> tuple[np.ndarray, np.ndarray]:
    """The learned flexion correction (training/finger_correction.py): per joint j, corrected = sum over the joints
    of its finger of gain[j, k] * flexion[k] + offset[j]; gain (H, H) radians per radian (zero outside the finger),
    offset (H,) radians. Checked before use."""
    fix = "Reinstall Mimic, or rebuild it: python -m training.finger_correction (see its docstring)."
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        names = tuple(data["joints"])
        gain = np.asarray(data["gain"], dtype=np.float64)
        offset = np.asarray(data["offset_rad"], dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WeightsMissing(f"The finger correction {path} is missing or damaged ({exc}).", fix) from exc
    count = len(hand_joint_names())
    if (names != hand_joint_names() or gain.shape != (count, count) or offset.shape != (count,)
            or not (np.all(np.isfinite(gain)) and np.all(np.isfinite(offset)))):
        raise WeightsMissing(f"The finger correction {path} does not fit rigs/hand.json's {count} joints.", fix)
    return gain, offset


def correct_flexion(flexion: np.ndarray, path: Path = CORRECTION) -> np.ndarray:
    """Measured flexions (..., H) radians -> the learned correction's (..., H) radians (`load_correction`)."""
    gain, offset = load_correction(path)
    return np.asarray(flexion, dtype=np.float64) @ gain.T + offset


PALM_LANDMARKS = (0, 5, 9, 13, 17)
#: Each landmark's parent along the hand's chains (the wrist's is itself).
LANDMARK_PARENTS = np.array([0, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19])


def palm_scale(image: np.ndarray, world: np.ndarray) -> np.ndarray:
    """Image (..., 21, 2) pixels and world landmarks (..., 21, 3) metres -> (...) pixels per metre: the
    least-squares similarity (scale and in-plane turn) from the world palm's x, y to the image palm's, a
    weak-perspective camera of the rigid palm."""
    a = world[..., PALM_LANDMARKS, :2] - world[..., PALM_LANDMARKS, :2].mean(axis=-2, keepdims=True)
    b = image[..., PALM_LANDMARKS, :2] - image[..., PALM_LANDMARKS, :2].mean(axis=-2, keepdims=True)
    dot = np.sum(a * b, axis=(-2, -1))
    cross = np.sum(a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.hypot(dot, cross) / np.sum(a * a, axis=(-2, -1))


def image_points(hands_image: np.ndarray, hands_world: np.ndarray, settings: FingerSettings = SETTINGS
                 ) -> np.ndarray:
    """Image landmarks (F, 2, 21, 2 or 3) pixels (x, y and MediaPipe's relative depth z in x's scale) and world
    landmarks (F, 2, 21, 3) metres (camera axes) -> (F, 2, 21, 3) world-like landmarks: x, y the image's over the
    palm's weak-perspective scale (`palm_scale`); depth the world's and the image's (over the same scale), weighted
    settings.image_depth to 1 - image_depth (the world's alone without an image z); with settings.length_depth each
    bone's depth then blended with the one its length gives (`_length_depth`). The world's where the image is
    missing."""
    full = np.asarray(hands_image, dtype=np.float64)
    full = full.reshape(-1, 2, LANDMARKS, full.shape[-1])
    image = full[..., :2]
    world = np.asarray(hands_world, dtype=np.float64).reshape(-1, 2, LANDMARKS, 3)
    scale = palm_scale(image, world)[..., None]
    centre = image[..., PALM_LANDMARKS, :].mean(axis=-2, keepdims=True)
    xy = (image - centre) / scale[..., None] + world[..., PALM_LANDMARKS, :2].mean(axis=-2, keepdims=True)
    z = world[..., 2]
    if full.shape[-1] > 2 and settings.image_depth > 0.0:
        from_image = (full[..., 2] - full[..., :1, 2]) / scale + world[..., :1, 2]
        z = settings.image_depth * from_image + (1.0 - settings.image_depth) * z
    if settings.length_depth:
        z = _length_depth(xy, np.concatenate([world[..., :2], z[..., None]], axis=-1), settings)
    out = np.concatenate([xy, z[..., None]], axis=-1)
    return np.where(np.all(np.isfinite(out), axis=(-2, -1))[..., None, None], out, world)


def _length_depth(xy: np.ndarray, world: np.ndarray, settings: FingerSettings) -> np.ndarray:
    """(F, 2, 21) depths: along each chain, every bone's depth step is MediaPipe's blended with the length
    constraint's |dz| = sqrt(L^2 - l^2) (MediaPipe's sign) by inverse variances: the length's variance grows as
    (l / |dz|)^2 where the bone lies near the image plane (ill-conditioned), MediaPipe's is fixed."""
    parent = LANDMARK_PARENTS
    seen = np.all(np.isfinite(xy), axis=(-2, -1)) & np.all(np.isfinite(world), axis=(-2, -1))
    projected = np.linalg.norm(xy - xy[..., parent, :], axis=-1)  # (F, 2, 21)
    step = world[..., 2] - world[..., parent, 2]
    length = np.full((2, LANDMARKS), np.nan)
    for side in (0, 1):
        if np.any(seen[:, side]):
            bones = np.linalg.norm(world - world[..., parent, :], axis=-1)[seen[:, side], side]
            longest = np.percentile(projected[seen[:, side], side], settings.length_percentile, axis=0)
            length[side] = np.maximum(longest, np.median(bones, axis=0))
    depth = np.sqrt(np.maximum(length ** 2 - projected ** 2, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):  # the wrist: no bone
        var_length = (settings.length_noise * length * projected) ** 2 / np.maximum(depth, 1e-3 * length) ** 2
        var_world = (settings.depth_noise * length) ** 2
        weight = var_world / (var_world + var_length)
    step = weight * np.where(step < 0, -1.0, 1.0) * depth + (1.0 - weight) * step
    z = np.array(world[..., 2])
    for k in range(1, LANDMARKS):  # parents come first
        z[..., k] = z[..., parent[k]] + step[..., k]
    return z


def _other_hand(score: np.ndarray, seen: np.ndarray, fps: float, settings: FingerSettings) -> np.ndarray:
    """(F, 2) bool: seen frames whose `chirality` score says the other hand; undecided scores follow the nearest
    decided frame (none decided: kept)."""
    decided = seen & (np.abs(np.nan_to_num(score)) >= settings.chirality_margin)
    filled, _ = fill_gaps(np.sign(score)[..., None], decided, fps, settings.max_gap_s)
    return seen & (np.nan_to_num(filled[..., 0]) < 0)
