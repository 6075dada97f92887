"""The One-Euro filter (Casiez, Roussel & Vogel, CHI 2012): causal, speed-adaptive low-pass for live streams.

Slow motion is smoothed hard (cutoff near min_cutoff_hz, little jitter); fast motion raises the cutoff by
beta × speed, so it lags little. It needs no future samples, unlike core.filters.smooth (zero-phase, whole clip).
Vectorised over any array shape: every element is filtered on its own (as MediaPipe's own filter does).
"""

from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff_hz: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Smoothing factor of a first-order low-pass with this cutoff for one step of dt seconds."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz))
    return 1.0 / (1.0 + tau / dt)


class OneEuro:
    """One-Euro filter state for an array of values (any shape, any units u).

    min_cutoff_hz: the cutoff of a still signal (lower = smoother, more lag at low speed). beta: s/u, how much the
    cutoff rises per unit of speed (higher = less lag when moving). d_cutoff_hz: the cutoff of the speed estimate.
    Each may be a scalar or an array broadcasting to the values' shape (e.g. a lower cutoff for depth).
    reset_after_s: a gap longer than this between samples restarts the filter from the new sample.
    """

    def __init__(self, min_cutoff_hz: float | np.ndarray = 1.0, beta: float | np.ndarray = 0.0,
                 d_cutoff_hz: float | np.ndarray = 1.0, reset_after_s: float = 0.5) -> None:
        self.min_cutoff_hz = np.asarray(min_cutoff_hz, dtype=np.float64)
        self.beta = np.asarray(beta, dtype=np.float64)
        self.d_cutoff_hz = np.asarray(d_cutoff_hz, dtype=np.float64)
        self.reset_after_s = reset_after_s
        self._x: np.ndarray | None = None  # last filtered value
        self._dx: np.ndarray | None = None  # last filtered speed, u/s
        self._t = -math.inf

    def reset(self) -> None:
        """Forget the past: the next sample passes unchanged."""
        self._x, self._dx, self._t = None, None, -math.inf

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """The filtered value of sample x (shape as the first sample) taken at time t seconds (increasing).

        NaN elements of x (not observed) keep their last filtered value; elements never observed stay NaN.
        """
        x = np.asarray(x, dtype=np.float64)
        dt = t - self._t
        if self._x is None or self._x.shape != x.shape or dt > self.reset_after_s:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        if dt <= 0:  # a repeated timestamp: nothing to filter over
            return self._x.copy()
        seen = np.isfinite(x)
        prev = self._x
        fresh = seen & ~np.isfinite(prev)  # observed for the first time: start from it
        with np.errstate(invalid="ignore"):
            dx = np.where(seen & ~fresh, (x - prev) / dt, 0.0)
        a_d = _alpha(self.d_cutoff_hz, dt)
        dx_hat = self._dx + a_d * (dx - self._dx)
        a = _alpha(self.min_cutoff_hz + self.beta * np.abs(dx_hat), dt)
        out = np.where(fresh, x, np.where(seen, prev + a * (x - prev), prev))
        self._x, self._dx, self._t = out, np.where(seen, dx_hat, self._dx), t
        return out.copy()
