"""core.filters on synthetic signals whose right answer is known: gap filling, smoothing, resampling."""

from __future__ import annotations

import numpy as np
import pytest

from core.filters import Gap, fill_gaps, resample, smooth

FPS = 30.0


def linear_tracks(frames: int = 120, keypoints: int = 4, seed: int = 0) -> np.ndarray:
    """(F, K, 3) straight-line motion, different per keypoint and axis."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None, None] / FPS
    return rng.normal(size=(1, keypoints, 3)) + rng.normal(size=(1, keypoints, 3)) * t


def amplitude(x: np.ndarray, hz: float, fps: float) -> float:
    """Amplitude of the `hz` sinusoid in x (F,) by projection onto sine and cosine (whole periods)."""
    t = np.arange(len(x)) / fps
    return float(np.hypot(2 * np.mean(x * np.sin(2 * np.pi * hz * t)), 2 * np.mean(x * np.cos(2 * np.pi * hz * t))))


def test_short_gaps_are_interpolated_exactly_on_linear_motion() -> None:
    truth = linear_tracks()
    valid = np.ones(truth.shape[:2], dtype=bool)
    valid[10:25, 0] = False  # 15 frames = 0.5 s: the longest gap that is still filled
    valid[40:42, 1] = False
    valid[[5, 7, 9], 2] = False
    x = truth.copy()
    x[~valid] = np.nan
    filled, gaps = fill_gaps(x, valid, FPS, max_gap_s=0.5)
    assert gaps == []
    np.testing.assert_allclose(filled, truth, atol=1e-12)


def test_long_gaps_hold_the_last_value_and_are_reported() -> None:
    truth = linear_tracks()
    valid = np.ones(truth.shape[:2], dtype=bool)
    valid[30:61, 1] = False   # 31 frames > 15: held, reported
    valid[:20, 2] = False     # leading gap, longer than the limit: holds the first valid value, reported
    valid[:5, 3] = False      # short leading gap: held, not reported
    valid[110:, 0] = False    # short trailing gap: held, not reported
    filled, gaps = fill_gaps(np.where(valid[..., None], truth, 1e6), valid, FPS, max_gap_s=0.5)
    assert gaps == [Gap(1, 30, 60), Gap(2, 0, 19)]
    assert gaps[0].keypoint == 1 and gaps[0][1] == 30 and gaps[0].end == 60
    np.testing.assert_array_equal(filled[30:61, 1], np.broadcast_to(truth[29, 1], (31, 3)))
    np.testing.assert_array_equal(filled[:20, 2], np.broadcast_to(truth[20, 2], (20, 3)))
    np.testing.assert_array_equal(filled[:5, 3], np.broadcast_to(truth[5, 3], (5, 3)))
    np.testing.assert_array_equal(filled[110:, 0], np.broadcast_to(truth[109, 0], (10, 3)))
    np.testing.assert_array_equal(filled[valid], truth[valid])


def test_a_keypoint_never_seen_stays_nan_and_is_one_gap() -> None:
    truth = linear_tracks(frames=50)
    valid = np.ones(truth.shape[:2], dtype=bool)
    valid[:, 3] = False
    filled, gaps = fill_gaps(truth, valid, FPS)
    assert gaps == [Gap(3, 0, 49)]
    assert np.all(np.isnan(filled[:, 3]))
    assert np.all(np.isfinite(filled[:, :3]))


def test_non_finite_samples_count_as_missing() -> None:
    truth = linear_tracks(frames=40)
    x = truth.copy()
    x[12, 0, 1] = np.nan
    filled, gaps = fill_gaps(x, np.ones(x.shape[:2], dtype=bool), FPS)
    assert gaps == []
    np.testing.assert_allclose(filled, truth, atol=1e-12)


def test_smoothing_removes_high_frequencies_and_keeps_low_ones() -> None:
    fps, seconds = 60.0, 4.0
    t = np.arange(int(fps * seconds)) / fps
    low, high = np.sin(2 * np.pi * 1.0 * t), 0.5 * np.sin(2 * np.pi * 15.0 * t)
    out = smooth((low + high)[:, None, None], fps, cutoff_hz=6.0)[:, 0, 0]
    inner = slice(30, -30)  # away from the padded ends
    kept = amplitude(out[inner], 1.0, fps) / amplitude(low[inner], 1.0, fps)
    left = amplitude(out[inner], 15.0, fps) / amplitude(high[inner], 15.0, fps)
    assert kept == pytest.approx(1.0, abs=0.01)
    assert left < 0.01  # 4th-order Butterworth run twice: |H(15 Hz)|² ≈ 1/(1 + 2.5⁸) ≈ 0.0007


def test_smoothing_has_no_lag() -> None:
    fps = 60.0
    t = np.arange(240) / fps
    pulse = np.exp(-0.5 * ((t - 2.0) / 0.15) ** 2)
    sine = np.sin(2 * np.pi * 1.5 * t)
    out = smooth(np.stack([pulse, sine], axis=1), fps, cutoff_hz=4.0)
    assert np.argmax(out[:, 0]) == np.argmax(pulse)
    inner = slice(40, -40)
    # A zero-phase filter keeps the sine's phase: it only scales it.
    scale = np.dot(out[inner, 1], sine[inner]) / np.dot(sine[inner], sine[inner])
    np.testing.assert_allclose(out[inner, 1], scale * sine[inner], atol=2e-3)


@pytest.mark.parametrize("cutoff", [0, 0.0, None])
def test_zero_cutoff_is_a_no_op(cutoff: float | None) -> None:
    x = np.random.default_rng(1).normal(size=(50, 33, 3))
    out = smooth(x, FPS, cutoff)
    np.testing.assert_array_equal(out, x)
    assert out is not x


def test_smoothing_short_clips_and_nan_columns() -> None:
    rng = np.random.default_rng(2)
    for frames in (1, 2, 3, 7, 16):
        x = rng.normal(size=(frames, 5, 3))
        x[:, 4] = np.nan
        out = smooth(x, FPS, 6.0)
        assert out.shape == x.shape
        assert np.all(np.isfinite(out[:, :4]))
        assert np.all(np.isnan(out[:, 4]))
    line = np.linspace(0.0, 1.0, 9)[:, None]
    np.testing.assert_allclose(smooth(line, FPS, 3.0), line, atol=1e-9)  # odd padding keeps straight lines


def test_resample_variable_rate_onto_a_constant_grid() -> None:
    rng = np.random.default_rng(3)
    fps = 30.0
    times = np.cumsum(rng.uniform(0.5, 1.5, 90) / fps) + 0.25
    values = np.stack([2.0 * times - 1.0, -times], axis=1)[:, :, None] * np.ones(3)
    shuffled = rng.permutation(len(times))
    grid, out = resample(times[shuffled], values[shuffled], fps)
    assert grid[0] == times[0]
    np.testing.assert_allclose(np.diff(grid), 1.0 / fps, atol=1e-12)
    assert times[-1] - 1.0 / fps < grid[-1] <= times[-1] + 1e-9
    np.testing.assert_allclose(out, np.stack([2.0 * grid - 1.0, -grid], axis=1)[:, :, None] * np.ones(3), atol=1e-12)


def test_resample_booleans_take_the_nearest_sample() -> None:
    times = np.array([0.0, 0.1, 0.35, 0.4])
    flags = np.array([True, False, True, False])
    grid, out = resample(times, flags, 10.0)
    np.testing.assert_allclose(grid, [0.0, 0.1, 0.2, 0.3, 0.4])
    np.testing.assert_array_equal(out, [True, False, False, True, False])
    assert out.dtype == bool


def test_resample_keeps_a_valid_sample_next_to_a_missing_one() -> None:
    """Variable frame rate with a dropout: grid points that sit on (or nearest to) a valid sample stay valid."""
    times = np.array([0.0, 1.0, 2.0, 2.5, 4.0]) / 30
    x = np.array([[0.0], [1.0], [2.0], [np.nan], [4.0]])
    grid, y = resample(times, x, 30.0)
    assert np.allclose(grid * 30, [0, 1, 2, 3, 4])
    assert np.allclose(y[[0, 1, 2, 4], 0], [0, 1, 2, 4])
    assert np.isnan(y[3, 0])
