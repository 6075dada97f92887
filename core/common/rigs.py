"""Rig data from the `rigs/` folder (JSON), read once, and MediaPipe Pose's landmark names."""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BadRigData
from .mirror import mirror_index

RIGS_DIR = Path(__file__).resolve().parent.parent.parent / "rigs"


@lru_cache(maxsize=None)
def _read(relative: str) -> Any:
    path = RIGS_DIR / relative
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadRigData(f"Mimic's rig data {path} is missing or damaged ({exc}).", "Reinstall Mimic.") from exc
    if not isinstance(data, dict):
        raise BadRigData(f"Mimic's rig data {path} is not a JSON object.", "Reinstall Mimic.")
    return data


def load(name: str) -> Any:
    """rigs/<name>.json parsed (a fresh copy: callers may change it). `name` may hold a folder: conventions/unity."""
    return copy.deepcopy(_read(f"{name}.json"))


@lru_cache(maxsize=1)
def landmark_names() -> tuple[str, ...]:
    """MediaPipe Pose's landmark names in index order (rigs/mediapipe_pose.json)."""
    names = _read("mediapipe_pose.json").get("landmarks")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise BadRigData(f"{RIGS_DIR / 'mediapipe_pose.json'} has no list of landmark names.", "Reinstall Mimic.")
    return tuple(names)


def num_landmarks() -> int:
    """How many landmarks MediaPipe Pose gives per frame (K = 33)."""
    return len(landmark_names())


def landmark_index(name: str) -> int:
    """Index of MediaPipe landmark `name`."""
    return landmark_names().index(name)


def landmark_mirror() -> np.ndarray:
    """(K,) int: each landmark's left/right counterpart."""
    return mirror_index(landmark_names())
