"""core.lift.rays: lifted keypoints moved onto the viewing rays of their 2D detections, depth kept."""

from __future__ import annotations

import numpy as np
import pytest

from core.lift.rays import RaySettings, fit_focal, snap_to_rays

FPS = 30.0


def scene(frames: int = 60, focal: float = 1.7) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (F, 5, 3) of a slowly moving body 3-4 m in front of the camera and their projections (F, 5, 2)."""
    t = np.arange(frames)[:, None] / FPS
    rng = np.random.default_rng(0)
    offsets = rng.normal(scale=0.3, size=(1, 5, 3))
    centre = np.stack([0.3 * np.sin(t), 0.1 * t, -3.0 - 0.5 * t], axis=-1)
    points = centre + offsets
    uv = focal * np.stack([points[..., 0], -points[..., 1]], axis=-1) / -points[..., 2:]
    return points, uv


def test_focal_length_is_recovered_from_exact_projections() -> None:
    points, uv = scene(focal=1.7)
    assert fit_focal(points, uv, np.ones(uv.shape[:2], dtype=bool)) == pytest.approx(1.7, rel=1e-9)
    assert np.isnan(fit_focal(points, uv, np.zeros(uv.shape[:2], dtype=bool)))


def test_seen_keypoints_move_onto_their_rays_at_their_depth() -> None:
    truth, uv = scene()
    rng = np.random.default_rng(1)
    lifted = truth + rng.normal(scale=0.03, size=truth.shape) * [1.0, 1.0, 0.0]  # sideways errors, right depth
    visibility = np.ones(uv.shape[:2])
    visibility[:, 0] = 0.2
    out = snap_to_rays(lifted, uv, visibility, FPS, RaySettings(cutoff_hz=0.0))
    # The focal length is fitted from the slightly wrong points, so the rays are scaled by a hair.
    assert np.abs(out[:, 1:] - truth[:, 1:]).max() < 0.006
    assert np.abs(out[:, 1:] - truth[:, 1:]).mean() < 0.2 * np.abs(lifted[:, 1:] - truth[:, 1:]).mean()
    np.testing.assert_array_equal(out[:, 0], lifted[:, 0])  # not seen well enough: left where the lifter put it
    np.testing.assert_array_equal(out[..., 2], lifted[..., 2])


def test_detector_jitter_is_low_passed_before_it_reaches_the_pose() -> None:
    truth, uv = scene(frames=90)
    jittery = uv + np.random.default_rng(2).normal(scale=0.004, size=uv.shape)
    visibility = np.ones(uv.shape[:2])
    raw = snap_to_rays(truth, jittery, visibility, FPS, RaySettings(cutoff_hz=0.0))
    filtered = snap_to_rays(truth, jittery, visibility, FPS)
    accel = lambda p: np.abs(np.diff(p, 2, axis=0)).mean()  # noqa: E731
    assert accel(filtered) < 0.2 * accel(raw)
    assert np.abs(filtered - truth).mean() < np.abs(raw - truth).mean()


def test_nothing_seen_or_points_behind_the_camera_are_left_alone() -> None:
    truth, uv = scene()
    np.testing.assert_array_equal(snap_to_rays(truth, uv, np.zeros(uv.shape[:2]), FPS), truth)
    behind = truth * [1.0, 1.0, -1.0]
    np.testing.assert_array_equal(snap_to_rays(behind, uv, np.ones(uv.shape[:2]), FPS), behind)
