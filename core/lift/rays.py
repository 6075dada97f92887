"""Make lifted 3D agree with the 2D detections: each confidently seen keypoint is moved onto its viewing ray.

A lifter is best at depth, the one thing the image does not show; the detector is best at where a landmark is in the
image (a few pixels, i.e. millimetres to a centimetre at the subject, against centimetres for any monocular 3D). So
the lifted depth is kept and the sideways position is taken from the 2D track, low-passed first so that the
detector's frame-to-frame jitter is not carried into the pose. The camera's focal length is not known: it is the one
that best projects the lifted points onto the detections over the whole clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.filters import fill_gaps, smooth


@dataclass(frozen=True)
class RaySettings:
    """min_visibility: keypoints seen at least this well are moved (core.lift.mediapipe_world uses the same 0.5).
    cutoff_hz: low-pass of the 2D track before it is used (the pipeline's default smoothing). max_gap_s: dropouts up
    to this long are bridged before filtering."""

    min_visibility: float = 0.5
    cutoff_hz: float = 6.0
    max_gap_s: float = 0.5


def fit_focal(points: np.ndarray, uv: np.ndarray, use: np.ndarray) -> float:
    """The focal length (in uv's units) projecting `points` (F, K, 3) camera axes (X right, Y up, Z towards the
    camera, metres) best onto `uv` (F, K, 2) (right, down, origin at the image centre), least squares over `use`
    (F, K); NaN when nothing is usable."""
    depth = -points[..., 2]
    q = np.stack([points[..., 0], -points[..., 1]], axis=-1) / np.where(depth > 0, depth, np.nan)[..., None]
    ok = use & np.all(np.isfinite(q), axis=-1) & np.all(np.isfinite(uv), axis=-1)
    if not np.any(ok):
        return float("nan")
    return float(np.sum(q[ok] * uv[ok]) / np.sum(q[ok] * q[ok]))


def snap_to_rays(points: np.ndarray, uv: np.ndarray, visibility: np.ndarray, fps: float,
                 settings: RaySettings = RaySettings()) -> np.ndarray:
    """points (F, K, 3) metres in camera axes (depth along -Z) → (F, K, 3): keypoints with visibility (F, K) at
    least settings.min_visibility keep their depth and move onto the ray through their low-passed 2D position uv
    (F, K, 2), normalised screen units with the origin at the image centre (core.lift.normalize). Others, and whole
    clips where no focal length can be fitted, are returned as they are."""
    points = np.asarray(points, dtype=np.float64)
    seen = (np.asarray(visibility) >= settings.min_visibility) & np.all(np.isfinite(uv), axis=-1)
    seen &= np.all(np.isfinite(points), axis=-1) & (points[..., 2] < 0)
    f = fit_focal(points, uv, seen)
    if not np.isfinite(f) or f <= 0:
        return points.copy()
    track, _ = fill_gaps(np.where(seen[..., None], uv, np.nan), seen, fps, settings.max_gap_s)
    track = smooth(track, fps, settings.cutoff_hz)
    use = seen & np.all(np.isfinite(track), axis=-1)
    depth = -points[..., 2]
    out = points.copy()
    out[..., 0] = np.where(use, track[..., 0] * depth / f, points[..., 0])
    out[..., 1] = np.where(use, -track[..., 1] * depth / f, points[..., 1])
    return out
