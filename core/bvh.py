"""BVH (Biovision hierarchy) reading and writing as plain functions, after Blender's io_anim_bvh.

Writing follows what Unity's BVH loaders expect by default: Y up, metres (or centimetres), `ZXY` rotation channels
on every joint, translation channels on the root only, rest pose = T-pose with zero rotations.
Reading accepts any channel layout, including files that put 6 channels on every joint (there the position
channels replace the joint's OFFSET, as in the Bandai-Namco datasets).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from core.common.atomic import atomic_path
from core.common.errors import BadBvhFile
from core.common.hands import motion_with_fingers, split_fingers
from core.common.motionfile import Motion
from core.scipy_rotations import from_wxyz, to_wxyz
from core.common.skeleton import Skeleton

UNIT_SCALE = {"m": 1.0, "cm": 100.0}


@dataclass
class BvhData:
    """A parsed BVH file, in the file's own units.

    names/parents: J joints, parents first, root parent -1. offsets: (J, 3). end_sites: (J, 3), zeros where none.
    channels: per joint the channel names in file order. values: (F, C) the MOTION block. frame_time: seconds.
    """

    names: list[str]
    parents: np.ndarray
    offsets: np.ndarray
    end_sites: np.ndarray
    channels: list[list[str]]
    values: np.ndarray
    frame_time: float

    @property
    def num_frames(self) -> int:
        return int(self.values.shape[0])

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    def _columns(self) -> list[np.ndarray]:
        starts = np.cumsum([0] + [len(c) for c in self.channels])
        return [np.arange(starts[j], starts[j + 1]) for j in range(len(self.channels))]

    def local_rotations(self) -> np.ndarray:
        """(F, J, 4) w-x-y-z local rotations; a joint without rotation channels gets identity."""
        out = np.zeros((self.num_frames, len(self.names), 4))
        out[..., 0] = 1.0
        for j, (chans, cols) in enumerate(zip(self.channels, self._columns())):
            rot = [(c[0].upper(), col) for c, col in zip(chans, cols) if c.lower().endswith("rotation")]
            if rot:
                order = "".join(axis for axis, _ in rot)
                angles = self.values[:, [col for _, col in rot]]
                out[:, j] = to_wxyz(Rotation.from_euler(order, angles, degrees=True))
        return out

    def local_translations(self) -> np.ndarray:
        """(F, J, 3) each joint's translation from its parent: position channels where present, else OFFSET."""
        out = np.broadcast_to(self.offsets, (self.num_frames, *self.offsets.shape)).copy()
        for j, (chans, cols) in enumerate(zip(self.channels, self._columns())):
            for c, col in zip(chans, cols):
                if c.lower().endswith("position"):
                    out[:, j, "XYZ".index(c[0].upper())] = self.values[:, col]
        return out

    def forward(self) -> tuple[np.ndarray, list[Rotation]]:
        """Forward kinematics: (F, J, 3) world joint positions in file units, and per joint its F world rotations."""
        rots = self.local_rotations()
        trans = self.local_translations()
        pos = np.zeros_like(trans)
        glob: list[Rotation] = []
        for j, p in enumerate(self.parents):
            local = from_wxyz(rots[:, j])
            if p < 0:
                glob.append(local)
                pos[:, j] = trans[:, j]
            else:
                glob.append(glob[p] * local)
                pos[:, j] = pos[:, p] + glob[p].apply(trans[:, j])
        return pos, glob

    def positions(self) -> np.ndarray:
        """(F, J, 3) world joint positions in file units."""
        return self.forward()[0]


def read_bvh(path: Path) -> BvhData:
    """Parse a BVH file line by line, as Blender's importer does (joint names may hold spaces); BadBvhFile says
    where it is malformed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise BadBvhFile(f"Cannot read BVH file {path}: {exc.strerror}.", "Check the path and permissions.") from exc
    lines = [line.split() for line in text.splitlines()]
    lines = [words for words in lines if words]
    try:
        start = next(i for i, w in enumerate(lines) if w[0] == "HIERARCHY")
        end = next(i for i, w in enumerate(lines) if i > start and w == ["MOTION"])
    except StopIteration:
        raise BadBvhFile(f"{path} is not a BVH file (no HIERARCHY/MOTION sections).", "Export it again as BVH.") \
            from None
    try:
        names, parents, offsets, ends, channels = _hierarchy(lines[start + 1:end])
        frames, frame_time, values = _motion(lines[end + 1:], sum(len(c) for c in channels))
    except (ValueError, IndexError) as exc:
        raise BadBvhFile(f"{path} is a malformed BVH file ({exc}).", "Export it again as BVH.") from exc
    if not names:
        raise BadBvhFile(f"{path} has no joints.", "Export it again as BVH.")
    return BvhData(names, np.asarray(parents), np.asarray(offsets), np.asarray(ends), channels, values, frame_time)


def _hierarchy(lines: list[list[str]]) -> tuple[list[str], list[int], list[list[float]], list[list[float]],
                                                 list[list[str]]]:
    """The HIERARCHY block's lines (split into words) -> names, parents, offsets, end sites, channels."""
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    ends: list[list[float]] = []
    channels: list[list[str]] = []
    stack: list[int] = []
    in_end = False
    for words in lines:
        key = words[0]
        if key in ("ROOT", "JOINT"):
            if len(words) < 2:
                raise ValueError(f"{key} without a name")
            names.append(" ".join(words[1:]))
            parents.append(stack[-1] if stack else -1)
            offsets.append([0.0, 0.0, 0.0])
            ends.append([0.0, 0.0, 0.0])
            channels.append([])
        elif key == "End":
            in_end = True
        elif key == "{":
            if not in_end:
                stack.append(len(names) - 1)
        elif key == "}":
            if in_end:
                in_end = False
            else:
                stack.pop()
        elif key == "OFFSET":
            vals = [float(v) for v in words[1:4]]
            if len(vals) != 3 or not np.all(np.isfinite(vals)):
                raise ValueError(f"OFFSET needs three finite numbers, got {words[1:]}")
            if in_end:
                ends[stack[-1]] = vals
            else:
                offsets[-1] = vals
        elif key == "CHANNELS":
            n = int(words[1])
            if len(words) != 2 + n:
                raise ValueError(f"CHANNELS {n} lists {len(words) - 2} channels")
            channels[-1] = words[2:]
        else:
            raise ValueError(f"unexpected line starting with {key!r}")
    if stack or in_end:
        raise ValueError("unbalanced braces")
    return names, parents, offsets, ends, channels


