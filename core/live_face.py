"""Facial expressions frame by frame for live streams: core.face's weights, computed causally.

The clip solve (core.face.solve_face) reads each measure against a neutral face taken from the whole clip and
low-passes with zero phase; neither is possible live. Here the neutral (core.face.neutral_of) is the statistics of
the last `window_s` seconds of face, refreshed every `refresh_s` (so the first second calibrates: a face that
starts with closed eyes reads as open until it has opened them), the blink hysteresis keeps its state from frame
to frame, and every channel but the blinks goes through a One-Euro filter (core/one_euro.py) instead of the
clip's zero-phase low-pass. Frames without a face give no weights (None), and the face is forgotten after
`forget_s` without one (another person may sit down).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from core import face
from core.common.hands import expression_names
from core.one_euro import OneEuro


@dataclass(frozen=True)
class LiveFaceSettings:
    """window_s: how much recent face the neutral is taken from; refresh_s: how often it is recomputed. min_cutoff_hz,
    beta (per unit of weight per second), d_cutoff_hz: the One-Euro filter of the soft channels. forget_s: a face
    absent this long is calibrated afresh."""

    window_s: float = 10.0
    refresh_s: float = 0.5
    min_cutoff_hz: float = 3.0
    beta: float = 1.0
    d_cutoff_hz: float = 1.0
    forget_s: float = 2.0


class LiveFace:
    """Expression weights of one face, one frame at a time (step)."""

    def __init__(self, settings: LiveFaceSettings = LiveFaceSettings()) -> None:
        self.settings = settings
        self.names = expression_names()
        self.soft = face.soft_channels()
        self.reset()

    def reset(self) -> None:
        """Forget the face: calibration, blink state and filter start again."""
        s = self.settings
        self._recent: deque[tuple[float, dict[str, np.ndarray]]] = deque()
        self._neutral: face.FaceNeutral | None = None
        self._neutral_at = -np.inf
        self._closed = np.zeros(2, dtype=bool)
        self._filter = OneEuro(s.min_cutoff_hz, s.beta, s.d_cutoff_hz, reset_after_s=s.forget_s)
        self._last_seen = -np.inf

    def step(self, face_image: np.ndarray | None, time_s: float) -> np.ndarray | None:
        """(E,) weights 0..1 in expression_names() order for one frame's Face Mesh landmarks face_image (478, 3)
        pixels (z like x), or None when the frame has no face (face_image None or not finite)."""
        if face_image is None or not np.all(np.isfinite(face_image)):
            return None
        points = np.asarray(face_image, dtype=np.float64)[None]
        rot, scale, t, _ = face.fit_head(points, np.ones(1, dtype=bool))
        if not np.isfinite(scale[0]) or scale[0] <= 0:
            return None
        if time_s - self._last_seen > self.settings.forget_s:
            self.reset()
        self._last_seen = time_s
        m = face.measures(face.normalise(points, rot, scale, t))
        self._remember(m, time_s)
        neutral = self._neutral
        assert neutral is not None
        closure = face.eye_closure(m, neutral)[0]
        self._closed = np.where(closure >= face.BLINK_ENTER, True, np.where(closure <= face.BLINK_EXIT, False,
                                                                            self._closed))
        w = face.weights(m, neutral, closure[None], self._closed[None])[0]
        w[self.soft] = self._filter(w[self.soft], time_s)
        return np.clip(np.nan_to_num(w), 0.0, 1.0)

    def _remember(self, m: dict[str, np.ndarray], time_s: float) -> None:
        """Add a frame's measures to the window and recompute the neutral when it is due."""
        s = self.settings
        self._recent.append((time_s, m))
        while self._recent and self._recent[0][0] < time_s - s.window_s:
            self._recent.popleft()
        if self._neutral is None or time_s - self._neutral_at >= s.refresh_s:
            stacked = {k: np.concatenate([frame[k] for _, frame in self._recent]) for k in m}
            self._neutral = face.neutral_of(stacked, np.ones(len(self._recent), dtype=bool))
            self._neutral_at = time_s
