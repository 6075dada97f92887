"""VRM Animation (.vrma, core/common/vrma.py; the add-on's `vrma` export): a motion with every joint rotating, a
travelling root and expressions is written and read back by the real independent readers in Node (three.js's
GLTFLoader with @pixiv/three-vrm-animation, the clip played by three-vrm on a humanoid with other rest orientations;
the Khronos glTF-Validator), by our own reader (round trip, other tools' layouts, damaged files), and exported from
Blender (a Mimic armature and a VRM character) then retargeted again."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from core.common import rigs, vrma
from core.common.errors import BadMotionFile, UnsupportedOutput
from core.common.motionfile import Motion, load_motion
from core.common.skeleton import Skeleton, humanoid

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "tests" / "js"
FRAMES, FPS = 48, 30.0
PRESETS_IN_MOTION = ("happy", "aa", "blink", "blinkLeft")
EXPRESSIONS = (*PRESETS_IN_MOTION, "jawOpen")  # jawOpen: an ARKit name, not a VRM preset, so not written
MAX_DEG, MAX_M = 1.0, 0.01


def synthetic_motion(fps: float = FPS, frames: int = FRAMES) -> Motion:
    """Every joint of the humanoid turning about all three axes at its own rates (up to ~50 degrees), the root
    travelling 2 m along +Z with a bob and a sway, and five expression weights."""
    sk = humanoid()
    t = np.arange(frames) / fps
    rot = np.empty((frames, sk.num_joints, 4))
    for j in range(sk.num_joints):
        euler = np.stack([0.8 * np.sin(1.3 * t + j), 0.6 * np.sin(2.1 * t + 0.5 * j), 0.5 * np.cos(1.7 * t + j)], 1)
        rot[:, j] = Rotation.from_euler("xyz", euler).as_quat(scalar_first=True)
    root = np.stack([0.1 * np.sin(3 * t), 0.95 + 0.03 * np.cos(6 * t), np.linspace(0.0, 2.0, frames)], 1)
    weights = np.stack([0.5 + 0.5 * np.sin(2 * t + k) for k in range(len(EXPRESSIONS))], 1)
    step = np.sin(2 * np.pi * t) > 0  # one foot planted at a time, both at the first frame
    contacts = np.stack([step | (t == 0), ~step], 1)
    return Motion(skeleton=sk, fps=fps, rotations=rot, root_positions=root, expressions=weights,
                  expression_names=EXPRESSIONS, contacts=contacts)


def angles_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angles (degrees) between w-x-y-z rotations a and b (..., 4), with scipy (independent of core.common)."""
    ra = Rotation.from_quat(np.reshape(a, (-1, 4)), scalar_first=True)
    rb = Rotation.from_quat(np.reshape(b, (-1, 4)), scalar_first=True)
    return np.degrees((ra.inv() * rb).magnitude()).reshape(np.shape(a)[:-1])


def world(motion: Motion) -> tuple[np.ndarray, np.ndarray]:
    """(F, J, 3) joint positions and (F, J, 4) world rotations from rest, by scipy forward kinematics."""
    glob: list[Rotation] = []
    pos = np.zeros((motion.num_frames, len(motion.names), 3))
    for j, p in enumerate(motion.parents):
        local = Rotation.from_quat(motion.rotations[:, j], scalar_first=True)
        glob.append(local if p < 0 else glob[p] * local)
        pos[:, j] = motion.root_positions if p < 0 else pos[:, p] + glob[p].apply(motion.offsets[j])
    return pos, np.stack([g.as_quat(scalar_first=True) for g in glob], axis=1)


@pytest.fixture(scope="module")
def motion() -> Motion:
    return synthetic_motion()


@pytest.fixture(scope="module")
def node() -> str:
    exe = shutil.which("node")
    if exe is None:
        pytest.skip("node is not on PATH: the independent VRMA readers (three-vrm-animation, glTF-Validator) run in "
                    "Node.js; install Node 18+ and run `npm ci --prefix tests/js`")
    if not (JS / "node_modules" / "@pixiv" / "three-vrm-animation").is_dir():
        pytest.fail("tests/js/node_modules is missing: run `npm ci --prefix tests/js` (make test does)")
    return exe


