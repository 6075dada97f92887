"""The learned lifter's keypoint layout (rigs/lifter_layout.json) as arrays: which MediaPipe landmarks, their tree,
left/right pairs, and the mocap correspondence used to make training data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from core.common import rigs
from core.common.errors import BadRigData
from core.common.mirror import mirror_index, sides


@dataclass(frozen=True)
class Layout:
    """K lifter keypoints (a subset of MediaPipe's 33).

    names: K landmark names. mediapipe_index: (K,) index of each into the 33 landmarks. flip: (K,) index of each
    keypoint's left/right mirror (itself on the midline). parents: (K,) parent keypoint, or -1 = the pelvis (mid-hip)
    and -2 = the neck (mid-shoulder) virtual nodes. left/right: keypoint indices per side. bones: (B, 2) pairs used
    for bone-length metrics. mocap: the raw correspondence data (see training/mocap.py).
    """

    names: tuple[str, ...]
    mediapipe_index: np.ndarray
    flip: np.ndarray
    parents: np.ndarray
    left: np.ndarray
    right: np.ndarray
    hips: tuple[int, int]
    shoulders: tuple[int, int]
    bones: np.ndarray
    mocap: dict[str, Any]

    @property
    def num_keypoints(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)


PELVIS, NECK = -1, -2


@lru_cache(maxsize=1)
def lifter_layout() -> Layout:
    """The layout the shipped lifter was trained with (rigs/lifter_layout.json)."""
    try:
        return _lifter_layout_unchecked()
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise BadRigData(f"Mimic's rig data {rigs.RIGS_DIR / 'lifter_layout.json'} is malformed ({exc}).",
                         "Reinstall Mimic.") from exc


def _lifter_layout_unchecked() -> Layout:
    """The parse itself; the caller turns malformed data into BadRigData."""
    data = rigs.load("lifter_layout")
    names = tuple(data["landmarks"])
    virtual = {"pelvis": PELVIS, "neck": NECK}
    left, right = sides(names)

    parents = np.array([virtual.get(data["parents"][n], None) if data["parents"][n] in virtual
                        else names.index(data["parents"][n]) for n in names], dtype=np.int64)
    return Layout(
        names=names,
        mediapipe_index=np.array([rigs.landmark_index(n) for n in names], dtype=np.int64),
        flip=mirror_index(names),
        parents=parents,
        left=left,
        right=right,
        hips=(names.index("left_hip"), names.index("right_hip")),
        shoulders=(names.index("left_shoulder"), names.index("right_shoulder")),
        bones=np.array([[names.index(a), names.index(b)] for a, b in data["bones"]], dtype=np.int64),
        mocap=data["mocap"],
    )
