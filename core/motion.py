"""The motion file: Mimic's result and its contract with the Blender add-on (see README, "Motion file").

One `.npz` file (no pickles) holding arrays plus a `meta_json` string with `schema_version`. Readers refuse a
newer major schema than they know.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic import atomic_path
from core.errors import BadMotionFile
from core.skeleton import Skeleton

SCHEMA_VERSION = 1


@dataclass
class Motion:
    """Skeletal motion sampled at a constant frame rate.

    skeleton: joints, parents, rest offsets (metres, T-pose rest). fps: frames per second.
    rotations: (F, J, 4) local joint rotations, w-x-y-z, relative to the rest pose.
    root_positions: (F, 3) world position of the root joint, metres, Y up.
    confidence: (F, J) 0..1 per joint and frame (0 where the joint was filled in, not seen).
    keypoints_2d: (F, K, 3) source image keypoints: x, y in pixels, visibility 0..1 (optional).
    keypoints_3d: (F, K, 3) lifted 3D keypoints, metres, world axes (optional).
    contacts: (F, 2) bool, left and right foot on the ground (optional).
    meta: free JSON-able information: source video, lifter, filter settings, gaps...
    """

    skeleton: Skeleton
    fps: float
    rotations: np.ndarray
    root_positions: np.ndarray
    confidence: np.ndarray | None = None
    keypoints_2d: np.ndarray | None = None
    keypoints_3d: np.ndarray | None = None
    contacts: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.rotations.shape[0])

    def positions(self) -> np.ndarray:
        """(F, J, 3) world joint positions, metres."""
        return self.skeleton.forward_kinematics(self.rotations, self.root_positions)


_ARRAYS = ("rotations", "root_positions", "confidence", "keypoints_2d", "keypoints_3d", "contacts")


def save_motion(motion: Motion, path: Path) -> None:
    """Write `motion` to `path` (.npz) atomically."""
    meta = dict(motion.meta)
    meta.update(schema_version=SCHEMA_VERSION, fps=float(motion.fps), num_frames=motion.num_frames,
                skeleton=motion.skeleton.to_json(), units="m", axes={"up": "+Y", "forward": "+Z", "left": "+X"},
                rotation_format="quaternion_wxyz_local")
    arrays = {k: getattr(motion, k) for k in _ARRAYS if getattr(motion, k) is not None}
    arrays = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in arrays.items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, meta_json=np.array(json.dumps(meta)), **arrays)


def load_motion(path: Path) -> Motion:
    """Read a motion file written by `save_motion`; BadMotionFile says what is wrong."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta_json"]))
            arrays = {k: data[k] for k in _ARRAYS if k in data.files}
    except FileNotFoundError:
        raise BadMotionFile(f"Motion file {path} does not exist.", "Check the path.") from None
    except (OSError, ValueError, KeyError) as exc:
        raise BadMotionFile(f"{path} is not a Mimic motion file ({exc}).", "Re-run the conversion to create it.") from exc
    version = int(meta.get("schema_version", 0))
    if version != SCHEMA_VERSION:
        raise BadMotionFile(f"{path} has motion schema {version}; this Mimic reads schema {SCHEMA_VERSION}.",
                            "Update Mimic (core and add-on) to the same version.")
    skeleton = Skeleton.from_json(meta["skeleton"])
    return Motion(skeleton=skeleton, fps=float(meta["fps"]), meta=meta, **arrays)
