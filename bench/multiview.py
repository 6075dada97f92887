"""Calibrated multi-camera geometry for benchmarks: Qualisys QCA calibration files, projection, triangulation.

Conventions follow Pose2Sim's QCA converter (Pose2Sim/calibration.py, read_qca and calib_qca_fun, v0.10.49):
focal lengths and principal points are stored in sub-pixel sensor units (divided by 64, the principal point then
shifted by the video field of view's left/top); the transform is the camera's pose in the world, its r_ij
attributes read column by column, translation in mm; Qualisys cameras look along their -Z with Y up, so a turn of
pi about X gives OpenCV's camera frame (Z forward, Y down). Distortion (k1, k2, p1, p2) is divided by 64 as Pose2Sim
does (`distortion_scale`); radialDistortion3 is ignored there too. On Pose2Sim's demo the choice moves
reprojection errors by under 0.1 px (the subject stays near the image centre).
"""

from __future__ import annotations

import itertools
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

QCA_UNITS = 64.0  # sub-pixel sensor units per pixel
TURN_X = np.diag([1.0, -1.0, -1.0])  # rotation by pi about X: Qualisys camera frame -> OpenCV camera frame


@dataclass(frozen=True)
class Camera:
    """One calibrated camera. K: (3, 3) pixels; dist: (4,) OpenCV k1, k2, p1, p2; R: (3, 3) world -> OpenCV camera
    rotation; t: (3,) metres, so x_cam = R @ X_world + t; size: (width, height) pixels of the calibrated field."""

    name: str
    K: np.ndarray
    dist: np.ndarray
    R: np.ndarray
    t: np.ndarray
    size: tuple[int, int]

    @property
    def centre(self) -> np.ndarray:
        """(3,) the camera's position in the world, metres."""
        return -self.R.T @ self.t


def read_qca(path: Path | str, distortion_scale: float = 1.0 / QCA_UNITS) -> list[Camera]:
    """The cameras of a Qualisys .qca.txt calibration, in file order (see the module docstring)."""
    cams = []
    for tag in ET.parse(path).getroot().findall("cameras/camera"):
        fov = tag.find("fov_video")
        intr = tag.find("intrinsic")
        tr = tag.find("transform")
        assert fov is not None and intr is not None and tr is not None
        left, top = float(fov.get("left", 0)), float(fov.get("top", 0))
        size = (int(float(fov.get("right", 0)) - left + 1), int(float(fov.get("bottom", 0)) - top + 1))
        g = lambda k: float(intr.get(k, 0.0))  # noqa: E731
        K = np.array([[g("focalLengthU") / QCA_UNITS, 0.0, g("centerPointU") / QCA_UNITS - left],
                      [0.0, g("focalLengthV") / QCA_UNITS, g("centerPointV") / QCA_UNITS - top],
                      [0.0, 0.0, 1.0]])
        dist = np.array([g("radialDistortion1"), g("radialDistortion2"), g("tangentalDistortion1"),
                         g("tangentalDistortion2")]) * distortion_scale
        m = np.array([[float(tr.get(f"r{i}{j}", 0.0)) for j in (1, 2, 3)] for i in (1, 2, 3)])
        pose_rotation = m.T  # the attributes are stored column by column
        position = np.array([float(tr.get(a, 0.0)) for a in "xyz"]) / 1000.0
        R = TURN_X @ pose_rotation.T
        cams.append(Camera(name=str(tag.get("serial")), K=K, dist=dist, R=R, t=-R @ position, size=size))
    return cams


def project(cam: Camera, points: np.ndarray) -> np.ndarray:
    """points (..., 3) world metres -> (..., 2) distorted pixels (NaN in, NaN out)."""
    flat = points.reshape(-1, 3).astype(np.float64)
    ok = np.all(np.isfinite(flat), axis=1)
    out = np.full((flat.shape[0], 2), np.nan)
    if ok.any():
        rvec = cv2.Rodrigues(cam.R)[0]
        out[ok] = cv2.projectPoints(flat[ok], rvec, cam.t, cam.K, cam.dist)[0][:, 0]
    return out.reshape(points.shape[:-1] + (2,))


def undistort(cam: Camera, pixels: np.ndarray) -> np.ndarray:
    """pixels (..., 2) distorted -> (..., 2) normalised image coordinates (x/z, y/z in the OpenCV camera frame)."""
    flat = pixels.reshape(-1, 2).astype(np.float64)
    ok = np.all(np.isfinite(flat), axis=1)
    out = np.full_like(flat, np.nan)
    if ok.any():
        out[ok] = cv2.undistortPoints(flat[ok][:, None], cam.K, cam.dist)[:, 0]
    return out.reshape(pixels.shape)


