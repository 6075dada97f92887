"""MMD motion (.vmd): a Mimic Motion written for the standard MMD model; .vmd files read back, checked. Numpy only.

Layout (little-endian): a 30-byte magic and a 20-byte model name, then sections, each a uint32 count and its records:
bone keys (111 bytes), morph keys (23), camera (61), light (28), self-shadow (9) and show/IK keys (9 bytes + 21 per
IK bone). Names are Shift-JIS (cp932), NUL-padded. How Mimic's pose becomes MMD's (axes, units, the A-pose rest, the
centre, FK legs, morphs) is in docs/FORMATS.md; the names and angles are data in rigs/vmd.json.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import rigs
from . import rotations as quat
from .atomic import atomic_path
from .errors import BadMotionFile, BadRigData, UnsupportedOutput
from .hands import motion_with_fingers
from .motionfile import Motion, read_bytes

BONE_DTYPE = np.dtype([("name", "S15"), ("frame", "<u4"), ("position", "<f4", (3,)), ("rotation", "<f4", (4,)),
                       ("interpolation", "u1", (64,))])
MORPH_DTYPE = np.dtype([("name", "S15"), ("frame", "<u4"), ("weight", "<f4")])
#: Bytes per record of the sections Mimic does not write (always empty in its files) but reads past.
RECORD_BYTES = {"camera": 61, "light": 28, "self-shadow": 9}
MAGIC_BYTES, MODEL_NAME_BYTES, IK_NAME_BYTES = 30, 20, 20
#: Mimic axes (Y up, faces +Z, left +X, right-handed) <-> MMD axes (Y up, faces -Z, left +X, left-handed): a mirror
#: through the XY plane, so positions flip z and quaternions (w, x, y, z) flip x and y (as mmd-parser's leftToRight).
MIRROR_POSITION = np.array([1.0, 1.0, -1.0])
MIRROR_QUATERNION = np.array([1.0, -1.0, -1.0, 1.0])


def _linear_interpolation() -> np.ndarray:
    """(64,) uint8: MMD's interpolation block for straight lines on X, Y, Z and rotation. Row 0 holds x1 (X, Y, Z, R),
    y1, x2, y2 with the Bezier handles (20, 20) and (107, 107) of 0..127; rows 1-3 repeat it shifted, as MMD writes."""
    row = np.array([20] * 8 + [107] * 8, dtype=np.uint8)
    return np.concatenate([np.concatenate([row[k:], np.array([1, 0, 0][:k], np.uint8)]) for k in range(4)])


LINEAR = _linear_interpolation()


@dataclass(frozen=True)
class VmdBone:
    """A keyed bone of the standard MMD model: its name, the Mimic joint whose world rotation it takes, the bone its
    rotation is relative to, and its rest rotation from Mimic's T-pose (w-x-y-z, Mimic axes)."""

    name: str
    joint: str
    parent: str
    rest: np.ndarray


@dataclass(frozen=True)
class VmdRig:
    """rigs/vmd.json, checked: the magic, frame rate, units, the centre bone and joint, keyed bones (parents first),
    IK bones switched off, expression -> morph names."""

    magic: str
    fps: float
    units_per_metre: float
    centre: str
    centre_joint: str
    bones: tuple[VmdBone, ...]
    ik_off: tuple[str, ...]
    morphs: dict[str, str]


@lru_cache(maxsize=1)
def vmd_rig() -> VmdRig:
    """rigs/vmd.json as a VmdRig; BadRigData names what is malformed."""
    path = rigs.RIGS_DIR / "vmd.json"
    data = rigs.load("vmd")
    try:
        centre = str(data["centre"])
        known = {centre}
        bones = []
        for b in data["bones"]:
            name, parent = str(b["name"]), str(b["parent"])
            if parent not in known:
                raise ValueError(f"{name}'s parent {parent} is not listed before it")
            down = np.radians(float(b.get("rest_down_deg", 0.0)))
            side = {"左": 1.0, "右": -1.0}.get(name[0], 0.0)
            if down and not side:
                raise ValueError(f"{name} has a rest angle but no 左/右 side")
            # Lowering a chain on the character's left (+X) turns it about +Z by -angle; on the right by +angle.
            rest = np.array([np.cos(down / 2), 0.0, 0.0, -side * np.sin(down / 2)])
            bones.append(VmdBone(name, str(b["joint"]), parent, rest))
            known.add(name)
        rig = VmdRig(str(data["magic"]), float(data["fps"]), float(data["units_per_metre"]), centre,
                     str(data["centre_joint"]), tuple(bones), tuple(str(n) for n in data["ik_off"]),
                     {str(k): str(v) for k, v in data["morphs"].items()})
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise BadRigData(f"Mimic's rig data {path} is malformed ({exc}).", "Reinstall Mimic.") from exc
    if not (rig.fps > 0 and rig.units_per_metre > 0):
        raise BadRigData(f"Mimic's rig data {path} has a non-positive fps or units_per_metre.", "Reinstall Mimic.")
    return rig


