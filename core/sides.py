"""Left/right consistency of one person's landmark track: undo the runs of frames where MediaPipe Pose swapped the
labels of the person's left and right side (most often when the person is seen from the side or the back).

Each frame is either kept or relabelled (left and right exchanged). Relabelling a frame exchanges the image
positions and visibilities of every left/right pair, and for the world landmarks also mirrors depth (Z -> -Z about
the hip centre): that is the body that casts the same image with the other labels, with the handedness of a real
body (MediaPipe's world landmarks always have it, so a swap shows there as the body turning about 180 degrees in one
frame). The labelling sequence is chosen over the whole clip by a dynamic programme: every pair of frames up to
LAGS apart pays the motion of all the paired landmarks between them (image positions / body size in the image plus
world positions / body size in the world), with the labellings as chosen; a change of labelling between
consecutive frames pays one typical frame's motion on top; each relabelled frame pays a negligible tie-break, so
that where motion alone cannot tell, the sides MediaPipe chose in most frames are kept. Comparing frames a few
apart bridges the in-between frames of a swap that MediaPipe's landmark smoothing blends over two or three frames.
A single bad frame raises its costs to both sides alike and so cannot flip a run; a real crossing of limbs is
continuous motion of the whole set and costs less kept than relabelled.

The programme's relabelled episodes are then confirmed group by group (`confirmed`): the legs are relabelled where
their own motion is cheaper relabelled, the rest of the body where its torso's is (shoulders and hips move
continuously and never pass each other). MediaPipe swaps all labels together, or the body without the legs; arms
swung across the body while the person turns can make a whole-body relabelling look cheaper on their own, and
relabel nothing. Measured: bench/motion_quality.py's turning clip was relabelled 31 frames wrongly before (foot skate
29.9 -> 13.7 mm/frame), Pose2Sim's multi-person view 3 now keeps its legs (PA-MPJPE 134.5 -> 121.9 mm), and
bench/realworld.py's swaps on cam02 are undone as before (34 -> 6 frames).
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache

import numpy as np

from core.detections import Detections
from core.common import rigs

LAGS = 4  # frames up to this far apart are compared (2**LAGS states per frame)
TIE_BREAK = 1e-6  # × the switch cost: cost of one relabelled frame, so only where motion cannot tell apart
DEPTH_MIRROR = np.array([1.0, 1.0, -1.0])  # world landmarks of a relabelled frame: Z -> -Z (hip-centred)
#: The groups relabelled on their own evidence (confirmed): name -> the landmarks that witness it. "body" relabels
#: every paired landmark but the legs', witnessed by the torso.
GROUPS = {"legs": ("knee", "ankle", "heel", "foot_index"), "body": ("shoulder", "hip")}


def relabel(det: Detections, flags: np.ndarray, landmarks: np.ndarray | None = None) -> Detections:
    """`det` with left and right exchanged in the frames where flags (F,) bool: every pair, world depth mirrored
    (the whole body relabelled), or only the `landmarks` given (paired indices, both sides), exchanged as they are."""
    mirror = rigs.landmark_mirror()
    f = flags[:, None, None]
    if landmarks is None:
        image = np.where(f, det.image[:, mirror], det.image)
        world = np.where(f, det.world[:, mirror] * DEPTH_MIRROR.astype(det.world.dtype), det.world)
    else:
        swap = np.arange(mirror.size)
        swap[landmarks] = mirror[landmarks]
        image = np.where(f, det.image[:, swap], det.image)
        world = np.where(f, det.world[:, swap], det.world)
    return replace(det, image=image.astype(det.image.dtype), world=world.astype(det.world.dtype))


def fix_swaps(det: Detections) -> tuple[Detections, np.ndarray]:
    """Undo runs of left/right label swaps in `det` (F frames); returns the corrected copy and (F,) bool, the frames
    where anything was relabelled. Frames without a person are left as they are and do not break the chain."""
    flags = np.zeros(det.num_frames, dtype=bool)
    frames = np.flatnonzero(det.present)
    if frames.size < 2:
        return det, flags
    image, world = det.image[frames, :, :2], det.world[frames]
    by_group = confirmed(best_labelling(image, world), image, world)
    per_group = np.zeros((det.num_frames, len(GROUPS)), dtype=bool)
    per_group[frames] = by_group
    whole = per_group.all(axis=1)
    out = relabel(det, whole) if whole.any() else det
    for g, landmarks in enumerate(group_landmarks()):
        alone = per_group[:, g] & ~whole
        if alone.any():
            out = relabel(out, alone, landmarks)
    return out, per_group.any(axis=1)


def confirmed(flags: np.ndarray, image: np.ndarray, world: np.ndarray, lags: int = LAGS) -> np.ndarray:
    """(N, len(GROUPS)) bool: per group of landmarks, the frames of `flags` (N,) (the whole-body labelling) that
    group's own evidence confirms, episode by episode (runs of relabelled frames fewer than `lags` apart, together).

    MediaPipe swaps a person's labels all together or the legs alone; limbs also cross each other in real motion
    (an arm swung across the body while turning, legs passing in a stride). So the legs are relabelled where their
    own motion is cheaper relabelled, and the rest of the body where its torso's (shoulders and hips, which move
    continuously and never pass each other) is: arms crossing alone do not relabel anything."""
    out = np.zeros((len(flags), len(GROUPS)), dtype=bool)
    episodes = _episodes(flags, lags)
    if not episodes:
        return out
    lag_range = range(1, min(lags, len(flags) - 1) + 1)
    costs = [[step_costs(image, world, k, _paired(witnesses)) for k in lag_range] for witnesses in GROUPS.values()]
    for start, end in episodes:
        one = np.zeros_like(flags)
        one[start:end + 1] = flags[start:end + 1]
        for g, by_lag in enumerate(costs):
            gain = sum(float(np.sum(np.where(one[k:] != one[:-k], same - cross, 0.0)))
                       for k, (same, cross) in zip(lag_range, by_lag))
            if gain > 0.0:  # relabelling this episode makes the group's own landmarks move less
                out[:, g] |= one
    return out


def group_landmarks() -> list[np.ndarray]:
    """Per group of GROUPS, the landmarks it relabels: the legs' own; every other paired landmark for the body."""
    mirror = rigs.landmark_mirror()
    paired = np.flatnonzero(mirror != np.arange(mirror.size))
    legs = _paired(GROUPS["legs"])
    return [legs if name == "legs" else np.setdiff1d(paired, legs) for name in GROUPS]


