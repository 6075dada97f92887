"""2D → 3D lifting: turns per-frame image keypoints into world-space 3D keypoints with a root trajectory.

Every lifter takes `Detections` and returns `Lifted`; `get_lifter(name)` picks one by name. New lifters register
themselves in `LIFTERS` with a factory (imports stay lazy so that `--lifter mediapipe` never loads torch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from core.detections import Detections


@dataclass
class Lifted:
    """3D keypoints of one clip.

    keypoints: (F, 33, 3) world positions in metres, Mimic axes (Y up, +Z towards the camera), root trajectory
    included; NaN where a keypoint is not estimated. confidence: (F, 33) 0..1. lifter: which lifter made it.
    """

    keypoints: np.ndarray
    confidence: np.ndarray
    lifter: str
    info: dict[str, Any] = field(default_factory=dict)


class Lifter(Protocol):
    name: str

    def lift(self, detections: Detections) -> Lifted: ...


def _mediapipe(weights: Path | None = None) -> Lifter:
    from core.lift.mediapipe_world import MediaPipeWorldLifter

    return MediaPipeWorldLifter()


def _tcn(weights: Path | None = None) -> Lifter:
    from core.lift.tcn import DEFAULT_WEIGHTS, TcnLifter

    return TcnLifter(Path(weights) if weights else DEFAULT_WEIGHTS)


LIFTERS: dict[str, Callable[[Path | None], Lifter]] = {"mediapipe": _mediapipe, "tcn": _tcn}
# The learned lifter is the default: on Pose2Sim's calibrated 4-camera clip (bench/realworld.py) it has 0.94x the
# pose error of MediaPipe's world landmarks and a third of their jitter. "mediapipe" keeps the old path.
DEFAULT_LIFTER = "tcn"


def get_lifter(name: str = DEFAULT_LIFTER, weights: Path | None = None) -> Lifter:
    """The lifter called `name` (see LIFTERS); `weights`: a learned lifter's weights file instead of the shipped one."""
    try:
        factory = LIFTERS[name]
    except KeyError:
        raise ValueError(f"unknown lifter {name!r}; choose one of {sorted(LIFTERS)}") from None
    return factory(weights)
