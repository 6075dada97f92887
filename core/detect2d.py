"""2D keypoints per frame with MediaPipe Pose, cached on disk by video content and settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Detections:
    """MediaPipe Pose results for one clip (F frames, 33 landmarks in MediaPipe's order).

    times: (F,) seconds from the clip's start. image: (F, 33, 3) x, y in pixels (NaN where no person) and
    visibility 0..1. world: (F, 33, 3) MediaPipe world landmarks in Mimic axes (X = x, Y = -y, Z = -z), metres,
    hip-centred. present: (F,) bool, a person was found. width, height: frame size in pixels after rotation.
    fps: the clip's (constant, output) frame rate. info: video and settings the detections came from.
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