def _motion(lines: list[list[str]], columns: int) -> tuple[int, float, np.ndarray]:
    """The MOTION block's lines -> frame count, frame time (s), values (F, columns); checked against each other."""
    if len(lines) < 2 or lines[0][0] != "Frames:" or lines[1][:2] != ["Frame", "Time:"]:
        raise ValueError("the MOTION block must start with 'Frames:' and 'Frame Time:'")
    frames = int(lines[0][1])
    frame_time = float(lines[1][2])
    if frames < 0:
        raise ValueError(f"Frames: {frames} is negative")
    if not np.isfinite(frame_time) or frame_time <= 0:
        raise ValueError(f"Frame Time: {frame_time} is not a positive number of seconds")
    rows = lines[2:]
    if len(rows) < frames:
        raise ValueError(f"Frames: {frames} but only {len(rows)} rows of motion")
    values = np.array([v for row in rows[:frames] for v in row], dtype=np.float64)
    if values.size != frames * columns:
        raise ValueError(f"{values.size} motion values for {frames} frames of {columns} channels")
    if not np.all(np.isfinite(values)):
        raise ValueError("the motion holds NaN or infinite values")
    return frames, frame_time, values.reshape(frames, columns)


def guess_units(data: BvhData) -> str:
    """"cm" when the rest skeleton is taller than 10 units (no person is 10 m tall), else "m"."""
    sk = Skeleton(tuple(data.names), data.parents, data.offsets, data.end_sites)
    heights = sk.rest_positions()[:, 1]
    return "cm" if float(heights.max() - heights.min()) > 10.0 else "m"


def bvh_to_motion(data: BvhData, units: str = "m") -> Motion:
    """A BVH in Mimic's channel layout (root translation, rotations everywhere) as a Motion in metres."""
    scale = 1.0 / UNIT_SCALE[units]
    skeleton = Skeleton(tuple(data.names), data.parents, data.offsets * scale, data.end_sites * scale)
    root = data.local_translations()[:, 0] * scale
    skeleton, rotations, hand_rotations, hand_joints = split_fingers(skeleton, data.local_rotations())
    return Motion(skeleton=skeleton, fps=data.fps, rotations=rotations, root_positions=root,
                  hand_rotations=hand_rotations, hand_joints=hand_joints)


def write_bvh(path: Path, motion: Motion, units: str = "m", order: str = "ZXY") -> None:
    """Write `motion` as BVH, atomically. units: "m" or "cm"; order: Euler channel order on every joint."""
    scale = UNIT_SCALE[units]
    sk, rotations = motion_with_fingers(motion)
    axis_channels = " ".join(f"{a}rotation" for a in order)
    lines = ["HIERARCHY"]
    children = [sk.children(j) for j in range(sk.num_joints)]
    written: list[int] = []  # joints in the depth-first order of the file; the MOTION columns follow it

    def emit(j: int, depth: int) -> None:
        pad = "  " * depth
        kind = "ROOT" if sk.parents[j] < 0 else "JOINT"
        off = sk.offsets[j] * scale
        lines.append(f"{pad}{kind} {sk.names[j]}")
        written.append(j)
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {off[0]:.6f} {off[1]:.6f} {off[2]:.6f}")
        if sk.parents[j] < 0:
            lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition {axis_channels}")
        else:
            lines.append(f"{pad}  CHANNELS 3 {axis_channels}")
        for c in children[j]:
            emit(c, depth + 1)
        if not children[j]:
            end = sk.end_sites[j] * scale
            lines.extend([f"{pad}  End Site", f"{pad}  {{",
                          f"{pad}    OFFSET {end[0]:.6f} {end[1]:.6f} {end[2]:.6f}", f"{pad}  }}"])
        lines.append(f"{pad}}}")

    emit(0, 0)
    frames = motion.num_frames
    eulers = [from_wxyz(rotations[:, j]).as_euler(order, degrees=True) for j in written]
    table = np.concatenate([np.asarray(motion.root_positions, dtype=np.float64) * scale] + eulers, axis=1)
    lines += ["MOTION", f"Frames: {frames}", f"Frame Time: {1.0 / motion.fps:.8f}"]
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write("\n".join(lines) + "\n")
            np.savetxt(fh, table, fmt="%.6f")
