"""VRM Animation (.vrma) as plain functions: `write_vrma(path, motion)` and `read_vrma(path) -> Motion`. Numpy only.

A .vrma is a glTF 2.0 binary (GLB) whose `VRMC_vrm_animation` extension (specVersion "1.0") maps VRM humanBones
and expressions to nodes. Written here: one node per joint of Mimic's humanoid in its rest pose (T-pose, every
node's rotation identity, translations = the skeleton's rest offsets in metres), one animation with a LINEAR
rotation channel per joint (local rotations, x-y-z-w as glTF orders them), a translation channel for the hips
(the root positions) and, for each VRM 1.0 preset expression the motion carries, a node whose translation.x is the
weight, and the foot contacts in the animation's extras (mimic_contacts: runs of planted frames per foot), which other
readers ignore and read_vrma gives back. Mimic's axes (Y up, the character faces +Z, its left at +X) are VRM 1.0's
and glTF's, so nothing is turned.
The bone names and expression presets are data (rigs/vrma.json); the mapping is described in docs/FORMATS.md.

Our own small GLB writer (json + struct + numpy) rather than pygltflib: this module is shared with the Blender
extension, whose Python cannot import pygltflib (it has numpy only), and the format needs only nodes, accessors and
animations, which take a page. The reader checks every byte it uses (magic, lengths, chunks, JSON, the extension,
node indices and hierarchy, accessor bounds and counts, times, finiteness) and answers a bad file with
BadMotionFile naming the file and the problem. It reads other tools' files too: rest rotations and scales of any
node, intermediate nodes, STEP / LINEAR / CUBICSPLINE samplers, missing bones (identity).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from . import rigs
from . import rotations as quat
from .atomic import atomic_path
from .errors import BadMotionFile, BadRigData, UnsupportedOutput
from .motionfile import MAX_BYTES, MAX_FRAMES, Motion, read_bytes
from .hands import full_name, hand_joint_names, motion_with_fingers, split_fingers, with_fingers
from .legs import segments
from .skeleton import Skeleton, humanoid

GLB_MAGIC = b"glTF"
GLB_VERSION = 2
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942
FLOAT = 5126
#: glTF accessor component types: numpy dtype and, for normalized integers, the divisor.
COMPONENT_TYPES: dict[int, tuple[str, float]] = {5120: ("<i1", 127.0), 5121: ("<u1", 255.0),
                                                 5122: ("<i2", 32767.0), 5123: ("<u2", 65535.0),
                                                 5125: ("<u4", 1.0), FLOAT: ("<f4", 1.0)}
TYPE_SIZES = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
PATH_TYPES = {"translation": "VEC3", "rotation": "VEC4", "scale": "VEC3"}
INTERPOLATIONS = ("LINEAR", "STEP", "CUBICSPLINE")
MAX_NODES = 100_000
MAX_FPS = 1000.0
#: A key within this fraction of a frame of a sample time is that frame (float32 times of long clips drift).
KEY_TOLERANCE = 0.01
FIX = "Export the animation again as VRM Animation (.vrma)."
#: The animation's extras key holding Mimic's foot contacts (not part of VRMA: other readers ignore it).
CONTACTS_KEY = "mimic_contacts"
FEET = ("left", "right")  # Motion.contacts' columns
#: A channel read from a file: key times (N,), values (N, k) or for CUBICSPLINE (3N, k) (rotations w-x-y-z), and
#: the interpolation.
Track = tuple[np.ndarray, np.ndarray, str]


@dataclass(frozen=True)
class VrmaSpec:
    """rigs/vrma.json: the extension's name, the version written and those read, Mimic joint -> VRM humanBone,
    and the VRM 1.0 preset expression names."""

    extension: str
    spec_version: str
    readable: tuple[str, ...]
    bones: dict[str, str]
    expressions: tuple[str, ...]


@lru_cache(maxsize=1)
def spec() -> VrmaSpec:
    """The VRM Animation mapping (rigs/vrma.json), checked against Mimic's humanoid; BadRigData if malformed."""
    data = rigs.load("vrma")
    try:
        out = VrmaSpec(str(data["extension"]), str(data["spec_version"]),
                       tuple(str(v) for v in data["readable_spec_versions"]),
                       {str(k): str(v) for k, v in data["bones"].items()},
                       tuple(str(v) for v in data["expression_presets"]))
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise BadRigData(f"Mimic's rig data {rigs.RIGS_DIR / 'vrma.json'} is malformed ({exc}).",
                         "Reinstall Mimic.") from exc
    joints = {*humanoid().names, *(full_name(side, n) for side in (0, 1) for n in hand_joint_names())}
    if set(out.bones) != joints or len(set(out.bones.values())) != len(out.bones):
        raise BadRigData(f"{rigs.RIGS_DIR / 'vrma.json'} does not map every joint of rigs/humanoid.json and "
                         "rigs/hand.json to its own VRM bone.", "Reinstall Mimic.")
    return out


