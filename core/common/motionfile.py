"""The motion file (.npz, schema 2): Mimic's result and its contract with the Blender add-on. Numpy only.

One NumPy `.npz` archive, no pickles: a `meta_json` string and, per person k, arrays named `person{k}/<channel>`.
Every channel, shape and meta key is documented in docs/MOTION_FILE.md. Schema 1 files (one person, channels at
the top level) still load. Every array is checked (dtype, shape, finiteness, plausible size) before use, so a bad
file is a `BadMotionFile` naming the file and the problem, never a numpy error later.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from . import rotations as quat
from .atomic import atomic_path
from .errors import BadMotionFile
from .skeleton import Skeleton

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
#: A file claiming more frames than this (10 hours at 120 fps) is refused before anything is allocated.
MAX_FRAMES = 4_320_000
MAX_JOINTS = 1024
#: No array of a motion file may be larger than this (2 GiB): a damaged header cannot make Mimic allocate more.
MAX_BYTES = 2 << 30
AXES = {"up": "+Y", "forward": "+Z", "left": "+X"}
ROTATION_FORMAT = "quaternion_wxyz_local"
#: Foot-contact probability columns (contact_probability), in order.
CONTACT_POINTS = ("left_heel", "left_toe", "right_heel", "right_toe")
#: Hands in hand_rotations / hand_confidence, in order.
HANDS = ("left", "right")


@dataclass(frozen=True)
class Channel:
    """An array channel of a person: its shape with symbols (F frames, J joints, K landmarks, C contact points, H
    hand joints, E expressions, or a number), whether values must be finite, and its dtype kind."""

    shape: tuple[str | int, ...]
    finite: bool = False
    kind: str = "f"


#: Every channel a person can carry. Required: rotations and root_positions; the rest is optional.
CHANNELS: dict[str, Channel] = {
    "rotations": Channel(("F", "J", 4), finite=True),
    "root_positions": Channel(("F", 3), finite=True),
    "confidence": Channel(("F", "J")),
    "keypoints_2d": Channel(("F", "K", 3)),
    "keypoints_3d": Channel(("F", "K", 3)),
    "contacts": Channel(("F", 2), kind="b"),
    "contact_probability": Channel(("F", len(CONTACT_POINTS)), finite=True),
    "hand_rotations": Channel(("F", len(HANDS), "H", 4), finite=True),
    "hand_confidence": Channel(("F", len(HANDS))),
    "expressions": Channel(("F", "E"), finite=True),
}
REQUIRED = ("rotations", "root_positions")


@dataclass
class Motion:
    """One person's skeletal motion at a constant frame rate (channels as in CHANNELS; None = not captured).

    skeleton: joints, parents, rest offsets (metres, world-aligned T-pose rest). fps: frames per second.
    rotations: (F, J, 4) local joint rotations w-x-y-z relative to the rest. root_positions: (F, 3) metres, Y up.
    confidence: (F, J) 0..1. keypoints_2d: (F, K, 3) x, y pixels and visibility. keypoints_3d: (F, K, 3) metres.
    contacts: (F, 2) bool, left and right foot planted. contact_probability: (F, 4) 0..1 per CONTACT_POINTS.
    hand_rotations: (F, 2, H, 4) local finger rotations per hand (names in hand_joints). hand_confidence: (F, 2).
    expressions: (F, E) weights 0..1 (names in expression_names). person: the person's id in the clip.
    camera, floor: JSON-able dicts (see docs/MOTION_FILE.md). meta: free JSON-able information about the source.
    """

    skeleton: Skeleton
    fps: float
    rotations: np.ndarray
    root_positions: np.ndarray
    confidence: np.ndarray | None = None
    keypoints_2d: np.ndarray | None = None
    keypoints_3d: np.ndarray | None = None
    contacts: np.ndarray | None = None
    contact_probability: np.ndarray | None = None
    hand_rotations: np.ndarray | None = None
    hand_confidence: np.ndarray | None = None
    expressions: np.ndarray | None = None
    hand_joints: tuple[str, ...] = ()
    expression_names: tuple[str, ...] = ()
    person: int = 0
    camera: dict[str, Any] | None = None
    floor: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.rotations.shape[0])

    @property
    def names(self) -> tuple[str, ...]:
        return self.skeleton.names

    @property
    def parents(self) -> np.ndarray:
        return self.skeleton.parents

    @property
    def offsets(self) -> np.ndarray:
        return self.skeleton.offsets

    @property
    def end_sites(self) -> np.ndarray:
        return self.skeleton.end_sites

    def positions(self) -> np.ndarray:
        """(F, J, 3) world joint positions, metres."""
        return self.skeleton.forward_kinematics(self.rotations, self.root_positions)

    def channels(self) -> dict[str, np.ndarray]:
        """The channels this motion carries, by name."""
        return {name: getattr(self, name) for name in CHANNELS if getattr(self, name) is not None}

    def with_channels(self, **changes: Any) -> Motion:
        """A copy with some fields replaced (channels, fps ...)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Motion(**values)

    def resampled(self, fps: float) -> Motion:
        """This motion at another frame rate over the same duration: rotations by slerp, booleans from the nearest
        frame, every other channel linearly."""
        lo, hi, a = quat.resample_frames(self.num_frames, self.fps, fps)
        out: dict[str, np.ndarray] = {}
        for name, value in self.channels().items():
            if name in ("rotations", "hand_rotations"):
                q = quat.make_continuous(value)
                out[name] = quat.slerp(q[lo], q[hi], a.reshape(-1, *([1] * (q.ndim - 2))) * np.ones(q.shape[1:-1]))
            elif value.dtype.kind == "b":
                out[name] = np.where((a < 0.5).reshape(-1, *([1] * (value.ndim - 1))), value[lo], value[hi])
            else:
                w = a.reshape(-1, *([1] * (value.ndim - 1)))
                out[name] = value[lo] * (1.0 - w) + value[hi] * w
        return self.with_channels(fps=float(fps), **out)