def _episodes(flags: np.ndarray, gap: int) -> list[tuple[int, int]]:
    """(first, last) of each group of relabelled frames whose runs are fewer than `gap` frames apart."""
    idx = np.flatnonzero(flags)
    if not idx.size:
        return []
    breaks = np.flatnonzero(np.diff(idx) > gap)
    return list(zip(idx[np.r_[0, breaks + 1]].tolist(), idx[np.r_[breaks, idx.size - 1]].tolist()))


def _paired(names: tuple[str, ...]) -> np.ndarray:
    """Indices of the left_/right_ landmarks of `names` ("shoulder" -> left_shoulder, right_shoulder)."""
    return np.array([rigs.landmark_index(f"{side}_{n}") for n in names for side in ("left", "right")])


def step_costs(image: np.ndarray, world: np.ndarray, lag: int,
               paired: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Motion between frames `lag` apart with the labels kept (same) and with one of the two relabelled (cross).

    image: (N, 33, 2) pixels; world: (N, 33, 3) metres, hip-centred. Returns two (N-lag,) arrays: the mean
    displacement of the paired (left_*/right_*) landmarks (or of those listed in `paired`), in body sizes (the
    clip's median shoulder-to-hip distance), image plus world. Relabelling both frames costs `same` again, so these
    two say everything.
    """
    mirror = rigs.landmark_mirror()
    if paired is None:
        paired = np.flatnonzero(mirror != np.arange(mirror.size))
    total_same = np.zeros(image.shape[0] - lag)
    total_cross = np.zeros(image.shape[0] - lag)
    for points, flipped in ((image, image[:, mirror]), (world, world[:, mirror] * DEPTH_MIRROR)):
        size = _body_size(points)
        a, b, b_flipped = points[lag:, paired], points[:-lag, paired], flipped[:-lag, paired]
        total_same += np.nan_to_num(np.nanmean(np.linalg.norm(a - b, axis=-1), axis=1)) / size
        total_cross += np.nan_to_num(np.nanmean(np.linalg.norm(a - b_flipped, axis=-1), axis=1)) / size
    return total_same, total_cross


def best_labelling(image: np.ndarray, world: np.ndarray, lags: int = LAGS) -> np.ndarray:
    """(N,) bool, the relabelled frames of the cheapest labelling of N frames (image (N, 33, 2) pixels, world
    (N, 33, 3) metres).

    Every pair of frames up to `lags` apart pays its step_costs: `same` between equal labellings, `cross`
    between different ones; a change of labelling between consecutive frames also pays a switch cost (the median
    of the consecutive `same`: one typical frame's motion); each relabelled frame pays TIE_BREAK × the switch
    cost. The state of a frame is the labelling of it and the lags - 1 frames before it (2**lags states); solved
    exactly by min-marginals (forward and backward min-plus scans).
    """
    n = image.shape[0]
    lags = max(1, min(lags, n - 1))
    costs = [step_costs(image, world, k) for k in range(1, lags + 1)]
    switch = max(float(np.median(costs[0][0])), 1e-9)
    # states[i, j]: labelling of the frame j before the current one, in state i
    states = (np.arange(2**lags)[:, None] >> np.arange(lags)[None, :]) & 1
    unary = TIE_BREAK * switch * states[:, 0]
    allowed = np.all(states[None, :, 1:] == states[:, None, :-1], axis=-1)  # (from, to)
    steps_count = n - lags
    steps = np.where(allowed, unary[None, :], np.inf)[None].repeat(steps_count, axis=0)
    for k, (same, cross) in enumerate(costs, 1):
        equal = states[:, None, k - 1] == states[None, :, 0]  # (from, to): frame k before the new one vs it
        idx = np.arange(steps_count) + lags - k
        steps += np.where(equal[None], same[idx, None, None], cross[idx, None, None] + (switch if k == 1 else 0.0))
    first = TIE_BREAK * switch * states.sum(axis=1).astype(np.float64)
    for a in range(lags):  # pairs among the first `lags` frames (a < b); frame f is states[:, lags - 1 - f]
        for b in range(a + 1, lags):
            same, cross = costs[b - a - 1]
            equal = states[:, lags - 1 - a] == states[:, lags - 1 - b]
            first += np.where(equal, same[a], cross[a] + (switch if b - a == 1 else 0.0))
    if steps_count == 0:
        best = np.array([np.argmin(first)])
    else:
        forward = _min_plus_scan(steps)
        backward = _min_plus_scan(steps[::-1], reverse=True)[::-1]
        ahead = np.concatenate([[first], np.min(first[None, :, None] + forward, axis=1)])
        behind = np.concatenate([np.min(backward, axis=2), [np.zeros(2**lags)]])
        best = np.argmin(ahead + behind, axis=1)
    return np.concatenate([states[best[0], ::-1], states[best[1:], 0]]).astype(bool)


def _min_plus_scan(m: np.ndarray, reverse: bool = False) -> np.ndarray:
    """Inclusive prefix products of (N, S, S) matrices in the (min, +) semiring, in log2(N) vectorised steps
    (Hillis-Steele); reverse=True multiplies each new matrix on the left (for suffix products of reversed input).
    Written here because NumPy/SciPy have no min-plus product or scan."""
    out = m.copy()
    shift = 1
    while shift < out.shape[0]:
        earlier, later = out[:-shift], out[shift:]
        if reverse:
            earlier, later = later, earlier
        product = earlier[:, :, :1] + later[:, None, 0]
        for mid in range(1, out.shape[1]):  # over states, not frames: keeps memory at (N, S, S)
            np.minimum(product, earlier[:, :, mid:mid + 1] + later[:, None, mid], out=product)
        out[shift:] = product
        shift *= 2
    return out


def _body_size(points: np.ndarray) -> float:
    """The clip's median mid-shoulder to mid-hip distance of points (N, 33, D), in their units (1 if unknown)."""
    shoulders = [rigs.landmark_index("left_shoulder"), rigs.landmark_index("right_shoulder")]
    hips = [rigs.landmark_index("left_hip"), rigs.landmark_index("right_hip")]
    torso = np.linalg.norm(points[:, shoulders].mean(1) - points[:, hips].mean(1), axis=-1)
    size = float(np.nanmedian(torso)) if np.isfinite(torso).any() else 1.0
    return size if size > 0 else 1.0