# --- writing ----------------------------------------------------------------------------------------------------------

class _Blob:
    """The GLB's binary chunk being built: one bufferView and one float32 accessor per array."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.views: list[dict[str, Any]] = []
        self.accessors: list[dict[str, Any]] = []

    def add(self, values: np.ndarray, kind: str, bounds: bool = False) -> int:
        """Append (N,) or (N, k) values as float32 of glTF type `kind`; returns the accessor's index."""
        data = np.ascontiguousarray(values, dtype="<f4")
        self.views.append({"buffer": 0, "byteOffset": self.size, "byteLength": data.nbytes})
        self.parts.append(data.tobytes())
        self.size += data.nbytes  # float32 only: every offset stays 4-byte aligned
        accessor: dict[str, Any] = {"bufferView": len(self.views) - 1, "componentType": FLOAT,
                                    "count": int(data.shape[0]), "type": kind}
        if bounds:
            flat = data.reshape(data.shape[0], -1).astype(np.float64)
            accessor["min"], accessor["max"] = flat.min(axis=0).tolist(), flat.max(axis=0).tolist()
        self.accessors.append(accessor)
        return len(self.accessors) - 1


def document(motion: Motion) -> tuple[dict[str, Any], bytes]:
    """The glTF JSON and binary chunk of `motion` (joints named as Mimic's humanoid, Hips the root)."""
    sp = spec()
    skeleton, rotations = motion_with_fingers(motion)
    names = list(skeleton.names)
    unknown = [n for n in names if n not in sp.bones]
    if unknown or names[0] != "Hips":
        raise UnsupportedOutput(
            f"VRM Animation carries VRM humanoid bones only, rooted at Hips; this motion's skeleton has "
            f"{', '.join(unknown) if unknown else names[0] + ' as its root'}.",
            "Export a motion on Mimic's humanoid (a Mimic conversion, or the add-on's VRMA export, which retargets).")
    rotations = np.asarray(rotations, dtype=np.float64)
    roots = np.asarray(motion.root_positions, dtype=np.float64)
    if not (np.all(np.isfinite(rotations)) and np.all(np.isfinite(roots)) and np.isfinite(motion.fps)
            and motion.fps > 0 and motion.num_frames > 0):
        raise ValueError("write_vrma needs at least one frame, a positive frame rate and finite rotations and roots")
    blob = _Blob()
    times = blob.add(np.arange(motion.num_frames) / float(motion.fps), "SCALAR", bounds=True)
    nodes: list[dict[str, Any]] = []
    for j, name in enumerate(names):
        node: dict[str, Any] = {"name": sp.bones[name], "translation": skeleton.offsets[j].tolist()}
        children = skeleton.children(j)
        if children:
            node["children"] = children
        nodes.append(node)
    xyzw = quat.make_continuous(quat.normalize(rotations))[..., [1, 2, 3, 0]]
    samplers: list[dict[str, Any]] = []
    channels: list[dict[str, Any]] = []

    def animate(node: int, path: str, values: np.ndarray) -> None:
        channels.append({"sampler": len(samplers), "target": {"node": node, "path": path}})
        samplers.append({"input": times, "output": blob.add(values, PATH_TYPES[path]), "interpolation": "LINEAR"})

    animate(0, "translation", roots)
    for j in range(len(names)):
        animate(j, "rotation", xyzw[:, j])
    extension: dict[str, Any] = {"specVersion": sp.spec_version,
                                 "humanoid": {"humanBones": {sp.bones[n]: {"node": j} for j, n in enumerate(names)}}}
    scene = [0]
    if motion.expressions is not None:
        weights = np.asarray(motion.expressions, dtype=np.float64)
        presets: dict[str, dict[str, int]] = {}
        for k, name in enumerate(motion.expression_names):
            if name in sp.expressions and name not in presets and np.all(np.isfinite(weights[:, k])):
                presets[name] = {"node": len(nodes)}
                scene.append(len(nodes))
                nodes.append({"name": f"expression_{name}"})
                values = np.zeros((motion.num_frames, 3))
                values[:, 0] = weights[:, k]
                animate(presets[name]["node"], "translation", values)
        if presets:
            extension["expressions"] = {"preset": presets}
    doc = {"asset": {"version": "2.0", "generator": "Mimic (core/common/vrma.py)"},
           "extensionsUsed": [sp.extension], "extensions": {sp.extension: extension},
           "scene": 0, "scenes": [{"nodes": scene}], "nodes": nodes,
           "animations": [{"name": str(motion.meta.get("name", "Mimic")), "channels": channels,
                           "samplers": samplers, "extras": _extras(motion)}],
           "accessors": blob.accessors, "bufferViews": blob.views,
           "buffers": [{"byteLength": blob.size}]}
    return doc, b"".join(blob.parts)


