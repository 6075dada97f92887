"""Time-series clean-up for keypoint tracks: gap filling, zero-phase low-pass smoothing, a Schmitt trigger
(hysteresis), constant-rate resampling.

Every function is vectorised over frames (axis 0) and over everything after it (keypoints, xyz).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.signal import butter, sosfiltfilt


class Gap(NamedTuple):
    """A run of frames where keypoint `keypoint` was missing for longer than the fill limit: start..end inclusive."""

    keypoint: int
    start: int
    end: int


def fill_gaps(x: np.ndarray, valid: np.ndarray, fps: float, max_gap_s: float = 0.5) -> tuple[np.ndarray, list[Gap]]:
    """Fill missing samples of keypoint tracks.

    x: (F, K, D) values (e.g. metres or pixels); valid: (F, K) bool. Gaps of at most `max_gap_s` seconds between two
    valid samples are linearly interpolated; longer gaps hold the last valid value (gaps at the clip's start hold the
    first one). Returns the filled copy (F, K, D) and the long gaps, so that the caller can report them. A keypoint
    never valid stays NaN and is reported as one gap over the whole clip.
    """
    x = np.asarray(x, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool) & np.all(np.isfinite(x), axis=-1)
    frames, keypoints = valid.shape
    idx = np.arange(frames)[:, None]
    prev = np.maximum.accumulate(np.where(valid, idx, -1), axis=0)
    nxt = np.minimum.accumulate(np.where(valid, idx, frames)[::-1], axis=0)[::-1]
    has_prev, has_next = prev >= 0, nxt < frames
    max_frames = int(round(max_gap_s * fps))
    run = nxt - prev - 1  # length of the gap a missing sample sits in (prev = -1, nxt = F at the clip's ends)
    interp = ~valid & has_prev & has_next & (run <= max_frames)

    cols = np.arange(keypoints)[None, :]
    x_prev = x[np.clip(prev, 0, frames - 1), cols]
    x_next = x[np.clip(nxt, 0, frames - 1), cols]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = ((idx - prev) / np.maximum(nxt - prev, 1))[..., None]
    held = np.where(has_prev[..., None], x_prev, x_next)
    out = np.where(valid[..., None], x, np.where(interp[..., None], x_prev + t * (x_next - x_prev), held))
    out[~(has_prev | has_next)] = np.nan

    return out, _runs(~valid & (run > max_frames))


def _runs(mask: np.ndarray) -> list[Gap]:
    """Runs of True along axis 0 of a (F, K) mask, as Gaps sorted by keypoint then start."""
    frames, keypoints = mask.shape
    padded = np.zeros((frames + 2, keypoints), dtype=np.int8)
    padded[1:-1] = mask
    edges = np.diff(padded, axis=0)
    starts = np.argwhere(edges.T == 1)
    ends = np.argwhere(edges.T == -1)
    return [Gap(int(k), int(s), int(e) - 1) for (k, s), (_, e) in zip(starts, ends)]


def smooth(x: np.ndarray, fps: float, cutoff_hz: float | None = 6.0, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth low-pass along axis 0 (frames) of `x` (F, ...), any units.

    cutoff 0/None, or at/above Nyquist, returns a copy unchanged. Runs the filter forwards and backwards
    (scipy.signal.sosfiltfilt), so there is no lag; straight-line motion passes unchanged and the padding shrinks
    to fit short clips. Columns holding NaN
    (keypoints never seen) are left as they are rather than spreading NaN.
    """
    x = np.array(x, dtype=np.float64, copy=True)
    nyquist = 0.5 * fps
    if not cutoff_hz or cutoff_hz >= nyquist or x.shape[0] < 2:
        return x
    sos = butter(order, cutoff_hz / nyquist, btype="low", output="sos")
    flat = x.reshape(x.shape[0], -1)
    finite = np.all(np.isfinite(flat), axis=0)
    default_pad = 3 * (2 * len(sos) + 1 - min(int(np.sum(sos[:, 2] == 0)), int(np.sum(sos[:, 5] == 0))))
    padlen = min(default_pad, x.shape[0] - 1)
    if np.any(finite):
        # Filter around the least-squares line: a line passes a low-pass unchanged, so motion that is still under
        # way at the clip's ends is not bent by the start-up of the filter (which matters most on short clips).
        cols = flat[:, finite]
        t = np.arange(x.shape[0], dtype=np.float64) - 0.5 * (x.shape[0] - 1)
        mean, slope = cols.mean(axis=0), (t @ cols) / (t @ t)
        trend = mean + t[:, None] * slope
        flat[:, finite] = sosfiltfilt(sos, cols - trend, axis=0, padlen=padlen) + trend
    return flat.reshape(x.shape)


def hysteresis(c: np.ndarray, enter: float, leave: float) -> np.ndarray:
    """(F, ...) bool, a Schmitt trigger along axis 0: on from where c >= enter until c <= leave (enter > leave), off
    at the start; vectorised over frames."""
    c = np.asarray(c, dtype=np.float64)
    event = np.where(c >= enter, 1, np.where(c <= leave, 0, -1))
    idx = np.arange(len(c)).reshape(-1, *([1] * (c.ndim - 1)))
    last = np.maximum.accumulate(np.where(event >= 0, idx, -1), axis=0)
    state = np.take_along_axis(event, np.maximum(last, 0), axis=0) == 1
    return state & (last >= 0)


def resample(times: np.ndarray, x: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Variable-rate samples -> a constant-rate grid.

    times: (F,) seconds, need not be sorted (duplicates keep the last sample); x: (F, ...) values. Returns the grid
    (N,) = t0 + n / fps up to the last time, and x linearly interpolated onto it (N, ...); boolean x (e.g. validity)
    takes the nearest sample instead.
    """
    times = np.asarray(times, dtype=np.float64)
    x = np.asarray(x)
    order = np.argsort(times, kind="stable")
    times, x = times[order], x[order]
    keep = np.append(np.diff(times) > 0, True)
    times, x = times[keep], x[keep]
    if times.size == 0:
        return times, x
    count = int(np.floor((times[-1] - times[0]) * fps + 1e-6)) + 1
    grid = times[0] + np.arange(count) / fps
    hi = np.clip(np.searchsorted(times, grid, side="right"), 1, max(times.size - 1, 1))
    lo = hi - 1
    if times.size == 1:
        return grid, np.repeat(x, count, axis=0)
    span = times[hi] - times[lo]
    t = np.clip((grid - times[lo]) / span, 0.0, 1.0)
    if x.dtype == bool:
        return grid, np.where((t < 0.5).reshape(-1, *([1] * (x.ndim - 1))), x[lo], x[hi])
    t = t.reshape(-1, *([1] * (x.ndim - 1)))
    # Next to a missing (NaN) sample take the nearest one, so a valid sample on the grid stays valid.
    blend = (1.0 - t) * x[lo] + t * x[hi]
    nearest = np.where(t < 0.5, x[lo], x[hi])
    return grid, np.where(np.isnan(blend), nearest, blend)
