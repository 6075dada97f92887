"""Skeletons as data (names, parents, rest offsets) and vectorised forward kinematics.

Conventions everywhere in Mimic: metres, Y up, the character faces +Z with its left side at +X; the rest pose is
a T-pose in which every joint frame is aligned to the world, so local rotations are relative to that rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import rigs
from .errors import BadRigData
from . import rotations as quat


@dataclass(frozen=True)
class Skeleton:
    """A joint hierarchy. Parents come before children; the root's parent is -1.

    names: J joint names. parents: (J,) int. offsets: (J, 3) metres, each joint's rest position relative to its
    parent (the root's offset is its rest position). end_sites: (J, 3) metres, the tip of each leaf joint (zeros
    where a joint has none) so that exporters can write BVH `End Site`s.
    """

    names: tuple[str, ...]
    parents: np.ndarray
    offsets: np.ndarray
    end_sites: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        parents = np.asarray(self.parents, dtype=np.int64)
        offsets = np.asarray(self.offsets, dtype=np.float64).reshape(-1, 3)
        ends = np.zeros_like(offsets) if self.end_sites is None else np.asarray(self.end_sites, dtype=np.float64)
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "parents", parents)
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "end_sites", ends.reshape(-1, 3))
        if not (len(self.names) == len(parents) == len(offsets) == len(self.end_sites)):
            raise ValueError("names, parents, offsets and end_sites must have one entry per joint")
        if parents[0] != -1 or np.any(parents[1:] >= np.arange(1, len(parents))) or np.any(parents[1:] < 0):
            raise ValueError("parents must list the root first (-1) and every parent before its children")

    @property
    def num_joints(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Index of joint `name`; KeyError names the missing joint."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"joint {name!r} is not in the skeleton") from None

    def children(self, j: int) -> list[int]:
        return [int(c) for c in np.flatnonzero(self.parents == j)]

    def with_offsets(self, offsets: np.ndarray, end_sites: np.ndarray | None = None) -> Skeleton:
        """The same hierarchy with other rest offsets (J, 3) metres, e.g. bone lengths measured on a clip."""
        return Skeleton(self.names, self.parents, offsets, self.end_sites if end_sites is None else end_sites)

    def rest_positions(self) -> np.ndarray:
        """(J, 3) world positions of the joints in the rest pose, metres."""
        pos = np.zeros_like(self.offsets)
        for j, p in enumerate(self.parents):
            pos[j] = self.offsets[j] if p < 0 else pos[p] + self.offsets[j]
        return pos

    def global_rotations(self, rotations: np.ndarray) -> np.ndarray:
        """Local rotations (F, J, 4) -> world rotations (F, J, 4), both w-x-y-z (normalised)."""
        local = quat.normalize(rotations)
        out = np.empty_like(local)
        for j, p in enumerate(self.parents):  # a loop over joints, vectorised over frames
            out[:, j] = local[:, j] if p < 0 else quat.multiply(out[:, p], local[:, j])
        return out

    def forward_kinematics(self, rotations: np.ndarray, root_positions: np.ndarray) -> np.ndarray:
        """Local rotations (F, J, 4) w-x-y-z and root positions (F, 3) metres -> world joint positions (F, J, 3)."""
        rotations = np.asarray(rotations, dtype=np.float64)
        pos = np.zeros((rotations.shape[0], self.num_joints, 3))
        glob = self.global_rotations(rotations)
        pos[:, 0] = root_positions
        for j in range(1, self.num_joints):
            p = self.parents[j]
            pos[:, j] = pos[:, p] + quat.rotate(glob[:, p], self.offsets[j])
        return pos

    def to_json(self) -> dict[str, object]:
        return {
            "names": list(self.names),
            "parents": self.parents.tolist(),
            "offsets": self.offsets.tolist(),
            "end_sites": self.end_sites.tolist(),
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Skeleton:
        return cls(tuple(data["names"]), np.asarray(data["parents"]), np.asarray(data["offsets"]),  # type: ignore[arg-type]
                   np.asarray(data.get("end_sites")) if data.get("end_sites") is not None else None)


def load_rig_skeleton(name: str = "humanoid") -> Skeleton:
    """Load a skeleton from `rigs/<name>.json` (joints listed parents first); BadRigData if it is malformed."""
    try:
        joints = rigs.load(name)["joints"]
        names = [str(j["name"]) for j in joints]
        parents = [-1 if j["parent"] is None else names.index(j["parent"]) for j in joints]
        offsets = np.asarray([j["offset"] for j in joints], dtype=np.float64)
        ends = np.asarray([j.get("end", [0.0, 0.0, 0.0]) for j in joints], dtype=np.float64)
        skeleton = Skeleton(tuple(names), np.asarray(parents), offsets, ends)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise BadRigData(f"Mimic's rig data {rigs.RIGS_DIR / name}.json is malformed ({exc}).",
                         "Reinstall Mimic.") from exc
    if not np.all(np.isfinite(skeleton.offsets)) or not np.all(np.isfinite(skeleton.end_sites)):
        raise BadRigData(f"Mimic's rig data {rigs.RIGS_DIR / name}.json has non-finite offsets.", "Reinstall Mimic.")
    return skeleton


def humanoid() -> Skeleton:
    """Mimic's canonical humanoid (rigs/humanoid.json) with default proportions."""
    return load_rig_skeleton("humanoid")
