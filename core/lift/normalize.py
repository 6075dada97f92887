"""2D input normalisation and left/right flipping for the learned lifter, shared by training and inference.

Screen coordinates follow VideoPose3D's normalize_screen_coordinates: x maps to [-1, 1] across the width and y keeps
the aspect ratio (v = y / w * 2 - h / w), so portrait and landscape frames use the same scale. A third channel
carries the detector's visibility; a missing keypoint is (0, 0, 0).
"""

from __future__ import annotations

import numpy as np
import torch

from core.lift.layout import Layout


def normalize_screen(xy: np.ndarray, width: int, height: int) -> np.ndarray:
    """(..., 2) pixels (x right, y down) → (..., 2) normalised: u in [-1, 1], v in [-h/w, h/w], both down/right."""
    return np.asarray(xy, dtype=np.float64) / width * 2.0 - np.array([1.0, height / width])


def detections_to_inputs(image: np.ndarray, width: int, height: int, layout: Layout) -> np.ndarray:
    """MediaPipe image landmarks (F, 33, 3: x, y pixels, visibility) → lifter inputs (F, K, 3) float32: u, v,
    visibility; keypoints with NaN coordinates become (0, 0, 0), the same as joints dropped in training."""
    sel = np.asarray(image, dtype=np.float64)[:, layout.mediapipe_index]
    uv = normalize_screen(sel[..., :2], width, height)
    vis = np.clip(np.nan_to_num(sel[..., 2], nan=0.0), 0.0, 1.0)
    missing = ~np.all(np.isfinite(uv), axis=-1)
    out = np.concatenate([uv, vis[..., None]], axis=-1)
    out[missing] = 0.0
    return out.astype(np.float32)


def flip_inputs(x: np.ndarray, layout: Layout) -> np.ndarray:
    """Mirror lifter inputs (..., K, 3) about the image's vertical centre line and swap left/right keypoints."""
    out = np.array(x[..., layout.flip, :], copy=True)
    out[..., 0] *= -1.0
    return out


def flip_pose(pose: np.ndarray, layout: Layout | None) -> np.ndarray:
    """Mirror 3D points (..., K, 3) (or a trajectory (..., 3) when layout is None) across the X = 0 plane."""
    out = np.array(pose if layout is None else pose[..., layout.flip, :], copy=True)
    out[..., 0] *= -1.0
    return out



def add_centred(x: torch.Tensor) -> torch.Tensor:
    """(..., K, 3) u, v, visibility → (..., K, 5): adds u, v centred on the visibility-weighted mean keypoint and
    divided by the frame's visibility-weighted RMS spread, so the pose's shape reaches the network free of the
    person's distance and the camera's zoom (the raw u, v still carry position and size for the trajectory)."""
    vis = x[..., 2:3]
    w = vis / (vis.sum(-2, keepdim=True) + 1e-6)
    d = x[..., :2] - (x[..., :2] * w).sum(-2, keepdim=True)
    spread = ((d * d).sum(-1, keepdim=True) * w).sum(-2, keepdim=True).sqrt()
    return torch.cat([x, d * (vis > 0) / (spread + 1e-3)], dim=-1)
