"""Input normalisation and left/right flipping for the learned lifter, shared by training and inference.

Per keypoint and frame the lifter reads INPUT_CHANNELS values: u, v (screen coordinates as VideoPose3D's
normalize_screen_coordinates: x maps to [-1, 1] across the width and y keeps the aspect ratio, v = y / w * 2 - h / w,
so portrait and landscape frames use the same scale), the detector's visibility, and MediaPipe's own per-frame 3D
guess (its world landmarks relative to the mid-hip, metres, Mimic axes) with a flag saying it is there. A missing
keypoint has zero u, v, visibility; a frame without the 3D guess has zeros in those four channels.
"""

from __future__ import annotations

import numpy as np

from core.lift.layout import Layout


def normalize_screen(xy: np.ndarray, width: int, height: int) -> np.ndarray:
    """(..., 2) pixels (x right, y down) → (..., 2) normalised: u in [-1, 1], v in [-h/w, h/w], both down/right."""
    return np.asarray(xy, dtype=np.float64) / width * 2.0 - np.array([1.0, height / width])


INPUT_CHANNELS = 7  # u, v, visibility, hint x, y, z, hint present
HINT = slice(3, 7)


def detections_to_inputs(image: np.ndarray, world: np.ndarray | None, width: int, height: int,
                         layout: Layout) -> np.ndarray:
    """MediaPipe image landmarks (F, 33, 3: x, y pixels, visibility) and world landmarks (F, 33, 3 metres, Mimic
    axes, or None) → lifter inputs (F, K, INPUT_CHANNELS) float32. Keypoints with NaN coordinates get zero u, v,
    visibility, the same as joints dropped in training; frames whose world landmarks are not all finite get no hint."""
    sel = np.asarray(image, dtype=np.float64)[:, layout.mediapipe_index]
    uv = normalize_screen(sel[..., :2], width, height)
    vis = np.clip(np.nan_to_num(sel[..., 2], nan=0.0), 0.0, 1.0)
    missing = ~np.all(np.isfinite(uv), axis=-1)
    out = np.zeros(sel.shape[:2] + (INPUT_CHANNELS,))
    out[..., :2], out[..., 2] = uv, vis
    out[missing, :3] = 0.0
    if world is not None:
        w = np.asarray(world, dtype=np.float64)[:, layout.mediapipe_index]
        w = w - w[:, list(layout.hips)].mean(axis=1, keepdims=True)
        ok = np.all(np.isfinite(w), axis=(1, 2)) & np.any(vis > 0, axis=1)
        out[ok, :, HINT.start:HINT.stop - 1] = w[ok]
        out[ok, :, HINT.stop - 1] = 1.0
    return out.astype(np.float32)


def flip_inputs(x: np.ndarray, layout: Layout) -> np.ndarray:
    """Mirror lifter inputs (..., K, INPUT_CHANNELS) about the image's vertical centre line (u and the hint's x) and
    swap left/right keypoints."""
    out = np.array(x[..., layout.flip, :], copy=True)
    out[..., [0, HINT.start]] *= -1.0
    return out


def flip_pose(pose: np.ndarray, layout: Layout | None) -> np.ndarray:
    """Mirror 3D points (..., K, 3) (or a trajectory (..., 3) when layout is None) across the X = 0 plane."""
    out = np.array(pose if layout is None else pose[..., layout.flip, :], copy=True)
    out[..., 0] *= -1.0
    return out