def _extras(motion: Motion) -> dict[str, Any]:
    """The animation's extras: the frame rate and, when the motion has them, its foot contacts as runs of planted
    frames per foot ([first, last] inclusive), so that a re-import plants the feet as the motion file would."""
    extras: dict[str, Any] = {"fps": float(motion.fps)}
    if motion.contacts is not None:
        planted = np.asarray(motion.contacts, dtype=bool)
        extras[CONTACTS_KEY] = {"frames": motion.num_frames,
                                **{foot: [list(run) for run in segments(planted[:, k])] for k, foot in enumerate(FEET)}}
    return extras


def glb_bytes(doc: dict[str, Any], binary: bytes) -> bytes:
    """A GLB file: 12-byte header, the JSON chunk (space-padded) and the BIN chunk (zero-padded), 4-byte aligned."""
    text = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("utf-8")
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    return b"".join([struct.pack("<4sII", GLB_MAGIC, GLB_VERSION, total), struct.pack("<II", len(text), CHUNK_JSON),
                     text, struct.pack("<II", len(binary), CHUNK_BIN), binary])


def write_vrma(path: Path, motion: Motion) -> Path:
    """Write `motion` (on Mimic's humanoid or a subset rooted at Hips) as a VRM Animation at `path`, atomically;
    returns the path. UnsupportedOutput if its joints are not humanoid bones."""
    path = Path(path)
    data = glb_bytes(*document(motion))
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


# --- reading ----------------------------------------------------------------------------------------------------------

class _Invalid(ValueError):
    """What is wrong with the file, in words (becomes BadMotionFile)."""


def _need(condition: bool, problem: str) -> None:
    if not condition:
        raise _Invalid(problem)


def _int(value: Any, what: str, low: int = 0, high: int | None = None) -> int:
    """`value` as an index low <= i < high; _Invalid names `what` otherwise."""
    _need(isinstance(value, int) and not isinstance(value, bool) and value >= low
          and (high is None or value < high), f"{what} is {value!r}")
    return int(value)


def _numbers(value: Any, size: int, what: str) -> np.ndarray:
    """A JSON list of `size` finite numbers."""
    ok = isinstance(value, list) and len(value) == size and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    _need(ok, f"{what} is not a list of {size} numbers")
    out = np.asarray(value, dtype=np.float64)
    _need(bool(np.all(np.isfinite(out))), f"{what} holds NaN or infinite values")
    return out


