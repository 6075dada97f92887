"""Read Mimic motion files (.npz) inside Blender with numpy and json only (Blender's Python has no scipy).

This mirrors `core/motion.py` (the writer); the format is documented in the README under "Motion file".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1


class MotionFileError(Exception):
    """The file is missing, not a motion file, or of a schema this add-on does not read."""


@dataclass
class MotionData:
    """names: J joints; parents: (J,) int, -1 root; offsets: (J, 3) metres, Y up; rotations: (F, J, 4) local,
    w-x-y-z, relative to a world-aligned T-pose rest; root_positions: (F, 3) metres; fps; meta: the JSON metadata."""

    names: list[str]
    parents: np.ndarray
    offsets: np.ndarray
    end_sites: np.ndarray
    rotations: np.ndarray
    root_positions: np.ndarray
    fps: float
    meta: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.rotations.shape[0])


def read_motion(path: str | Path) -> MotionData:
    """Load a motion file; MotionFileError says what is wrong."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta_json"]))
            arrays = {k: np.asarray(data[k]) for k in data.files if k != "meta_json"}
    except FileNotFoundError:
        raise MotionFileError(f"Motion file {path} does not exist.") from None
    except (OSError, ValueError, KeyError) as exc:
        raise MotionFileError(f"{path} is not a Mimic motion file ({exc}).") from exc
    if int(meta.get("schema_version", 0)) != SCHEMA_VERSION:
        raise MotionFileError(f"{path} has motion schema {meta.get('schema_version')}; this add-on reads "
                              f"schema {SCHEMA_VERSION}. Update Mimic so the core and add-on match.")
    sk = meta["skeleton"]
    return MotionData(
        names=list(sk["names"]),
        parents=np.asarray(sk["parents"], dtype=np.int64),
        offsets=np.asarray(sk["offsets"], dtype=np.float64),
        end_sites=np.asarray(sk["end_sites"], dtype=np.float64),
        rotations=arrays.pop("rotations").astype(np.float64),
        root_positions=arrays.pop("root_positions").astype(np.float64),
        fps=float(meta["fps"]),
        meta=meta,
        arrays=arrays,
    )
