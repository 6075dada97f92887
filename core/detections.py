"""The detector's result for one clip, as arrays: what the lifters, the left/right fix and the caches exchange.

Numpy only, so lifters and tools can use it without loading OpenCV or MediaPipe (core/detect2d.py makes it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Detections:
    """MediaPipe Pose results for one clip (F frames, 33 landmarks in MediaPipe's order).

    times: (F,) the frames' real timestamps, seconds from the start of the video file (so a range from start_s
    begins near start_s; uneven steps in variable-frame-rate video). image: (F, 33, 3) x, y in pixels (NaN where
    no person) and visibility 0..1. world: (F, 33, 3) MediaPipe world landmarks in Mimic axes (X = x, Y = -y,
    Z = -z), metres, hip-centred (NaN where no person). present: (F,) bool, a person was found. width, height:
    frame size in pixels after rotation. fps: the clip's (constant, output) frame rate. info: JSON-able video
    (VideoInfo fields), start_s, end_s, person, pose settings, mediapipe version, cache_format, candidates
    (people found when choosing: box x0, y0, x1, y1 pixels, chosen).
    """

    times: np.ndarray
    image: np.ndarray
    world: np.ndarray
    present: np.ndarray
    width: int
    height: int
    fps: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.times.shape[0])