def run_node(node: str, script: str, path: Path) -> dict:
    out = subprocess.run([node, str(JS / script), str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def check_with_three(node: str, path: Path, motion: Motion) -> tuple[dict[str, float], dict]:
    """three-vrm-animation's reading of `path` against `motion`; returns the worst figures and the reading."""
    sp = vrma.spec()
    got = run_node(node, "read_vrma.mjs", path)
    assert got["warnings"] == []
    pos, glob = world(motion)
    figures: dict[str, float] = {}
    errors = []
    for j, name in enumerate(motion.names):
        track = got["rotation"][sp.bones[name]]
        times = np.array(track["times"])
        assert len(times) == motion.num_frames  # frame count
        assert np.allclose(times, np.arange(motion.num_frames) / motion.fps, atol=1e-5)  # frame rate
        values = np.array(track["values"]).reshape(-1, 4)[:, [3, 0, 1, 2]]  # glTF x-y-z-w
        errors.append(angles_deg(values, motion.rotations[:, j]))
    errors = np.array(errors)
    figures["track_max_deg"], figures["track_mean_deg"] = float(errors.max()), float(errors.mean())
    played = got["played"]["bones"]
    rot_err = np.array([angles_deg(np.array(played[sp.bones[n]]["rotations"])[:, [3, 0, 1, 2]], glob[:, j])
                        for j, n in enumerate(motion.names)])
    pos_err = np.array([np.linalg.norm(np.array(played[sp.bones[n]]["positions"]) - pos[:, j], axis=-1)
                        for j, n in enumerate(motion.names)])
    figures["played_max_deg"], figures["played_mean_deg"] = float(rot_err.max()), float(rot_err.mean())
    figures["played_max_m"] = float(pos_err.max())
    hips = np.array(got["translation"]["hips"]["values"]).reshape(-1, 3)
    figures["hips_max_m"] = float(np.linalg.norm(hips - motion.root_positions, axis=-1).max())
    assert np.allclose(got["restHipsPosition"], motion.skeleton.rest_positions()[0], atol=1e-5)
    assert figures["track_max_deg"] < MAX_DEG and figures["played_max_deg"] < MAX_DEG
    assert figures["played_max_m"] < MAX_M and figures["hips_max_m"] < MAX_M
    return figures, got


# --- the independent readers ------------------------------------------------------------------------------------------

def test_three_vrm_animation_reads_what_we_write(node: str, motion: Motion, tmp_path: Path) -> None:
    """Frame count and rate, every bone's rotation (as three-vrm-animation normalises it, and as three-vrm plays it
    on a humanoid whose bones rest with other orientations), joint positions, the hips path and the preset
    expressions; the ARKit-style name is left out."""
    start = time.perf_counter()
    path = vrma.write_vrma(tmp_path / "walk.vrma", motion)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["walk.vrma"]  # atomic: no temp file left
    figures, got = check_with_three(node, path, motion)
    assert sorted(got["expressions"]) == sorted(PRESETS_IN_MOTION)
    for k, name in enumerate(EXPRESSIONS[:len(PRESETS_IN_MOTION)]):
        assert np.allclose(got["expressions"][name]["values"], motion.expressions[:, k], atol=1e-6)
    print(f"\nVRMA three-vrm-animation: {figures} ({time.perf_counter() - start:.2f} s)")


def test_the_sample_clip_from_the_command_line(node: str, sample_motion: Path, tmp_path: Path) -> None:
    """`python -m core walk.npz -o walk.vrma` on the converted sample clip: three-vrm-animation reads every frame,
    rotations within 1 degree and the hips path within 1 cm; glTF-Validator finds no error."""
    out = tmp_path / "walk.vrma"
    proc = subprocess.run([sys.executable, "-m", "core", str(sample_motion), "-o", str(out), "--progress", "none"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    figures, _ = check_with_three(node, out, load_motion(sample_motion))
    assert run_node(node, "validate_gltf.mjs", out)["issues"]["numErrors"] == 0
    print(f"\nsample clip .vrma vs three-vrm-animation: {figures}")


def test_gltf_validator_reports_no_errors(node: str, motion: Motion, tmp_path: Path) -> None:
    path = vrma.write_vrma(tmp_path / "walk.vrma", motion)
    report = run_node(node, "validate_gltf.mjs", path)
    issues = report["issues"]
    print(f"\nVRMA glTF-Validator: {issues['numErrors']} errors, {issues['numWarnings']} warnings, "
          f"{issues['numInfos']} infos, {issues['numHints']} hints "
          f"({sorted({m['code'] for m in issues['messages']})})")
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"]
    assert report["info"]["animationCount"] == 1


# --- our reader -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fps", [FPS, 24.0, 30000 / 1001])
def test_round_trip(motion: Motion, tmp_path: Path, fps: float) -> None:
    motion = motion.with_channels(fps=fps)
    back = vrma.read_vrma(vrma.write_vrma(tmp_path / "walk.vrma", motion))
    assert back.fps == pytest.approx(fps, rel=1e-9) and back.num_frames == motion.num_frames
    assert back.names == motion.names and np.array_equal(back.parents, motion.parents)
    assert angles_deg(back.rotations, motion.rotations).max() < np.degrees(1e-5)
    assert np.abs(back.root_positions - motion.root_positions).max() < 1e-5
    assert np.abs(back.offsets - motion.offsets).max() < 1e-5
    assert back.expression_names == PRESETS_IN_MOTION
    assert np.abs(back.expressions - motion.expressions[:, :len(PRESETS_IN_MOTION)]).max() < 1e-5
    assert np.array_equal(back.contacts, motion.contacts)


def test_contacts_written_for_other_frames_are_left_out(motion: Motion, tmp_path: Path) -> None:
    """Another tool resampled the keys but kept the extras: the contacts no longer fit and are dropped, not misread."""
    data = vrma.write_vrma(tmp_path / "walk.vrma", motion).read_bytes()
    path = tmp_path / "resampled.vrma"
    path.write_bytes(edited(data, lambda j: j["animations"][0]["extras"][vrma.CONTACTS_KEY].update(frames=FRAMES * 2)))
    back = vrma.read_vrma(path)
    assert back.contacts is None and back.num_frames == FRAMES
    assert vrma.read_vrma(vrma.write_vrma(tmp_path / "none.vrma", motion.with_channels(contacts=None))).contacts is None


def test_one_frame_and_a_partial_skeleton(tmp_path: Path) -> None:
    """A single frame keeps its rate (from the animation's extras); a skeleton of the required bones only reads back
    with the missing ones as identity, the same world pose."""
    one = synthetic_motion(frames=1, fps=25.0)
    back = vrma.read_vrma(vrma.write_vrma(tmp_path / "one.vrma", one))
    assert back.num_frames == 1 and back.fps == 25.0
    full = synthetic_motion()
    required = rigs.load("humanoid_bones")["required"]
    keep = [j for j, n in enumerate(full.names) if n in required]
    parents = []
    for j in keep:  # the nearest kept ancestor
        p = int(full.parents[j])
        while p >= 0 and p not in keep:
            p = int(full.parents[p])
        parents.append(-1 if p < 0 else keep.index(p))
    rest = full.skeleton.rest_positions()
    offsets = np.array([rest[j] - (rest[keep[p]] if p >= 0 else 0.0) for j, p in zip(keep, parents)])
    glob = world(full)[1][:, keep]
    local = np.array([glob[:, k] if p < 0 else
                      (Rotation.from_quat(glob[:, p], scalar_first=True).inv()
                       * Rotation.from_quat(glob[:, k], scalar_first=True)).as_quat(scalar_first=True)
                      for k, p in enumerate(parents)]).transpose(1, 0, 2)
    part = Motion(skeleton=Skeleton(tuple(full.names[j] for j in keep), np.array(parents), offsets), fps=FPS,
                  rotations=local, root_positions=full.root_positions)
    back = vrma.read_vrma(vrma.write_vrma(tmp_path / "part.vrma", part))
    assert back.names == full.names
    missing = [j for j, n in enumerate(back.names) if n not in required]
    assert angles_deg(back.rotations[:, missing], np.array([1.0, 0, 0, 0])).max() < 1e-6
    pos_back, glob_back = world(back)
    assert angles_deg(glob_back[:, keep], glob).max() < 1e-3
    assert np.abs(pos_back[:, keep] - world(part)[0]).max() < 1e-5


def test_a_non_humanoid_skeleton_is_refused(tmp_path: Path) -> None:
    sk = Skeleton(("Root", "Tail"), np.array([-1, 0]), np.array([[0, 1.0, 0], [0, 0, -0.5]]))
    snake = Motion(skeleton=sk, fps=FPS, rotations=np.tile([1.0, 0, 0, 0], (3, 2, 1)), root_positions=np.zeros((3, 3)))
    with pytest.raises(UnsupportedOutput, match="VRM humanoid bones only.*Root, Tail"):
        vrma.write_vrma(tmp_path / "snake.vrma", snake)
    assert not list(tmp_path.iterdir())


def test_the_bone_names_are_vrm_conventions() -> None:
    """rigs/vrma.json's names are the lowerCamelCase Unity names (the thumb's shifted by one: VRM 1.0 names its
    base Metacarpal) and VRM candidates of rigs/conventions/vrm.json (body bones and fingers)."""
    data = rigs.load("conventions/vrm")
    conv = {**data["bones"], **data["fingers"]}
    thumb = {"ThumbProximal": "ThumbMetacarpal", "ThumbIntermediate": "ThumbProximal"}
    for joint, bone in vrma.spec().bones.items():
        side, rest = ("Left", joint[4:]) if joint.startswith("Left") else ("Right", joint[5:]) \
            if joint.startswith("Right") else ("", joint)
        unity = side + thumb.get(rest, rest)
        assert bone == unity[0].lower() + unity[1:] and bone in conv[joint], joint


def add_accessor(doc: dict, blob: bytearray, values: np.ndarray, kind: str) -> int:
    data = np.ascontiguousarray(values, dtype="<f4").tobytes()
    doc["bufferViews"].append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(data)})
    blob += data
    doc["buffers"][0]["byteLength"] = len(blob)
    doc["accessors"].append({"bufferView": len(doc["bufferViews"]) - 1, "componentType": 5126,
                             "count": len(values), "type": kind})
    return len(doc["accessors"]) - 1


def foreign_file(motion: Motion, path: Path, interpolation: str = "LINEAR") -> Path:
    """`motion` as another tool might write it: the skeleton under an 'Armature' node scaled 0.01 (translations in
    centimetres), every bone with its own rest rotation, and the given sampler interpolation."""
    doc, binary = vrma.document(motion)
    blob = bytearray(binary)
    rng = np.random.default_rng(7)
    joints = len(motion.names)
    rest_world = Rotation.random(joints, random_state=rng)
    rest = motion.skeleton.rest_positions()
    nodes = doc["nodes"]
    for j in range(joints):
        p = int(motion.parents[j])
        parent = rest_world[p] if p >= 0 else Rotation.identity()
        offset = motion.offsets[j] if p >= 0 else rest[0]
        nodes[j]["translation"] = (100.0 * parent.inv().apply(offset)).tolist()
        nodes[j]["rotation"] = (parent.inv() * rest_world[j]).as_quat().tolist()  # x-y-z-w
    nodes.append({"name": "Armature", "scale": [0.01, 0.01, 0.01], "children": [0]})
    doc["scenes"][0]["nodes"] = [len(nodes) - 1, *doc["scenes"][0]["nodes"][1:]]
    channels, samplers = doc["animations"][0]["channels"], doc["animations"][0]["samplers"]
    for channel in channels:
        j, what = channel["target"]["node"], channel["target"]["path"]
        sampler = samplers[channel["sampler"]]
        if j >= joints:
            values = np.zeros((motion.num_frames, 3))
            values[:, 0] = motion.expressions[:, motion.expression_names.index(nodes[j]["name"].split("_", 1)[1])]
            kind = "VEC3"
        elif what == "translation":
            values, kind = 100.0 * motion.root_positions, "VEC3"
        else:
            p = int(motion.parents[j])
            parent = rest_world[p] if p >= 0 else Rotation.identity()
            local = Rotation.from_quat(motion.rotations[:, j], scalar_first=True)
            values, kind = (parent.inv() * local * rest_world[j]).as_quat(), "VEC4"
        if interpolation == "CUBICSPLINE":  # zero tangents around each key
            values = np.stack([np.zeros_like(values), values, np.zeros_like(values)], 1).reshape(-1, values.shape[1])
        sampler["output"] = add_accessor(doc, blob, values, kind)
        sampler["interpolation"] = interpolation
    path.write_bytes(vrma.glb_bytes(doc, bytes(blob)))
    return path


@pytest.mark.parametrize("interpolation", ["LINEAR", "STEP", "CUBICSPLINE"])
def test_other_tools_layouts_read_the_same(motion: Motion, tmp_path: Path, interpolation: str) -> None:
    """Rest rotations on every bone, a scaled parent node, centimetres, any interpolation: the same motion."""
    back = vrma.read_vrma(foreign_file(motion, tmp_path / "foreign.vrma", interpolation))
    assert back.num_frames == motion.num_frames and back.fps == FPS
    assert angles_deg(back.rotations, motion.rotations).max() < 1e-3
    assert np.abs(back.root_positions - motion.root_positions).max() < 1e-5
    assert np.abs(back.offsets - motion.offsets).max() < 1e-5
    assert np.abs(back.expressions - motion.expressions[:, :len(PRESETS_IN_MOTION)]).max() < 1e-5
    assert np.array_equal(back.contacts, motion.contacts)  # the extras of the file it was built from


def test_three_vrm_animation_reads_other_layouts_the_same(node: str, motion: Motion, tmp_path: Path) -> None:
    """The check of the independent reader on the foreign layout: its rest-pose normalisation gives our motion."""
    figures, _ = check_with_three(node, foreign_file(motion, tmp_path / "foreign.vrma"), motion)
    print(f"\nVRMA foreign layout, three-vrm-animation: {figures}")


# --- damaged files ----------------------------------------------------------------------------------------------------

def glb(text: bytes, binary: bytes) -> bytes:
    """GLB bytes around any JSON text (even invalid) and a binary chunk."""
    text += b" " * (-len(text) % 4)
    return b"".join([struct.pack("<4sII", b"glTF", 2, 28 + len(text) + len(binary)),
                     struct.pack("<II", len(text), 0x4E4F534A), text, struct.pack("<II", len(binary), 0x004E4942),
                     binary])


def with_text(data: bytes, change) -> bytes:  # noqa: ANN001 - a function changing the JSON text
    doc, binary = vrma.parse_glb(data)
    return glb(change(json.dumps(doc, separators=(",", ":"))).encode(), binary or b"")


def edited(data: bytes, change) -> bytes:  # noqa: ANN001 - a function changing the JSON document in place
    doc, binary = vrma.parse_glb(data)
    change(doc)
    return vrma.glb_bytes(doc, binary or b"")


def overwrite(data: bytes, accessor: int, values: list[float]) -> bytes:
    """`data` with the first floats of an accessor replaced by `values`."""
    doc, binary = vrma.parse_glb(data)
    start = doc["bufferViews"][doc["accessors"][accessor]["bufferView"]]["byteOffset"]
    out = bytearray(binary or b"")
    out[start:start + 4 * len(values)] = struct.pack(f"<{len(values)}f", *values)
    return vrma.glb_bytes(doc, bytes(out))


DAMAGE = {
    "empty": (lambda d: b"", "shorter than a glTF binary header"),
    "header only": (lambda d: d[:12], "header says"),
    "truncated": (lambda d: d[:len(d) // 2], "truncated"),
    "one byte short": (lambda d: d[:-1], "truncated"),
    "bad magic": (lambda d: b"glTX" + d[4:], "magic"),
    "version 1": (lambda d: d[:4] + struct.pack("<I", 1) + d[8:], "version 1"),
    "chunk past the end": (lambda d: d[:12] + struct.pack("<I", len(d)) + d[16:], "runs past the end"),
    "bad JSON": (lambda d: with_text(d, lambda t: t[:len(t) // 2]), "not valid JSON"),
    "not UTF-8": (lambda d: glb(b'{"asset": {"version": "2.0\xff"}}', b""), "not valid JSON"),
    "NaN in JSON": (lambda d: with_text(d, lambda t: t.replace('"translation":[', '"translation":[NaN,', 1)),
                    "not valid JSON"),
    "JSON list": (lambda d: with_text(d, lambda t: "[1, 2]"), "not an object"),
    "no extension": (lambda d: edited(d, lambda j: j.pop("extensions")), "no VRMC_vrm_animation"),
    "spec 2.0": (lambda d: edited(d, lambda j: j["extensions"]["VRMC_vrm_animation"].update(specVersion="2.0")),
                 "specVersion '2.0'"),
    "no hips": (lambda d: edited(d, lambda j: j["extensions"]["VRMC_vrm_animation"]["humanoid"]["humanBones"]
                                 .pop("hips")), "no node to the hips"),
    "bone node out of range": (lambda d: edited(d, lambda j: j["extensions"]["VRMC_vrm_animation"]["humanoid"]
                                                ["humanBones"]["head"].update(node=999)), "node is 999"),
    "count too large": (lambda d: edited(d, lambda j: j["accessors"][5].update(count=10**6)), "more than its"),
    "times and values differ": (lambda d: edited(d, lambda j: j["accessors"][0].update(count=FRAMES - 1)),
                                "47 times but 48 values"),
    "view past the buffer": (lambda d: edited(d, lambda j: j["bufferViews"][4].update(byteOffset=10**7)),
                             "runs past the end of the buffer"),
    "NaN in the data": (lambda d: overwrite(d, 3, [float("nan")]), "NaN"),
    "infinite time": (lambda d: overwrite(d, 0, [float("inf")]), "infinite"),
    "decreasing times": (lambda d: overwrite(d, 0, [0.0, 0.5, 0.1]), "not increasing"),
    "keys 10 µs apart": (lambda d: overwrite(d, 0, list(np.arange(FRAMES) * 1e-5)), "frame rate above 1000"),
    "a key years later": (lambda d: overwrite(d, 0, list(np.arange(FRAMES - 1) / FPS) + [1e8]), "at most"),
    "negative time": (lambda d: overwrite(d, 0, [-1.0]), "negative"),
    "zero quaternion": (lambda d: overwrite(d, 3, [0.0, 0.0, 0.0, 0.0]), "zero quaternions"),
    "cycle": (lambda d: edited(d, lambda j: j["nodes"][4].update(children=[0])), "more than one parent|cycle"),
    "self child": (lambda d: edited(d, lambda j: j["nodes"][3].update(children=[3])), "more than one parent"),
    "no animation": (lambda d: edited(d, lambda j: j.pop("animations")), "no animation"),
    "bad interpolation": (lambda d: edited(d, lambda j: j["animations"][0]["samplers"][2].update(
        interpolation="SMOOTH")), "interpolation 'SMOOTH'"),
    "shifted times": (lambda d: edited(d, lambda j: j["accessors"][0].update(byteOffset=4, count=FRAMES - 1)),
                      "47 times but 48 values"),
    "stride too small": (lambda d: edited(d, lambda j: j["bufferViews"][3].update(byteStride=2)), "byteStride"),
    "unknown component type": (lambda d: edited(d, lambda j: j["accessors"][3].update(componentType=5130)),
                               "component type 5130"),
    "sparse": (lambda d: edited(d, lambda j: j["accessors"][3].update(sparse={"count": 1})), "sparse"),
    "zero scale": (lambda d: edited(d, lambda j: j["nodes"][2].update(scale=[0, 0, 0])), "zero"),
    "external buffer": (lambda d: edited(d, lambda j: j["buffers"][0].update(uri="walk.bin")), "external buffer"),
    "contacts not an object": (lambda d: edited(d, lambda j: j["animations"][0]["extras"].update(
        mimic_contacts=[1, 2])), "mimic_contacts is not an object"),
    "contact past the end": (lambda d: edited(d, lambda j: j["animations"][0]["extras"]["mimic_contacts"].update(
        left=[[0, FRAMES]])), "last frame"),
    "contact backwards": (lambda d: edited(d, lambda j: j["animations"][0]["extras"]["mimic_contacts"].update(
        right=[[5, 2]])), "last frame"),
    "contact not a pair": (lambda d: edited(d, lambda j: j["animations"][0]["extras"]["mimic_contacts"].update(
        right=[[5]])), "right holds"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_files_are_bad_motion_files(motion: Motion, tmp_path: Path, damage: str) -> None:
    good = vrma.write_vrma(tmp_path / "good.vrma", motion).read_bytes()
    change, message = DAMAGE[damage]
    path = tmp_path / "bad.vrma"
    path.write_bytes(change(good))
    with pytest.raises(BadMotionFile, match=message) as err:
        vrma.read_vrma(path)
    assert str(path) in str(err.value) and err.value.exit_code == 10


def test_fuzz_never_raises_anything_else(motion: Motion, tmp_path: Path) -> None:
    """400 seeded byte-level and JSON-level mutations: a finite Motion or BadMotionFile, nothing else."""
    good = vrma.write_vrma(tmp_path / "good.vrma", motion).read_bytes()
    doc, binary = vrma.parse_glb(good)
    rng = np.random.default_rng(20260517)
    path = tmp_path / "fuzz.vrma"
    outcomes = {"read": 0, "refused": 0}
    for _ in range(400):
        kind = rng.integers(4)
        data = bytearray(good)
        if kind == 0:  # flip bytes anywhere
            for i in rng.integers(0, len(data), int(rng.integers(1, 30))):
                data[i] = int(rng.integers(256))
        elif kind == 1:  # cut a span
            a = int(rng.integers(len(data)))
            del data[a:a + int(rng.integers(1, 200))]
        elif kind == 2:  # a JSON value replaced by another type or a huge or negative number
            text = json.dumps(doc)
            spots = [i for i, c in enumerate(text) if c in ":["]
            i = int(rng.choice(spots)) + 1
            j = i + int(rng.integers(1, 12))
            junk = str(rng.choice(["-1", "1e300", '"x"', "null", "[]", "{}", "true", "4294967295", "0.5", "NaN",
                                   "Infinity"]))
            data = bytearray(glb((text[:i] + junk + text[j:]).encode(), binary or b""))
        else:  # binary data scrambled in place
            data = bytearray(vrma.glb_bytes(doc, bytes(rng.integers(0, 256, len(binary or b""), dtype=np.uint8))))
        path.write_bytes(bytes(data))
        try:
            back = vrma.read_vrma(path)
        except BadMotionFile as err:
            assert str(path) in str(err)
            outcomes["refused"] += 1
            continue
        assert np.all(np.isfinite(back.rotations)) and np.all(np.isfinite(back.root_positions))
        outcomes["read"] += 1
    print(f"\nVRMA fuzz: {outcomes}")
    assert outcomes["refused"] > 100
    with pytest.raises(BadMotionFile, match="does not exist"):
        vrma.read_vrma(tmp_path / "missing.vrma")
    with pytest.raises(BadMotionFile, match="is a folder"):
        vrma.read_vrma(tmp_path)


# --- Blender --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["mimic", "vrm"])
def test_blender_export_retargets_like_the_original(tmp_path: Path, source: str) -> None:
    """A motion imported as the add-on does (a Mimic armature, or retargeted onto a VRM-named character with an
    A-pose rest and rolled bones), exported through the registry's `vrma` format, read back with read_vrma and
    retargeted onto the VRM rig: the same bone world rotations on every frame as retargeting the original."""
    pytest.importorskip("bpy")
    import bpy
    from test_retarget import awkward_armature, known_motion, reset_blender

    from addon import exporters, importer, retarget
    from core.common import rotations as quat

    def world_rotations(obj: bpy.types.Object, bones: list[str], frames: range) -> np.ndarray:
        mw = np.array(obj.matrix_world)[:3, :3]
        out = np.empty((len(frames), len(bones), 4))
        for f, frame in enumerate(frames):
            bpy.context.scene.frame_set(frame)
            m = np.array([mw @ np.array(obj.pose.bones[b].matrix)[:3, :3] for b in bones])
            out[f] = quat.from_matrix(m / np.linalg.norm(m, axis=-2, keepdims=True))
        return out

    reset_blender()
    original = known_motion()
    target, names = awkward_armature("vrm", seed=4)
    if source == "mimic":
        obj = importer.import_motion(bpy.context, original, "walk").armature
    else:
        obj, _ = awkward_armature("vrm", seed=4)
        importer.import_motion(bpy.context, original, "walk", target=obj)
    objects, actions = set(bpy.data.objects), set(bpy.data.actions)
    start = time.perf_counter()
    path = exporters.get("vrma").export(bpy.context, obj, tmp_path / "walk.vrma")
    seconds = time.perf_counter() - start
    assert set(bpy.data.objects) == objects and set(bpy.data.actions) == actions  # the staging rig is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["walk.vrma"]
    back = vrma.read_vrma(path)
    assert back.num_frames == original.num_frames and back.fps == original.fps
    bones = list(names.values())
    frames = range(1, original.num_frames + 1)
    retarget.retarget_motion(original, target, "original")
    want = world_rotations(target, bones, frames)
    retarget.retarget_motion(back, target, "from_vrma")
    got = world_rotations(target, bones, frames)
    err = angles_deg(got, want)
    print(f"\nVRMA Blender round trip ({source}): max {err.max():.2e} deg, mean {err.mean():.2e} deg, "
          f"export {seconds:.2f} s")
    assert err.max() < MAX_DEG
    from addon.errors import ExportError

    still = bpy.data.objects.new("Still", bpy.data.armatures.new("Still"))
    with pytest.raises(ExportError, match="Still has no action to export"):
        exporters.get("vrma").export(bpy.context, still, tmp_path / "still.vrma")
    assert not (tmp_path / "still.vrma").exists()


@pytest.mark.parametrize("source", ["mimic", "vrm"])
def test_blender_vmd_export_keys_like_writing_the_original(tmp_path: Path, source: str) -> None:
    """The `vmd` format goes through the same sampler: its bone keys are those core/common/vmd.py writes for the
    original motion (rotations within 1 degree; for the Mimic armature the centre within 1 cm too)."""
    pytest.importorskip("bpy")
    import bpy
    from test_retarget import awkward_armature, known_motion, reset_blender

    from addon import exporters, importer
    from core.common import vmd

    reset_blender()
    original = known_motion()
    if source == "mimic":
        obj = importer.import_motion(bpy.context, original, "walk").armature
    else:
        obj, _ = awkward_armature("vrm", seed=4)
        importer.import_motion(bpy.context, original, "walk", target=obj)
    got = vmd.read_vmd(exporters.get("vmd").export(bpy.context, obj, tmp_path / "walk.vmd"))
    want = vmd.read_vmd(vmd.write_vmd(tmp_path / "want.vmd", original))
    assert sorted(set(got.bone_names)) == sorted(set(want.bone_names))
    worst = 0.0
    for name in set(want.bone_names):
        frames, positions, rotations = got.bone(name)
        want_frames, want_positions, want_rotations = want.bone(name)
        assert np.array_equal(frames, want_frames), name
        worst = max(worst, float(angles_deg(rotations, want_rotations).max()))
        if source == "mimic":
            assert np.abs(positions - want_positions).max() < MAX_M * vmd.vmd_rig().units_per_metre, name
    print(f"\nVMD Blender export ({source}): max {worst:.2e} deg")
    assert worst < MAX_DEG


def test_the_sample_clips_vrma_retargets_onto_a_vrm_like_the_clip(sample_motion: Path, tmp_path: Path) -> None:
    """`python -m core walk.npz -o walk.vrma` on the converted sample clip, read back with read_vrma and retargeted
    onto a VRM-named character (A-pose, rolled bones) with the defaults (feet planted from the contacts the .vrma
    carries): every bone's world rotation on every frame within 1 degree, and the hips within 1 cm, of retargeting
    the clip's motion file itself."""
    pytest.importorskip("bpy")
    import bpy
    from test_retarget import awkward_armature, reset_blender

    from addon import retarget
    from core.common import rotations as quat

    out = tmp_path / "walk.vrma"
    proc = subprocess.run([sys.executable, "-m", "core", str(sample_motion), "-o", str(out), "--progress", "none"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    original, back = load_motion(sample_motion), vrma.read_vrma(out)
    assert back.num_frames == original.num_frames and back.fps == pytest.approx(original.fps)
    assert original.contacts is not None and original.contacts.any()
    assert np.array_equal(back.contacts, original.contacts)
    reset_blender()
    target, names = awkward_armature("vrm", seed=4)
    bones, frames = list(names.values()), range(1, original.num_frames + 1)

    def pose_of(motion: Motion, action: str) -> tuple[np.ndarray, np.ndarray]:
        retarget.retarget_motion(motion, target, action)
        mw = np.array(target.matrix_world)
        rot, hips = np.empty((len(frames), len(bones), 4)), np.empty((len(frames), 3))
        for f, frame in enumerate(frames):
            bpy.context.scene.frame_set(frame)
            m = np.array([mw[:3, :3] @ np.array(target.pose.bones[b].matrix)[:3, :3] for b in bones])
            rot[f] = quat.from_matrix(m / np.linalg.norm(m, axis=-2, keepdims=True))
            hips[f] = (mw @ np.array(target.pose.bones[names["Hips"]].matrix))[:3, 3]
        return rot, hips

    (rot_back, hips_back), (rot_orig, hips_orig) = pose_of(back, "from_vrma"), pose_of(original, "original")
    err = angles_deg(rot_back, rot_orig)
    hips_cm = 100 * float(np.abs(hips_back - hips_orig).max())
    print(f"\nsample clip .vrma re-imported by the VRM retarget (feet planted): {len(frames)} frames, {len(bones)} "
          f"bones, max {err.max():.2e} deg, mean {err.mean():.2e} deg, hips {hips_cm:.3f} cm")
    assert err.max() < MAX_DEG and hips_cm < 1.0
