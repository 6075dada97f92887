"""The default lifter: MediaPipe's own world landmarks, placed in the scene by a pinhole camera.

MediaPipe's world landmarks are metric but hip-centred, so the body would run on the spot. The root trajectory
comes from the 2D track: per frame, the translation T = (x, y, depth) that makes the world landmarks, moved by T,
project onto the image landmarks through a pinhole camera (a linear least-squares fit over all visible landmarks,
weighted by visibility; the apparent body size against the metric size fixes the depth).

Assumptions (the video carries no calibration):
- the camera does not move, looks along -Z, has square pixels, its principal point at the image centre, no lens
  distortion, and a focal length equal to a 26 mm lens on 35 mm film across the image's long side (a phone's main
  camera or a webcam; CameraModel.focal_35mm changes it);
- MediaPipe's body size is right (its world landmarks are scaled to an average adult), so depth errors scale with
  how far the person is from average height;
- each person crop is seen along its own viewing ray: the world landmarks are turned from that ray onto the
  camera's axis (a few degrees off-centre, up to ~30° at the image edge);
- depth is the noisiest part and is low-passed harder (depth_cutoff_hz) than the sideways motion (xy_cutoff_hz);
  the image position is then fitted again at the smoothed depth, so the hips stay on their 2D track.
The camera sits at the origin: the person stands at Z = -depth. core.ik puts the feet on the floor later.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from core.detections import Detections
from core.filters import fill_gaps, smooth
from core.lift import Lifted

FILM_LONG_SIDE_MM = 36.0
RAY_ITERATIONS = 4


@dataclass(frozen=True)
class CameraModel:
    """The assumed camera and trajectory smoothing (see the module docstring)."""

    focal_35mm: float = 26.0
    min_visibility: float = 0.5
    xy_cutoff_hz: float = 4.0
    depth_cutoff_hz: float = 1.0
    use_ray_rotation: bool = True

    def focal_px(self, width: int, height: int) -> float:
        return max(width, height) * self.focal_35mm / FILM_LONG_SIDE_MM


def _fit_translation(world: np.ndarray, pixels: np.ndarray, weight: np.ndarray, f: float,
                     centre: np.ndarray) -> np.ndarray:
    """(F, 3) T = (x, y, depth) per frame, least squares over landmarks; NaN where fewer than 3 are usable.

    world: (F, K, 3) metres, hip-centred, Mimic axes; pixels: (F, K, 2); weight: (F, K) >= 0.
    Projection of a point P + (x, y, -depth): u = cx + f·(Px + x) / (depth - Pz), v = cy - f·(Py + y) / (depth - Pz),
    which is linear in (x, y, depth) once multiplied out.
    """
    du, dv = pixels[..., 0] - centre[0], pixels[..., 1] - centre[1]
    px, py, pz = world[..., 0], world[..., 1], world[..., 2]
    ok = np.isfinite(du) & np.isfinite(dv) & np.all(np.isfinite(world), axis=-1) & (weight > 0)
    w = np.where(ok, weight, 0.0)
    du, dv, px, py, pz = (np.where(ok, a, 0.0) for a in (du, dv, px, py, pz))
    zeros = np.zeros_like(du)
    # rows: f·x - du·depth = -du·Pz - f·Px ;  f·y + dv·depth = dv·Pz - f·Py
    a = np.concatenate([np.stack([np.full_like(du, f), zeros, -du], -1),
                        np.stack([zeros, np.full_like(du, f), dv], -1)], axis=1)
    b = np.concatenate([-du * pz - f * px, dv * pz - f * py], axis=1)
    ww = np.concatenate([w, w], axis=1)
    ata = np.einsum("fki,fk,fkj->fij", a, ww, a)
    atb = np.einsum("fki,fk,fk->fi", a, ww, b)
    usable = np.sum(ok, axis=1) >= 3
    out = np.full((world.shape[0], 3), np.nan)
    if np.any(usable):
        out[usable] = np.linalg.solve(ata[usable], atb[usable][..., None])[..., 0]
    return out


def _fit_xy(world: np.ndarray, pixels: np.ndarray, weight: np.ndarray, f: float, centre: np.ndarray,
            depth: np.ndarray) -> np.ndarray:
    """(F, 2) the sideways translation at a given depth (F,): weighted mean of the per-landmark solutions."""
    du, dv = pixels[..., 0] - centre[0], pixels[..., 1] - centre[1]
    dist = depth[:, None] - world[..., 2]
    x = du * dist / f - world[..., 0]
    y = -dv * dist / f - world[..., 1]
    ok = np.isfinite(x) & np.isfinite(y) & (weight > 0)
    w = np.where(ok, weight, 0.0)
    total = np.sum(w, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        xy = np.stack([np.sum(w * np.where(ok, x, 0.0), 1), np.sum(w * np.where(ok, y, 0.0), 1)], -1) / total[:, None]
    return np.where((total > 0)[:, None], xy, np.nan)


def _ray_rotation(xy: np.ndarray, depth: np.ndarray) -> Rotation:
    """Rotations turning the camera axis (-Z) onto the viewing ray through (x, y, -depth), (F,)."""
    ray = np.stack([xy[:, 0], xy[:, 1], -depth], axis=-1)
    ray = ray / np.linalg.norm(ray, axis=-1, keepdims=True)
    axis = np.cross([0.0, 0.0, -1.0], ray)
    angle = np.arctan2(np.linalg.norm(axis, axis=-1), -ray[:, 2])
    with np.errstate(invalid="ignore", divide="ignore"):
        axis = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
    return Rotation.from_rotvec(np.nan_to_num(axis * angle[:, None]))


class MediaPipeWorldLifter:
    """Lifter "mediapipe": MediaPipe world landmarks plus a root trajectory from the 2D track."""

    name = "mediapipe"

    def __init__(self, camera: CameraModel = CameraModel()) -> None:
        self.camera = camera

    def lift(self, detections: Detections) -> Lifted:
        """Detections -> Lifted keypoints (F, 33, 3) metres in camera-centred Mimic axes, root trajectory included."""
        det, cam = detections, self.camera
        world = np.asarray(det.world, dtype=np.float64)
        image = np.asarray(det.image, dtype=np.float64)
        present = np.asarray(det.present, dtype=bool)
        visibility = np.where(present[:, None], np.nan_to_num(image[..., 2]), 0.0)
        weight = np.where(visibility >= cam.min_visibility, visibility, 0.0)
        f = cam.focal_px(det.width, det.height)
        centre = np.array([det.width / 2.0, det.height / 2.0])
        fps = float(det.fps)

        seen = world
        raw = _fit_translation(world, image[..., :2], weight, f, centre)
        for _ in range(RAY_ITERATIONS if cam.use_ray_rotation else 0):
            # The ray depends on where the body is, which depends on how the body is turned: a few rounds settle it.
            turn = _ray_rotation(np.nan_to_num(raw[:, :2]), np.where(np.isfinite(raw[:, 2]), raw[:, 2], 1.0))
            world = np.where(np.isfinite(seen), _rows(seen, turn), np.nan)
            raw = _fit_translation(world, image[..., :2], weight, f, centre)

        good = np.isfinite(raw).all(axis=1) & (raw[:, 2] > 0)
        depth_track, _ = fill_gaps(raw[:, None, 2:], good[:, None], fps, max_gap_s=(len(raw) + 1) / fps)
        depth = smooth(depth_track[:, 0, 0], fps, cam.depth_cutoff_hz)
        xy = _fit_xy(world, image[..., :2], weight, f, centre, depth)
        xy_ok = np.isfinite(xy).all(axis=1) & good
        xy, _ = fill_gaps(xy[:, None], xy_ok[:, None], fps, max_gap_s=(len(xy) + 1) / fps)
        xy = smooth(xy[:, 0], fps, cam.xy_cutoff_hz)
        root = np.concatenate([xy, -depth[:, None]], axis=1)

        keypoints = world + root[:, None, :]
        keypoints[~present] = np.nan
        confidence = np.where(np.all(np.isfinite(keypoints), axis=-1), visibility, 0.0)
        info = {"camera": asdict(cam), "focal_px": f, "depth_m_median": float(np.nanmedian(depth)) if good.any() else None,
                "frames_without_fit": int(np.sum(~good))}
        return Lifted(keypoints=keypoints, confidence=confidence, lifter=self.name, info=info)


def _rows(world: np.ndarray, turn: Rotation) -> np.ndarray:
    """Rotate each frame's landmarks (F, K, 3) by that frame's rotation (F,)."""
    frames, k = world.shape[:2]
    q = np.repeat(turn.as_quat(), k, axis=0)
    return Rotation.from_quat(q).apply(np.nan_to_num(world).reshape(-1, 3)).reshape(frames, k, 3)