def parse_glb(data: bytes) -> tuple[dict[str, Any], bytes | None]:
    """The JSON document and the BIN chunk (None when absent) of GLB bytes; _Invalid says what is wrong."""
    _need(len(data) >= 12, f"{len(data)} bytes, shorter than a glTF binary header")
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    _need(magic == GLB_MAGIC, f"it does not start with glTF's magic (found {magic!r})")
    _need(version == GLB_VERSION, f"glTF binary version {version}, not 2")
    _need(length == len(data), f"the header says {length} bytes but the file has {len(data)} (truncated?)")
    chunks: list[tuple[int, bytes]] = []
    offset = 12
    while offset < len(data):
        _need(offset + 8 <= len(data), f"a chunk header at byte {offset} runs past the end")
        size, kind = struct.unpack_from("<II", data, offset)
        _need(offset + 8 + size <= len(data), f"a chunk of {size} bytes at byte {offset} runs past the end")
        chunks.append((kind, data[offset + 8:offset + 8 + size]))
        offset += 8 + size
    _need(bool(chunks) and chunks[0][0] == CHUNK_JSON, "the first chunk is not JSON")
    try:
        doc = json.loads(chunks[0][1].decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _Invalid(f"its JSON chunk is not valid JSON ({exc})") from None
    _need(isinstance(doc, dict), "its JSON chunk is not an object")
    binary = chunks[1][1] if len(chunks) > 1 and chunks[1][0] == CHUNK_BIN else None
    return doc, binary


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


class _Document:
    """A parsed glTF document with its binary chunk: checked access to lists, nodes and accessors."""

    def __init__(self, doc: dict[str, Any], binary: bytes | None) -> None:
        self.doc = doc
        self.binary = binary
        self._cache: dict[int, np.ndarray] = {}

    def items(self, key: str) -> list[Any]:
        value = self.doc.get(key, [])
        _need(isinstance(value, list) and all(isinstance(v, dict) for v in value), f"'{key}' is not a list of objects")
        return value

    def accessor(self, index: Any, what: str) -> np.ndarray:
        """Accessor `index` as float64 (count, components), every bound checked; normalized integers scaled."""
        accessors = self.items("accessors")
        i = _int(index, f"{what}'s accessor", 0, len(accessors))
        if i not in self._cache:
            self._cache[i] = self._read_accessor(accessors[i], f"accessor {i} ({what})")
        return self._cache[i]

    def _read_accessor(self, acc: dict[str, Any], what: str) -> np.ndarray:
        _need("sparse" not in acc, f"{what} is sparse, which this reader does not support")
        kind = acc.get("type")
        _need(kind in TYPE_SIZES, f"{what} has type {kind!r}")
        ctype = acc.get("componentType")
        _need(ctype in COMPONENT_TYPES, f"{what} has component type {ctype!r}")
        count = _int(acc.get("count"), f"{what}'s count", 1, MAX_FRAMES * 3 + 1)
        width = TYPE_SIZES[kind]
        dtype, scale = np.dtype(COMPONENT_TYPES[ctype][0]), COMPONENT_TYPES[ctype][1]
        if "bufferView" not in acc:  # glTF: an accessor without a buffer view is all zeros
            return np.zeros((count, width))
        views = self.items("bufferViews")
        view = views[_int(acc["bufferView"], f"{what}'s bufferView", 0, len(views))]
        buffers = self.items("buffers")
        b = _int(view.get("buffer"), f"{what}'s buffer", 0, len(buffers))
        _need(b == 0 and "uri" not in buffers[b], f"{what} lies in an external buffer; a .vrma holds one binary chunk")
        _need(self.binary is not None, f"{what} needs the binary chunk, which the file lacks")
        assert self.binary is not None
        buffer_length = _int(buffers[b].get("byteLength"), "the buffer's byteLength", 1, len(self.binary) + 1)
        start = _int(view.get("byteOffset", 0), f"{what}'s bufferView byteOffset")
        length = _int(view.get("byteLength"), f"{what}'s bufferView byteLength", 1)
        _need(start + length <= buffer_length, f"{what}'s bufferView runs past the end of the buffer")
        element = dtype.itemsize * width
        stride = _int(view.get("byteStride", element), f"{what}'s byteStride", element, 253)
        first = _int(acc.get("byteOffset", 0), f"{what}'s byteOffset")
        _need(first + (count - 1) * stride + element <= length,
              f"{what} claims {count} x {kind} values, more than its bufferView's {length} bytes hold")
        if stride == element:
            values = np.frombuffer(self.binary, dtype, count=count * width, offset=start + first)
        else:
            raw = np.frombuffer(self.binary, np.uint8, count=length, offset=start)
            values = raw[first + np.arange(count)[:, None] * stride + np.arange(element)[None, :]].copy().view(dtype)
        with np.errstate(invalid="ignore"):  # signalling NaNs in damaged data: refused just below
            values = values.reshape(count, width).astype(np.float64)
        if ctype != FLOAT and acc.get("normalized", False):
            values = np.maximum(values / scale, -1.0)
        _need(bool(np.all(np.isfinite(values))), f"{what} holds NaN or infinite values")
        return values

    def node_rest(self, node: dict[str, Any], i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Node i's rest translation (3,), rotation w-x-y-z (4,) and scale (3,), from TRS or its matrix."""
        if "matrix" in node:
            m = _numbers(node["matrix"], 16, f"node {i}'s matrix").reshape(4, 4).T  # glTF: column-major
            scale = np.linalg.norm(m[:3, :3], axis=0)
            _need(bool(np.all(scale > 1e-12)) and np.linalg.det(m[:3, :3]) > 0, f"node {i}'s matrix is degenerate")
            return m[:3, 3], quat.from_matrix(m[:3, :3] / scale), scale
        translation = _numbers(node.get("translation", [0.0, 0.0, 0.0]), 3, f"node {i}'s translation")
        xyzw = _numbers(node.get("rotation", [0.0, 0.0, 0.0, 1.0]), 4, f"node {i}'s rotation")
        _need(np.linalg.norm(xyzw) > 1e-6, f"node {i}'s rotation is a zero quaternion")
        scale = _numbers(node.get("scale", [1.0, 1.0, 1.0]), 3, f"node {i}'s scale")
        _need(bool(np.all(np.abs(scale) > 1e-12)), f"node {i}'s scale has a zero")
        return translation, quat.normalize(xyzw[[3, 0, 1, 2]]), scale


def _hierarchy(nodes: list[dict[str, Any]]) -> tuple[np.ndarray, list[int]]:
    """(N,) each node's parent (-1 for roots) from the children lists, and the nodes parents-first; _Invalid on bad
    indices, shared children or cycles (nodes no root reaches)."""
    parents = np.full(len(nodes), -1, dtype=np.int64)
    children: list[list[int]] = []
    for i, node in enumerate(nodes):
        kids = node.get("children", [])
        _need(isinstance(kids, list), f"node {i}'s children is not a list")
        children.append([_int(c, f"a child of node {i}", 0, len(nodes)) for c in kids])
        for c in children[-1]:
            _need(parents[c] < 0 and c != i, f"node {c} has more than one parent")
            parents[c] = i
    order = [int(i) for i in np.flatnonzero(parents < 0)]
    for i in order:  # grows while it is walked: breadth first from the roots
        order.extend(children[i])
    _need(len(order) == len(nodes), "the node hierarchy has a cycle")
    return parents, order


def _key_frames(times: np.ndarray, at: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For sample times `at` (F,) in keyframe times (N,): lower and upper key index and the blend 0..1, snapped to a
    key within `tolerance` seconds of it (so float32 key times give the keys' values exactly)."""
    idx = np.searchsorted(times, at, side="right") - 1
    lo = np.clip(idx, 0, len(times) - 1)
    hi = np.clip(idx + 1, 0, len(times) - 1)
    span = times[hi] - times[lo]
    a = np.clip(np.where(span > 0, (at - times[lo]) / np.where(span > 0, span, 1.0), 0.0), 0.0, 1.0)
    a = np.where(at - times[lo] < tolerance, 0.0, a)
    return lo, hi, np.where(times[hi] - at < tolerance, 1.0, a)


def _sample(times: np.ndarray, values: np.ndarray, interpolation: str, at: np.ndarray, rotation: bool,
            tolerance: float) -> np.ndarray:
    """A glTF sampler evaluated at times `at` (F,) -> (F, k), keys within `tolerance` seconds taken as they are;
    rotations are w-x-y-z in and out."""
    lo, hi, a = _key_frames(times, at, tolerance)
    if interpolation == "STEP":
        return values[np.where(a >= 1.0, hi, lo)]
    if interpolation == "CUBICSPLINE":  # values: in-tangent, value, out-tangent per key
        v = values.reshape(len(times), 3, -1)
        dt = (times[hi] - times[lo])[:, None]
        s = a[:, None]
        out = ((2 * s**3 - 3 * s**2 + 1) * v[lo, 1] + (s**3 - 2 * s**2 + s) * dt * v[lo, 2]
               + (-2 * s**3 + 3 * s**2) * v[hi, 1] + (s**3 - s**2) * dt * v[hi, 0])
        return quat.normalize(out) if rotation else out
    if rotation:
        return quat.slerp(values[lo], values[hi], a)
    return values[lo] * (1.0 - a[:, None]) + values[hi] * a[:, None]


def _frame_rate(inputs: list[np.ndarray], extras: Any) -> float:
    """Frames per second from the densest keyframe times (snapped to a whole or NTSC rate within 1e-4), else the
    animation's extras.fps (a one-key file), else 30."""
    dense = max(inputs, key=len)
    if len(dense) > 1:
        fps = 1.0 / float(np.median(np.diff(dense)))
        for rate in (round(fps), round(fps * 1.001) / 1.001):
            if rate > 0 and abs(fps - rate) <= 1e-4 * rate:
                return float(rate)
        return round(fps, 6)
    fps = extras.get("fps") if isinstance(extras, dict) else None
    ok = isinstance(fps, (int, float)) and not isinstance(fps, bool) and np.isfinite(fps) and 0 < fps <= 1000
    return float(fps) if ok else 30.0


def _matrices(t: np.ndarray, q: np.ndarray, s: np.ndarray) -> np.ndarray:
    """(F, 4, 4) transforms from translations (F, 3), rotations w-x-y-z (F, 4) and scales (F, 3)."""
    m = np.zeros((len(t), 4, 4))
    m[:, :3, :3] = quat.to_matrix(q) * s[:, None, :]
    m[:, :3, 3] = t
    m[:, 3, 3] = 1.0
    return m


def _rotations_of(m: np.ndarray) -> np.ndarray:
    """(F, 4) w-x-y-z rotations of (F, 4, 4) transforms (scale removed)."""
    r = m[:, :3, :3]
    return quat.from_matrix(r / np.linalg.norm(r, axis=-2, keepdims=True))


def _humanoid(ext: dict[str, Any], count: int) -> tuple[dict[str, int], dict[str, int]]:
    """Mimic joint -> node and expression name (presets, then custom) -> node, from the extension; bones Mimic's
    humanoid lacks (upperChest, fingers, eyes) are left out."""
    sp = spec()
    bones = ext.get("humanoid", {}).get("humanBones") if isinstance(ext.get("humanoid"), dict) else None
    _need(isinstance(bones, dict), f"{sp.extension} has no humanoid.humanBones")
    vrm_to_joint = {v: k for k, v in sp.bones.items()}
    joint_node: dict[str, int] = {}
    for name, bone in bones.items():
        _need(isinstance(bone, dict), f"humanBone {name!r} is not an object")
        node = _int(bone.get("node"), f"humanBone {name!r}'s node", 0, count)
        if name in vrm_to_joint:
            joint_node[vrm_to_joint[name]] = node
    _need("Hips" in joint_node, "it maps no node to the hips bone")
    expression_node: dict[str, int] = {}
    expressions = ext.get("expressions", {})
    _need(isinstance(expressions, dict), f"{sp.extension}.expressions is not an object")
    for group in ("preset", "custom"):
        entries = expressions.get(group, {})
        _need(isinstance(entries, dict), f"expressions.{group} is not an object")
        for name, entry in entries.items():
            _need(isinstance(entry, dict), f"expression {name!r} is not an object")
            expression_node[str(name)] = _int(entry.get("node"), f"expression {name!r}'s node", 0, count)
    return joint_node, expression_node


def _tracks(gltf: _Document, anim: dict[str, Any], count: int) -> dict[tuple[int, str], Track]:
    """(node, path) -> its track, for every translation, rotation and scale channel of animation `anim`."""
    samplers, channels = anim.get("samplers"), anim.get("channels")
    _need(isinstance(samplers, list) and isinstance(channels, list) and bool(channels)
          and all(isinstance(v, dict) for v in [*samplers, *channels]), "its animation has no channels or samplers")
    tracks: dict[tuple[int, str], Track] = {}
    for c, channel in enumerate(channels):
        target = channel.get("target")
        _need(isinstance(target, dict), f"animation channel {c} has no target")
        if "node" not in target or target.get("path") not in PATH_TYPES:
            continue  # morph-target weights or another extension's target: nothing of a humanoid
        node = _int(target["node"], f"animation channel {c}'s node", 0, count)
        sampler = samplers[_int(channel.get("sampler"), f"animation channel {c}'s sampler", 0, len(samplers))]
        interpolation = sampler.get("interpolation", "LINEAR")
        _need(interpolation in INTERPOLATIONS, f"animation channel {c} has interpolation {interpolation!r}")
        times = gltf.accessor(sampler.get("input"), f"channel {c}'s times")[:, 0]
        values = gltf.accessor(sampler.get("output"), f"channel {c}'s values")
        width = TYPE_SIZES[PATH_TYPES[target["path"]]]
        keys = len(times) * (3 if interpolation == "CUBICSPLINE" else 1)
        _need(values.shape == (keys, width), f"animation channel {c} has {len(times)} times but {values.shape[0]} "
              f"values of {values.shape[1]} components (expected {keys} of {width})")
        _need(times[0] >= 0 and bool(np.all(np.diff(times) > 0)),
              f"animation channel {c}'s times are negative or not increasing")
        if target["path"] == "rotation":  # x-y-z-w -> w-x-y-z; key values unit (cubic tangents stay as they are)
            values = values[:, [3, 0, 1, 2]]
            at_keys = slice(1, None, 3) if interpolation == "CUBICSPLINE" else slice(None)
            norms = np.linalg.norm(values[at_keys], axis=1)
            _need(bool(np.all(norms > 1e-6)), f"animation channel {c} holds zero quaternions")
            values[at_keys] /= norms[:, None]
        tracks[(node, target["path"])] = times, values, interpolation
    _need(bool(tracks), "its animation animates no node")
    return tracks


def _frame_times(tracks: dict[tuple[int, str], Track], extras: Any) -> tuple[float, np.ndarray]:
    """The frame rate and the (F,) sample times spanning every track's keys."""
    inputs = [t for t, _, _ in tracks.values()]
    start = min(float(t[0]) for t in inputs)
    fps = _frame_rate(inputs, extras)
    _need(fps <= MAX_FPS, f"its keys are {1 / fps:.2g} s apart, a frame rate above {MAX_FPS:g} fps")
    frames = int(round((max(float(t[-1]) for t in inputs) - start) * fps)) + 1
    _need(frames <= MAX_FRAMES, f"it lasts {frames} frames (at most {MAX_FRAMES} are read)")
    return fps, start + np.arange(frames) / fps


def _transforms(gltf: _Document, nodes: list[dict[str, Any]], parents: np.ndarray, order: list[int],
                wanted: list[int], tracks: dict[tuple[int, str], Track], at: np.ndarray, fps: float
                ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], dict[int, np.ndarray]]:
    """For the `wanted` nodes and their ancestors: rest world transforms (1, 4, 4), posed world transforms
    (F, 4, 4) at times `at`, and posed local translations (F, 3)."""
    needed: set[int] = set()
    for n in wanted:
        while n >= 0 and n not in needed:
            needed.add(n)
            n = int(parents[n])
    size = len(at) * len(needed) * 2 * 16 * 8  # posed transforms, local and world, float64
    _need(size <= MAX_BYTES, f"sampling its {len(at)} frames of {len(needed)} nodes would take "
          f"{size / 2**30:.1f} GiB")
    rest_world: dict[int, np.ndarray] = {}
    posed_world: dict[int, np.ndarray] = {}
    local_t: dict[int, np.ndarray] = {}
    for n in (n for n in order if n in needed):
        t, q, s = gltf.node_rest(nodes[n], n)
        rest = _matrices(t[None], q[None], s[None])
        posed = {"translation": np.broadcast_to(t, (len(at), 3)), "rotation": np.broadcast_to(q, (len(at), 4)),
                 "scale": np.broadcast_to(s, (len(at), 3))}
        for key in posed:
            if (n, key) in tracks:
                times, values, interpolation = tracks[(n, key)]
                posed[key] = _sample(times, values, interpolation, at, key == "rotation", KEY_TOLERANCE / fps)
        local = _matrices(posed["translation"], posed["rotation"], posed["scale"])
        p = int(parents[n])
        rest_world[n] = rest if p < 0 else rest_world[p] @ rest
        posed_world[n] = local if p < 0 else posed_world[p] @ local
        local_t[n] = posed["translation"]
    return rest_world, posed_world, local_t


def _contacts(extras: Any, frames: int) -> np.ndarray | None:
    """(frames, 2) bool foot contacts from the animation's extras (_extras), or None when the file has none or they
    were written for another frame count (a tool that resampled the keys); _Invalid when they are damaged."""
    runs = extras.get(CONTACTS_KEY) if isinstance(extras, dict) else None
    if runs is None:
        return None
    _need(isinstance(runs, dict), f"extras.{CONTACTS_KEY} is not an object")
    written = _int(runs.get("frames"), f"extras.{CONTACTS_KEY}.frames", 1, MAX_FRAMES + 1)
    if written != frames:
        return None
    planted = np.zeros((frames, len(FEET)), dtype=bool)
    for k, foot in enumerate(FEET):
        spans = runs.get(foot)
        _need(isinstance(spans, list), f"extras.{CONTACTS_KEY}.{foot} is not a list")
        for span in spans:
            _need(isinstance(span, list) and len(span) == 2, f"extras.{CONTACTS_KEY}.{foot} holds {span!r}")
            first = _int(span[0], f"a contact's first frame in extras.{CONTACTS_KEY}.{foot}", 0, frames)
            last = _int(span[1], f"a contact's last frame in extras.{CONTACTS_KEY}.{foot}", first, frames)
            planted[first:last + 1, k] = True
    return planted


def _read(doc: dict[str, Any], binary: bytes | None, path: Path) -> Motion:
    """The Motion a parsed .vrma holds (see read_vrma); _Invalid says what is wrong."""
    sp = spec()
    gltf = _Document(doc, binary)
    asset = doc.get("asset")
    _need(isinstance(asset, dict) and str(asset.get("version", "")).startswith("2."), "it is not glTF 2.0")
    used = doc.get("extensionsUsed", [])
    extensions = doc.get("extensions", {})
    _need(isinstance(used, list) and sp.extension in used and isinstance(extensions, dict)
          and isinstance(extensions.get(sp.extension), dict),
          f"it has no {sp.extension} extension: a glTF file, but not a VRM Animation")
    ext = extensions[sp.extension]
    version = ext.get("specVersion", sp.spec_version)
    _need(version in sp.readable, f"{sp.extension} specVersion {version!r} (this Mimic reads "
          f"{', '.join(sp.readable)})")
    nodes = gltf.items("nodes")
    _need(0 < len(nodes) <= MAX_NODES, f"it has {len(nodes)} nodes")
    parents, order = _hierarchy(nodes)
    joint_node, expression_node = _humanoid(ext, len(nodes))
    animations = gltf.items("animations")
    _need(bool(animations), "it has no animation")
    tracks = _tracks(gltf, animations[0], len(nodes))
    fps, at = _frame_times(tracks, animations[0].get("extras"))
    rest_world, posed_world, local_t = _transforms(gltf, nodes, parents, order,
                                                   [*joint_node.values(), *expression_node.values()], tracks, at, fps)

    skeleton = humanoid()
    if any(n not in skeleton.names for n in joint_node):  # the file has fingers: read them too
        skeleton, _ = with_fingers(skeleton, np.zeros((0, skeleton.num_joints, 4)), np.zeros((0, 2, 15, 4)),
                                   hand_joint_names())
    names = skeleton.names
    delta = np.empty((len(at), len(names), 4))  # world rotation of each joint relative to its rest, Mimic axes
    rest_pos = np.zeros((len(names), 3))
    for j, name in enumerate(names):
        p = int(skeleton.parents[j])
        if name in joint_node:
            n = joint_node[name]
            delta[:, j] = quat.multiply(_rotations_of(posed_world[n]), quat.inverse(_rotations_of(rest_world[n])))
            rest_pos[j] = rest_world[n][0, :3, 3]
        else:  # a bone the file lacks: identity, at its parent joint
            delta[:, j] = delta[:, p]
            rest_pos[j] = rest_pos[p]
    local = delta.copy()
    local[:, 1:] = quat.multiply(quat.inverse(delta[:, skeleton.parents[1:]]), delta[:, 1:])
    offsets = rest_pos.copy()
    offsets[1:] -= rest_pos[skeleton.parents[1:]]
    root = posed_world[joint_node["Hips"]][:, :3, 3]
    _need(bool(np.all(np.isfinite(local)) and np.all(np.isfinite(root)) and np.all(np.isfinite(offsets))),
          "its transforms give NaN or infinite poses (a zero scale?)")
    expression_names = [n for n in sp.expressions if n in expression_node]
    expression_names += [n for n in expression_node if n not in sp.expressions]
    weights = None
    if expression_names:
        weights = np.stack([local_t[expression_node[n]][:, 0] for n in expression_names], axis=1)
    meta = {"source": {"path": str(path), "format": "vrma"},
            "vrma": {"start_s": float(at[0]), "spec_version": version,
                     "bones": sorted(sp.bones[j] for j in joint_node)}}
    body, local, hands, hand_joints = split_fingers(Skeleton(names, skeleton.parents, offsets, skeleton.end_sites),
                                                    quat.make_continuous(quat.normalize(local)))
    return Motion(skeleton=body, fps=fps, rotations=local, root_positions=root, hand_rotations=hands,
                  hand_joints=hand_joints, expressions=weights, expression_names=tuple(expression_names),
                  contacts=_contacts(animations[0].get("extras"), len(at)), meta=meta)


def read_vrma(path: Path) -> Motion:
    """A VRM Animation as a Motion on Mimic's humanoid: local rotations relative to the T-pose (bones the file lacks
    are identity), the hips' world positions (metres), rest offsets from the file's rest pose, the frame rate from
    the keyframe times, preset and custom expression weights, Mimic's foot contacts when the file carries them.
    Every problem is a BadMotionFile naming the file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise _Invalid(f"{size / 2**30:.1f} GiB, more than Mimic reads")
        doc, binary = parse_glb(read_bytes(path, "VRM Animation", ".vrma"))
        return _read(doc, binary, path)
    except FileNotFoundError:  # from stat(); read_bytes names its own failures
        raise BadMotionFile(f"VRM Animation {path} does not exist.", "Check the path.") from None
    except OSError as exc:
        raise BadMotionFile(f"Cannot read VRM Animation {path}: {exc.strerror or exc}.",
                            "Check the path and permissions.") from None
    except _Invalid as exc:
        raise BadMotionFile(f"{path} is not a readable VRM Animation: {exc}.", FIX) from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, struct.error,
            RecursionError, MemoryError) as exc:  # anything a damaged file provokes that the checks above missed
        raise BadMotionFile(f"{path} is not a readable VRM Animation ({type(exc).__name__}: {exc}).", FIX) from exc