def save_motions(motions: list[Motion], path: Path) -> None:
    """Write one or more persons' motions (same fps and frame count) to `path` (.npz) atomically."""
    if not motions:
        raise ValueError("save_motions needs at least one motion")
    first = motions[0]
    for m in motions:
        if m.num_frames != first.num_frames or m.fps != first.fps:
            raise ValueError("every person in a motion file shares the frame rate and frame count")
    meta = {k: v for k, v in first.meta.items() if k not in ("skeleton", "persons")}
    meta.update(schema_version=SCHEMA_VERSION, fps=float(first.fps), num_frames=first.num_frames, units="m",
                axes=AXES, rotation_format=ROTATION_FORMAT, camera=first.camera, floor=first.floor,
                persons=[_person_meta(m) for m in motions])
    arrays: dict[str, np.ndarray] = {}
    for k, m in enumerate(motions):
        for name, value in m.channels().items():
            value = np.asarray(value)
            arrays[f"person{k}/{name}"] = value.astype(np.float32) if value.dtype.kind == "f" else value
    with atomic_path(Path(path)) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, meta_json=np.array(json.dumps(meta)), **arrays)


def save_motion(motion: Motion, path: Path) -> None:
    """Write one person's motion to `path` (.npz) atomically."""
    save_motions([motion], path)


def _person_meta(m: Motion) -> dict[str, Any]:
    return {"id": int(m.person), "skeleton": m.skeleton.to_json(), "hand_joints": list(m.hand_joints),
            "expression_names": list(m.expression_names)}


def load_motions(path: Path) -> list[Motion]:
    """Every person of a motion file (schema 1 or 2), each checked; BadMotionFile says what is wrong and what to do."""
    path = Path(path)
    meta, arrays = _read_archive(path)
    version = meta.get("schema_version")
    if version not in READABLE_SCHEMAS:
        raise BadMotionFile(f"{path} has motion schema {version!r}; this Mimic reads schemas "
                            f"{', '.join(map(str, READABLE_SCHEMAS))}.", "Update Mimic (core and add-on) together.")
    fps = meta.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not np.isfinite(fps) or not 0 < fps <= 1000:
        raise BadMotionFile(f"{path} has an invalid frame rate {fps!r}.", "Re-run the conversion to create it again.")
    if version == 1:
        persons = [{"id": 0, "skeleton": meta.get("skeleton")}]
        arrays = {f"person0/{k}": v for k, v in arrays.items()}
    else:
        persons = meta.get("persons")
        if not isinstance(persons, list) or not persons or not all(isinstance(p, dict) for p in persons):
            raise BadMotionFile(f"{path} lists no persons.", "Re-run the conversion to create it again.")
    meta = {k: v for k, v in meta.items() if k != "persons"}
    return [_person(path, meta, arrays, k, p, float(fps)) for k, p in enumerate(persons)]


def load_motion(path: Path, person: int = 0) -> Motion:
    """One person (by position in the file, 0 = the first) of a motion file; BadMotionFile says what is wrong."""
    motions = load_motions(path)
    if not 0 <= person < len(motions):
        raise BadMotionFile(f"{path} holds {len(motions)} person(s); there is no person {person}.",
                            f"Choose a person from 0 to {len(motions) - 1}.")
    return motions[person]


