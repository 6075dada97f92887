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


def relabel(det: Detections, flags: np.ndarray) -> Detections:
    """`det` with left and right exchanged in the frames where flags (F,) bool (world depth mirrored there)."""
    mirror = rigs.landmark_mirror()
    f = flags[:, None, None]
    image = np.where(f, det.image[:, mirror], det.image)
    world = np.where(f, det.world[:, mirror] * DEPTH_MIRROR.astype(det.world.dtype), det.world)
    return replace(det, image=image.astype(det.image.dtype), world=world.astype(det.world.dtype))


def fix_swaps(det: Detections) -> tuple[Detections, np.ndarray]:
    """Undo runs of left/right label swaps in `det` (F frames); returns the corrected copy and (F,) bool, the frames
    that were relabelled. Frames without a person are left as they are and do not break the chain."""
    flags = np.zeros(det.num_frames, dtype=bool)
    frames = np.flatnonzero(det.present)
    if frames.size < 2:
        return det, flags
    flags[frames] = best_labelling(det.image[frames, :, :2], det.world[frames])
    return (relabel(det, flags) if flags.any() else det), flags


def step_costs(image: np.ndarray, world: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Motion between frames `lag` apart with the labels kept (same) and with one of the two relabelled (cross).

    image: (N, 33, 2) pixels; world: (N, 33, 3) metres, hip-centred. Returns two (N-lag,) arrays: the mean
    displacement of the paired (left_*/right_*) landmarks, in body sizes (the clip's median shoulder-to-hip
    distance), image plus world. Relabelling both frames costs `same` again, so these two say everything.
    """
    mirror = rigs.landmark_mirror()
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