def triangulate(cams: list[Camera], pixels: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Linear (DLT) triangulation, vectorised over frames and landmarks.

    pixels: (V, F, K, 2) distorted pixels per view; use: (V, F, K) bool, which views to use. Returns (F, K, 3)
    world metres, NaN where fewer than 2 views are used.
    """
    norm = np.stack([undistort(c, p) for c, p in zip(cams, pixels)])  # (V, F, K, 2)
    P = np.stack([np.hstack([c.R, c.t[:, None]]) for c in cams])  # (V, 3, 4)
    use = use & np.all(np.isfinite(norm), axis=-1)
    x, y = np.nan_to_num(norm[..., 0]), np.nan_to_num(norm[..., 1])
    w = use.astype(np.float64)
    rows_x = (x[..., None] * P[:, None, None, 2] - P[:, None, None, 0]) * w[..., None]  # (V, F, K, 4)
    rows_y = (y[..., None] * P[:, None, None, 2] - P[:, None, None, 1]) * w[..., None]
    A = np.concatenate([rows_x, rows_y], axis=0).transpose(1, 2, 0, 3)  # (F, K, 2V, 4)
    vt = np.linalg.svd(A)[2]
    h = vt[..., -1, :]
    out = h[..., :3] / h[..., 3:]
    out[use.sum(0) < 2] = np.nan
    return out


def triangulate_robust(cams: list[Camera], pixels: np.ndarray, use: np.ndarray, max_px: float,
                       min_views: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """DLT triangulation that drops the worst view while any used view reprojects further than `max_px` pixels and
    more than `min_views` views remain (left/right swaps and misdetections in single views).

    Returns points (F, K, 3) world metres (NaN where untriangulated or still over max_px) and the views used
    (V, F, K) bool.
    """
    use = use.copy()
    for _ in range(len(cams) - min_views + 1):
        pts = triangulate(cams, pixels, use)
        err = reprojection_error(cams, pts, pixels)
        err = np.where(use, err, -np.inf)
        worst = np.argmax(err, axis=0)  # (F, K)
        bad = (np.max(err, axis=0) > max_px) & (use.sum(0) > min_views)
        if not bad.any():
            break
        f, k = np.nonzero(bad)
        use[worst[f, k], f, k] = False
    pts = triangulate(cams, pixels, use)
    over = np.any(use & ~(reprojection_error(cams, pts, pixels) <= max_px), axis=0)
    pts[over] = np.nan
    return pts, use & np.all(np.isfinite(pts), axis=-1)[None]


def reprojection_error(cams: list[Camera], points: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """(V, F, K) pixel distance between the projections of points (F, K, 3) and the observed pixels (V, F, K, 2)."""
    return np.stack([np.linalg.norm(project(c, points) - p, axis=-1) for c, p in zip(cams, pixels)])


def relabel(pixels: np.ndarray, flags: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """pixels (V, F, K, ...) with left and right exchanged (landmark k takes mirror[k]'s value) where flags (V, F)."""
    return np.where(flags.reshape(flags.shape + (1,) * (pixels.ndim - 2)), pixels[:, :, mirror], pixels)


def label_swaps(cams: list[Camera], pixels: np.ndarray, use: np.ndarray, landmarks: list[int],
                mirror: np.ndarray) -> np.ndarray:
    """(V, F) bool: per frame, the views whose left/right labels of `landmarks` should be exchanged so that the
    median reprojection error of the triangulated `landmarks` is smallest (all 2^(V-1) choices are tried).

    pixels (V, F, K, 2), use (V, F, K) as for triangulate; mirror (K,) each landmark's left/right counterpart.
    View 0 is never swapped: exchanging the labels in every view gives the same geometry, so which side is left
    cannot be told from reprojection; the caller decides that (e.g. from the body's handedness).
    """
    views, frames = pixels.shape[:2]
    best_cost = np.full(frames, np.inf)
    best = np.zeros((views, frames), dtype=bool)
    for combo in itertools.product((False, True), repeat=views - 1):
        flags = np.repeat(np.array((False,) + combo)[:, None], frames, axis=1)
        p = relabel(pixels, flags, mirror)[:, :, landmarks]
        u = relabel(use, flags, mirror)[:, :, landmarks]
        err = np.where(u, reprojection_error(cams, triangulate(cams, p, u), p), np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # frames with nothing triangulated: NaN cost
            cost = np.nanmedian(err.transpose(1, 0, 2).reshape(frames, -1), axis=1)
        better = np.nan_to_num(cost, nan=np.inf) < best_cost
        best_cost[better] = cost[better]
        best[:, better] = flags[:, better]
    return best