def _read_archive(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The meta dict and every array of the archive, with sizes checked before anything large is read."""
    try:
        _check_sizes(path)
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("a bare .npy array, not an .npz archive")
        with data:
            if "meta_json" not in data.files:
                raise ValueError("no meta_json entry")
            meta = json.loads(str(data["meta_json"]))
            if not isinstance(meta, dict):
                raise ValueError("meta_json is not a JSON object")
            frames = meta.get("num_frames", 0)
            if isinstance(frames, int) and frames > MAX_FRAMES:
                raise ValueError(f"it claims {frames} frames (at most {MAX_FRAMES} are read)")
            arrays = {k: data[k] for k in data.files if k != "meta_json"}
    except FileNotFoundError:
        raise BadMotionFile(f"Motion file {path} does not exist.", "Check the path.") from None
    except IsADirectoryError:
        raise BadMotionFile(f"{path} is a folder, not a motion file.", "Choose the .npz file itself.") from None
    except Exception as exc:  # noqa: BLE001 - zlib, zipfile, struct, numpy: whatever a damaged archive raises
        raise BadMotionFile(f"{path} is not a readable Mimic motion file ({exc}).",
                            "Re-run the conversion to create it again.") from exc
    return meta, arrays


def read_bytes(path: Path, what: str, suffix: str) -> bytes:
    """The bytes of a motion file in another format (`what`: "VMD file", "VRM Animation"; `suffix`: ".vmd"), a
    missing file, a folder or an unreadable one being a BadMotionFile that says so."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise BadMotionFile(f"{what} {path} does not exist.", "Check the path.") from None
    except IsADirectoryError:
        raise BadMotionFile(f"{path} is a folder, not a {what}.", f"Choose the {suffix} file itself.") from None
    except OSError as exc:
        raise BadMotionFile(f"Cannot read {what} {path}: {exc.strerror or exc}.",
                            "Check the path and permissions.") from None


def _check_sizes(path: Path) -> None:
    """ValueError if an array's header claims more than MAX_BYTES, read before any array is allocated."""
    if not zipfile.is_zipfile(path):
        return  # np.load says what it is
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            with archive.open(member) as fh:
                major, _ = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(fh)
                size = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
                if size > MAX_BYTES:
                    raise ValueError(f"{member.filename} claims {size / 2**30:.1f} GiB")


def _person(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray], k: int, info: dict[str, Any],
            fps: float) -> Motion:
    """Person k's Motion, every channel checked against CHANNELS."""
    where = f"{path} (person {k})"
    try:
        skeleton = Skeleton.from_json(info["skeleton"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadMotionFile(f"{where} has no valid skeleton ({exc}).", "Re-run the conversion to create it again.") \
            from exc
    if not 0 < skeleton.num_joints <= MAX_JOINTS or not np.all(np.isfinite(skeleton.offsets)):
        raise BadMotionFile(f"{where} has a skeleton of {skeleton.num_joints} joints with invalid offsets.",
                            "Re-run the conversion to create it again.")
    hand_joints, expression_names = _names(info, "hand_joints"), _names(info, "expression_names")
    channels: dict[str, np.ndarray] = {}
    for name in REQUIRED:
        if f"person{k}/{name}" not in arrays:
            raise BadMotionFile(f"{where} has no {name}.", "Re-run the conversion to create it again.")
    frames = arrays[f"person{k}/rotations"].shape[0] if arrays[f"person{k}/rotations"].ndim else -1
    sizes = {"F": frames, "J": skeleton.num_joints, "H": len(hand_joints), "E": len(expression_names)}
    for name, spec in CHANNELS.items():
        value = arrays.get(f"person{k}/{name}")
        if value is None:
            continue
        if "K" in spec.shape and value.ndim == len(spec.shape):
            sizes.setdefault("K", value.shape[spec.shape.index("K")])
        want = tuple(sizes.get(s, s) if isinstance(s, str) else s for s in spec.shape)
        if value.shape != want or value.dtype.kind != spec.kind:
            raise BadMotionFile(f"{where}: {name} is {value.dtype} {value.shape}, expected shape "
                                f"{tuple(spec.shape)} = {want} of kind {spec.kind!r}.",
                                "Re-run the conversion to create it again.")
        if spec.finite and not np.all(np.isfinite(value)):
            raise BadMotionFile(f"{where}: {name} holds NaN or infinite values.",
                                "Re-run the conversion to create it again.")
        channels[name] = value.astype(np.float64) if spec.kind == "f" else value
    if frames < 1:
        raise BadMotionFile(f"{where} has no frames.", "Re-run the conversion on a longer range.")
    norms = np.linalg.norm(channels["rotations"], axis=-1)
    if np.any(np.abs(norms - 1.0) > 1e-2):
        raise BadMotionFile(f"{where}: rotations are not unit quaternions.", "Re-run the conversion to create it again.")
    return Motion(skeleton=skeleton, fps=fps, hand_joints=hand_joints, expression_names=expression_names,
                  person=int(info.get("id", k)) if isinstance(info.get("id", k), int) else k,
                  camera=meta.get("camera") if isinstance(meta.get("camera"), dict) else None,
                  floor=meta.get("floor") if isinstance(meta.get("floor"), dict) else None,
                  meta=meta, **channels)


def _names(info: dict[str, Any], key: str) -> tuple[str, ...]:
    """A list of names from a person's meta, as a tuple of strings (empty when absent)."""
    value = info.get(key) or ()
    if not isinstance(value, (list, tuple)):
        raise BadMotionFile(f"The motion file's {key} is not a list of names.", "Re-run the conversion.")
    return tuple(str(n) for n in value)