# --- Mimic -> MMD ------------------------------------------------------------------------------------------------

def mmd_pose(motion: Motion, rig: VmdRig | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A motion already at rig.fps as MMD keys: per keyed bone its (F, 4) local rotations w-x-y-z in MMD axes,
    relative to the standard model's A-pose rest, and the centre's (F, 3) translation in MMD units and axes.

    Each bone's world rotation is its joint's world rotation times the inverse of its rest rotation, so that the
    A-pose bone ends up where Mimic's T-pose joint is turned; its key is that relative to its MMD parent's.
    """
    rig = rig or vmd_rig()
    sk, rotations = motion_with_fingers(motion)
    if "Hips" not in sk.names:
        raise UnsupportedOutput(f"The motion's skeleton ({', '.join(sk.names[:4])}, ...) is not Mimic's humanoid, "
                                "so it has no MMD bones.", "Export it as BVH instead, or convert the video again.")
    glob = sk.global_rotations(rotations)
    frames = motion.num_frames
    world: dict[str, np.ndarray] = {rig.centre: quat.identity(frames)}
    local: dict[str, np.ndarray] = {}
    for bone in rig.bones:
        if bone.joint not in sk.names:  # not keyed: the model's bone keeps its rest, its parent's world rotation
            world[bone.name] = world[bone.parent]
            continue
        world[bone.name] = quat.multiply(glob[:, sk.index(bone.joint)], quat.inverse(bone.rest))
        turn = quat.multiply(quat.inverse(world[bone.parent]), world[bone.name])
        local[bone.name] = quat.make_continuous(quat.normalize(turn) * MIRROR_QUATERNION)
    waist = sk.index(rig.centre_joint) if rig.centre_joint in sk.names else 0
    centre = (motion.positions()[:, waist] - sk.rest_positions()[waist]) * rig.units_per_metre * MIRROR_POSITION
    return local, centre


def _at_rate(motion: Motion, fps: float) -> Motion:
    """The channels VMD needs, resampled to `fps` (MMD plays 30 frames per second) unless already at it."""
    light = motion.with_channels(confidence=None, keypoints_2d=None, keypoints_3d=None, contacts=None,
                                 contact_probability=None, hand_confidence=None)
    return light if abs(light.fps - fps) < 1e-9 else light.resampled(fps)


def write_vmd(path: Path, motion: Motion, model_name: str = "Mimic") -> Path:
    """Write `motion` as an MMD motion (.vmd) for the standard model, atomically; returns the path.

    Every frame at 30 fps is a key (linear interpolation) on the centre (translation) and each mapped bone
    (rotation); expressions with an MMD name become morph keys; leg IK is switched off at frame 0 (FK legs).
    """
    rig = vmd_rig()
    m = _at_rate(motion, rig.fps)
    local, centre = mmd_pose(m, rig)
    frames = np.arange(m.num_frames, dtype=np.uint32)
    names = [rig.centre, *local]
    bones = np.zeros(len(names) * m.num_frames, dtype=BONE_DTYPE).reshape(len(names), m.num_frames)
    for k, name in enumerate(names):
        bones[k]["name"] = _encode(name, 15)
        bones[k]["frame"] = frames
    bones["interpolation"] = LINEAR
    bones[0]["position"] = centre
    bones[0]["rotation"] = (0.0, 0.0, 0.0, 1.0)
    for k, name in enumerate(local, start=1):
        bones[k]["rotation"] = local[name][:, [1, 2, 3, 0]]  # w-x-y-z -> the file's x, y, z, w
    morphs = _morph_keys(m, rig, frames)
    ik = struct.pack("<IBI", 0, 1, len(rig.ik_off)) + b"".join(
        _encode(n, IK_NAME_BYTES).ljust(IK_NAME_BYTES, b"\0") + b"\0" for n in rig.ik_off)
    body = b"".join([
        rig.magic.encode("ascii").ljust(MAGIC_BYTES, b"\0"), _encode(model_name, MODEL_NAME_BYTES).ljust(20, b"\0"),
        struct.pack("<I", bones.size), bones.tobytes(), struct.pack("<I", morphs.size), morphs.tobytes(),
        struct.pack("<III", 0, 0, 0), struct.pack("<I", 1), ik])
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(body)
    return path


def _morph_keys(m: Motion, rig: VmdRig, frames: np.ndarray) -> np.ndarray:
    """Morph keys (every frame) for the expressions that have an MMD name; weights clipped to 0..1."""
    if m.expressions is None:
        return np.zeros(0, MORPH_DTYPE)
    mapped = [(e, rig.morphs[n]) for e, n in enumerate(m.expression_names) if n in rig.morphs]
    keys = np.zeros((len(mapped), len(frames)), MORPH_DTYPE)
    for k, (e, name) in enumerate(mapped):
        keys[k]["name"] = _encode(name, 15)
        keys[k]["frame"] = frames
        keys[k]["weight"] = np.clip(m.expressions[:, e], 0.0, 1.0)
    return keys.reshape(-1)


def _encode(text: str, size: int) -> bytes:
    """`text` in Shift-JIS (cp932), cut to at most `size` bytes on a character boundary ('?' for what cp932 lacks)."""
    out = b""
    for ch in text:
        b = ch.encode("cp932", errors="replace")
        if len(out) + len(b) > size:
            break
        out += b
    return out


# --- reading -----------------------------------------------------------------------------------------------------

@dataclass
class IkKey:
    """A show/IK key: the frame, whether the model is shown, and each named IK bone on (True) or off."""

    frame: int
    show: bool
    ik: dict[str, bool]


@dataclass
class VmdData:
    """A parsed .vmd, in the file's axes and units (MMD: left-handed, Y up, faces -Z; 1 unit = 8 cm).

    bone_names: N key names. bone_frames: (N,) int. positions: (N, 3) translations from the rest, MMD units.
    rotations: (N, 4) local rotations w-x-y-z (the file's x, y, z, w reordered). interpolation: (N, 64) uint8.
    morph_names: M names. morph_frames: (M,) int. morph_weights: (M,). camera/light/self_shadow_count: records in
    those sections (not decoded). ik_keys: the show/IK section.
    """

    model_name: str
    bone_names: tuple[str, ...]
    bone_frames: np.ndarray
    positions: np.ndarray
    rotations: np.ndarray
    interpolation: np.ndarray
    morph_names: tuple[str, ...]
    morph_frames: np.ndarray
    morph_weights: np.ndarray
    camera_count: int = 0
    light_count: int = 0
    self_shadow_count: int = 0
    ik_keys: list[IkKey] = field(default_factory=list)

    def bone(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Bone `name`'s keys sorted by frame: frames (K,), positions (K, 3), rotations (K, 4) w-x-y-z."""
        idx = np.array([i for i, n in enumerate(self.bone_names) if n == name], dtype=np.int64)
        idx = idx[np.argsort(self.bone_frames[idx], kind="stable")]
        return self.bone_frames[idx], self.positions[idx], self.rotations[idx]

    def morph(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Morph `name`'s keys sorted by frame: frames (K,), weights (K,)."""
        idx = np.array([i for i, n in enumerate(self.morph_names) if n == name], dtype=np.int64)
        idx = idx[np.argsort(self.morph_frames[idx], kind="stable")]
        return self.morph_frames[idx], self.morph_weights[idx]


class _Reader:
    """Bounds-checked reads from the file's bytes; ValueError says what does not fit."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    @property
    def left(self) -> int:
        return len(self.data) - self.at

    def take(self, size: int, what: str) -> bytes:
        if size > self.left:
            raise ValueError(f"{what} needs {size} bytes at offset {self.at} but the file has {self.left} left")
        out = self.data[self.at:self.at + size]
        self.at += size
        return out

    def count(self, what: str, record: int) -> int:
        """A section's record count, checked against the bytes left (before anything is allocated)."""
        n = struct.unpack("<I", self.take(4, f"the {what} count"))[0]
        if n * record > self.left:
            raise ValueError(f"it claims {n} {what} records ({n * record} bytes) but only {self.left} bytes follow")
        return n

    def records(self, what: str, dtype: np.dtype) -> np.ndarray:
        n = self.count(what, dtype.itemsize)
        return np.frombuffer(self.take(n * dtype.itemsize, what), dtype=dtype, count=n)


def read_vmd(path: Path) -> VmdData:
    """Parse and check a .vmd (header, every count against the file's length, finite values); BadMotionFile names
    the file and what is wrong. Sections missing at the end (older files) count as empty."""
    path = Path(path)
    data = read_bytes(path, "VMD file", ".vmd")
    try:
        return _parse(data)
    except ValueError as exc:
        raise BadMotionFile(f"{path} is not a readable VMD motion: {exc}.",
                            "Export it again (from MMD, or from Mimic).") from exc


def _parse(data: bytes) -> VmdData:
    r = _Reader(data)
    magic = r.take(MAGIC_BYTES, "the header").split(b"\0", 1)[0]
    if magic != vmd_rig().magic.encode("ascii"):
        raise ValueError(f"the header is {magic[:30]!r}, not {vmd_rig().magic!r}")
    model = _decode(r.take(MODEL_NAME_BYTES, "the model name"))
    bones = r.records("bone key", BONE_DTYPE)
    morphs = r.records("morph key", MORPH_DTYPE) if r.left else np.zeros(0, MORPH_DTYPE)
    counts = {}
    for what, size in RECORD_BYTES.items():
        counts[what] = r.count(what, size) if r.left else 0
        r.take(counts[what] * size, what)
    ik_keys = _ik_keys(r) if r.left else []
    if r.left:
        raise ValueError(f"{r.left} bytes follow the last section")
    positions = bones["position"].astype(np.float64)
    rotations = bones["rotation"].astype(np.float64)[:, [3, 0, 1, 2]]
    weights = morphs["weight"].astype(np.float64)
    for what, values in (("bone positions", positions), ("bone rotations", rotations), ("morph weights", weights)):
        if not np.all(np.isfinite(values)):
            raise ValueError(f"its {what} hold NaN or infinite values")
    return VmdData(model, _names(bones["name"]), bones["frame"].astype(np.int64), positions, rotations,
                   bones["interpolation"].copy(), _names(morphs["name"]), morphs["frame"].astype(np.int64), weights,
                   counts["camera"], counts["light"], counts["self-shadow"], ik_keys)


def _ik_keys(r: _Reader) -> list[IkKey]:
    """The show/IK section: per key a uint32 frame, a uint8 show flag and a uint32 count of (20-byte name, on)."""
    keys = []
    for _ in range(r.count("show/IK key", 9)):
        frame, show, n = struct.unpack("<IBI", r.take(9, "a show/IK key"))
        if n * (IK_NAME_BYTES + 1) > r.left:
            raise ValueError(f"a show/IK key claims {n} IK bones but only {r.left} bytes follow")
        items = r.take(n * (IK_NAME_BYTES + 1), "the IK bones")
        ik = {_decode(items[i:i + IK_NAME_BYTES]): bool(items[i + IK_NAME_BYTES])
              for i in range(0, len(items), IK_NAME_BYTES + 1)}
        keys.append(IkKey(int(frame), bool(show), ik))
    return keys


def _decode(raw: bytes) -> str:
    """A NUL-terminated Shift-JIS name (what follows the first NUL is padding, often garbage)."""
    return raw.split(b"\0", 1)[0].decode("cp932", errors="replace")


def _names(raw: np.ndarray) -> tuple[str, ...]:
    """Decoded names of many keys, each distinct name decoded once."""
    unique, inverse = np.unique(raw, return_inverse=True)
    decoded = [_decode(bytes(u)) for u in unique]
    return tuple(decoded[i] for i in inverse.reshape(-1))
