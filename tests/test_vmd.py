"""core.common.vmd: a moving, turning, travelling humanoid with expressions written as an MMD motion (.vmd) and read by
another reader, mmd-parser (Node, tests/js/read_vmd.mjs): names, frames at 30 fps, every bone's rotation turned back
into Mimic's axes and T-pose rest, the centre's path and the morphs match the motion; an MMD-like skeleton (A-pose arms,
MMD's left-handed axes and units) driven by the file's raw values puts every joint where Mimic's forward kinematics
does; our own reader gives the same keys; damaged files are BadMotionFile."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from core.common.errors import BadMotionFile, UnsupportedOutput
from core.common.motionfile import Motion, load_motion
from core.common.skeleton import Skeleton, humanoid
from core.common.vmd import read_vmd, write_vmd
from core.scipy_rotations import from_wxyz, to_wxyz

ROOT = Path(__file__).resolve().parent.parent
READER = ROOT / "tests" / "js" / "read_vmd.mjs"
RIG = json.loads((ROOT / "rigs" / "vmd.json").read_text(encoding="utf-8"))
SOURCE_FPS, FRAMES = 50.0, 101  # 2 s at 50 fps: MMD's 30 fps gives 61 frames, none on a source frame but 0, 5, 10 ...
KEYS = 61
UNITS = 12.5  # MMD units per metre (1 unit = 8 cm)
EXPRESSIONS = ("aa", "blink", "blinkLeft", "happy", "jawOpen")
MORPHS = {"aa": "あ", "blink": "まばたき", "blinkLeft": "ウィンク", "happy": "笑い"}  # jawOpen has no MMD morph
#: The standard MMD model's bones: the Mimic joint each one follows and its parent (what its key is relative to).
STANDARD = {
    "センター": (None, None),
    "下半身": ("Hips", "センター"), "上半身": ("Spine", "センター"), "上半身2": ("Chest", "上半身"),
    "首": ("Neck", "上半身2"), "頭": ("Head", "首"),
    "左肩": ("LeftShoulder", "上半身2"), "左腕": ("LeftUpperArm", "左肩"), "左ひじ": ("LeftLowerArm", "左腕"),
    "左手首": ("LeftHand", "左ひじ"),
    "右肩": ("RightShoulder", "上半身2"), "右腕": ("RightUpperArm", "右肩"), "右ひじ": ("RightLowerArm", "右腕"),
    "右手首": ("RightHand", "右ひじ"),
    "左足": ("LeftUpperLeg", "下半身"), "左ひざ": ("LeftLowerLeg", "左足"), "左足首": ("LeftFoot", "左ひざ"),
    "左つま先": ("LeftToes", "左足首"), "左足先EX": ("LeftToes", "左足首"),
    "右足": ("RightUpperLeg", "下半身"), "右ひざ": ("RightLowerLeg", "右足"), "右足首": ("RightFoot", "右ひざ"),
    "右つま先": ("RightToes", "右足首"), "右足先EX": ("RightToes", "右足首"),
}
LINEAR_ROW = [20] * 8 + [107] * 8  # x1, y1 (X, Y, Z, rotation) at 20/127, x2, y2 at 107/127: straight lines


def skeleton() -> Skeleton:
    """The humanoid with other proportions than the default (the file must not depend on them)."""
    base = humanoid()
    scale = np.random.default_rng(3).uniform(0.85, 1.15, (base.num_joints, 1))
    return base.with_offsets(base.offsets * scale, base.end_sites)


def pose(sk: Skeleton, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smooth analytic motion at `times` (T,) seconds: (T, J, 4) rotations (every joint swinging up to ~45 degrees
    about all three axes; the hips also turning 120 degrees), (T, 3) root travelling 1.6 m and bobbing, (T, E)
    expression weights."""
    rng = np.random.default_rng(11)
    amp = rng.uniform(0.25, 0.8, (sk.num_joints, 3))
    freq = rng.uniform(0.3, 0.9, (sk.num_joints, 3))
    phase = rng.uniform(0.0, 2 * np.pi, (sk.num_joints, 3))
    t = times[:, None, None]
    rotvec = amp * np.sin(2 * np.pi * freq * t + phase)
    rot = Rotation.from_rotvec(rotvec.reshape(-1, 3))
    rotations = to_wxyz(rot).reshape(len(times), sk.num_joints, 4)
    turn = Rotation.from_rotvec(np.outer(times / times[-1] * np.radians(120.0), [0.0, 1.0, 0.0]))
    rotations[:, 0] = to_wxyz(turn * from_wxyz(rotations[:, 0]))
    root = np.stack([0.8 * times, 0.9 + 0.05 * np.sin(2 * np.pi * 1.5 * times),
                     0.4 * times + 0.2 * np.sin(2 * np.pi * times)], axis=1)
    expressions = 0.5 + 0.5 * np.sin(2 * np.pi * np.outer(times, [0.7, 1.3, 0.4, 0.9, 1.1]) + [0, 1, 2, 3, 4])
    return rotations, root, expressions


def rest(name: str) -> Rotation:
    """The standard model's rest rotation of bone `name` from Mimic's T-pose, from rigs/vmd.json: its chain hangs
    rest_down_deg below the horizontal, turned about the forward axis (+Z) towards the floor on its side."""
    angle = next((np.radians(b.get("rest_down_deg", 0.0)) for b in RIG["bones"] if b["name"] == name), 0.0)
    side = {"左": 1.0, "右": -1.0}.get(name[0], 0.0)
    return Rotation.from_rotvec([0.0, 0.0, -side * angle])


def node_read(path: Path) -> dict:
    """The .vmd as mmd-parser reads it (tests/js/read_vmd.mjs)."""
    if shutil.which("node") is None:
        pytest.skip("node is not on PATH: the independent reader (mmd-parser) runs in Node.js")
    assert (ROOT / "tests" / "js" / "node_modules" / "mmd-parser").is_dir(), \
        "mmd-parser is not installed: run `npm ci --prefix tests/js` (make test does)"
    out = subprocess.run(["node", str(READER), str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return json.loads(out.stdout)


def keys(bones: dict, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bone `name`'s frames (K,), positions (K, 3), quaternions (K, 4) x-y-z-w from the Node reader, by frame."""
    idx = [i for i, n in enumerate(bones["names"]) if n == name]
    idx = sorted(idx, key=lambda i: bones["frames"][i])
    return (np.array([bones["frames"][i] for i in idx]), np.array([bones["positions"][i] for i in idx]),
            np.array([bones["rotations"][i] for i in idx]))


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The motion at 50 fps written as .vmd; the truth at MMD's 30 fps times; what read_vmd reads."""
    sk = skeleton()
    rotations, root, expressions = pose(sk, np.arange(FRAMES) / SOURCE_FPS)
    motion = Motion(skeleton=sk, fps=SOURCE_FPS, rotations=rotations, root_positions=root, expressions=expressions,
                    expression_names=EXPRESSIONS)
    path = write_vmd(tmp_path_factory.mktemp("vmd") / "dance.vmd", motion, model_name="Mimic")
    times = np.arange(KEYS) / 30.0
    rot30, root30, expr30 = pose(sk, times)
    return {"motion": motion, "path": path, "rotations": rot30, "root": root30, "expressions": expr30,
            "world": sk.global_rotations(rot30), "positions": sk.forward_kinematics(rot30, root30),
            "ours": read_vmd(path)}


@pytest.fixture(scope="module")
def node(written: dict) -> dict:
    """The written file as mmd-parser reads it."""
    return node_read(written["path"])


def test_header_names_frames_and_interpolation(node: dict) -> None:
    assert node["metadata"]["magic"] == "Vocaloid Motion Data 0002" and node["metadata"]["name"] == "Mimic"
    assert set(node["bones"]["names"]) == set(STANDARD)
    assert node["metadata"]["motionCount"] == len(STANDARD) * KEYS
    for name in STANDARD:
        frames, _, _ = keys(node["bones"], name)
        np.testing.assert_array_equal(frames, np.arange(KEYS))
    interpolation = np.array(node["bones"]["interpolation"])
    assert (interpolation[:, :16] == LINEAR_ROW).all()
    assert set(node["morphs"]["names"]) == set(MORPHS.values()) and node["metadata"]["cameraCount"] == 0


def world_errors_deg(node: dict, world: np.ndarray, sk: Skeleton) -> np.ndarray:
    """mmd-parser's own right-handed conversion (three.js's axes = Mimic's), each bone's world rotation composed
    along the standard hierarchy, then its A-pose rest put back, against Mimic's world rotations (F, J, 4) of the
    joint it follows: the angle (degrees) per bone and frame."""
    bones = node["bones_right_handed"]
    composed: dict[str, Rotation] = {}
    errors = []
    for name, (joint, parent) in STANDARD.items():
        _, _, q = keys(bones, name)
        local = Rotation.from_quat(q)
        composed[name] = local if parent is None else composed[parent] * local
        if joint is None:
            assert local.magnitude().max() < 1e-6  # the centre only moves
            continue
        truth = from_wxyz(world[:, sk.index(joint)])
        errors.append(np.degrees(((composed[name] * rest(name)).inv() * truth).magnitude()))
    return np.concatenate(errors)


def test_rotations_turned_back_into_mimic_match_the_motion(written: dict, node: dict) -> None:
    errors = world_errors_deg(node, written["world"], written["motion"].skeleton)
    print(f"\nrotation vs mmd-parser: max {errors.max():.3g} deg, mean {errors.mean():.3g} deg")
    assert errors.max() < 1.0


def test_the_sample_clip_from_the_command_line(sample_motion: Path, tmp_path: Path) -> None:
    """`python -m core walk.npz -o walk.vmd` on the converted sample clip (30 fps: one key per frame): mmd-parser
    reads every frame, the rotations of the motion within 1 degree and the centre's path within 1 cm."""
    out = tmp_path / "walk.vmd"
    proc = subprocess.run([sys.executable, "-m", "core", str(sample_motion), "-o", str(out), "--progress", "none"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    motion = load_motion(sample_motion)
    got = node_read(out)
    assert got["metadata"]["magic"] == "Vocaloid Motion Data 0002"
    np.testing.assert_array_equal(keys(got["bones"], "センター")[0], np.arange(motion.num_frames))
    errors = world_errors_deg(got, motion.skeleton.global_rotations(motion.rotations), motion.skeleton)
    sk, waist = motion.skeleton, motion.skeleton.index("Spine")
    truth = sk.forward_kinematics(motion.rotations, motion.root_positions)[:, waist] - sk.rest_positions()[waist]
    path_cm = 100 * np.linalg.norm(keys(got["bones_right_handed"], "センター")[1] / UNITS - truth, axis=1).max()
    print(f"\nsample clip .vmd vs mmd-parser: {motion.num_frames} frames, rotation max {errors.max():.3g} deg, "
          f"centre path max {path_cm:.3g} cm over {np.ptp(truth, axis=0).max():.2f} m")
    assert errors.max() < 1.0 and path_cm < 1.0


def test_centre_carries_the_waist_path(written: dict, node: dict) -> None:
    """The centre's translation (mmd-parser, right-handed, / 12.5) is the waist's (Mimic's Spine joint) path from
    its rest position, in metres."""
    _, position, _ = keys(node["bones_right_handed"], "センター")
    sk = written["motion"].skeleton
    waist = sk.index("Spine")
    truth = written["positions"][:, waist] - sk.rest_positions()[waist]
    error = np.linalg.norm(position / UNITS - truth, axis=1)
    print(f"\ncentre path: max {error.max() * 100:.3g} cm over {np.ptp(truth, axis=0).max():.2f} m of travel")
    assert error.max() < 0.01
    for name in STANDARD:  # nothing else is translated
        if name != "センター":
            assert np.abs(keys(node["bones"], name)[1]).max() == 0.0


def test_morphs_follow_the_expressions(written: dict, node: dict) -> None:
    morphs = node["morphs"]
    for e, expression in enumerate(EXPRESSIONS):
        idx = sorted((i for i, n in enumerate(morphs["names"]) if n == MORPHS.get(expression)),
                     key=lambda i: morphs["frames"][i])
        if expression not in MORPHS:
            assert not idx
            continue
        assert [morphs["frames"][i] for i in idx] == list(range(KEYS))
        np.testing.assert_allclose([morphs["weights"][i] for i in idx], written["expressions"][:, e], atol=0.01)


def test_mmd_skeleton_in_mmd_axes_puts_joints_where_mimic_does(written: dict) -> None:
    """Forward kinematics of an MMD-like skeleton (the humanoid's bones in the standard model's A-pose, MMD's
    left-handed axes, 12.5 units per metre; 上半身 and 下半身 pivoting at the waist) driven by the file's raw keys
    gives Mimic's joint and end-site positions mirrored into MMD's axes. The keys come from read_vmd (so this runs
    without Node too); test_our_reader_gives_back_what_mmd_parser_reads holds them equal to mmd-parser's."""
    sk = written["motion"].skeleton
    mirror = np.array([1.0, 1.0, -1.0])
    rest_of_joint = {joint: rest(name) for name, (joint, _) in STANDARD.items() if joint}
    a_pose = np.zeros((sk.num_joints, 3))  # the A-pose: each joint's segment turned by its bone's rest, Mimic axes
    for j, p in enumerate(sk.parents):
        a_pose[j] = sk.offsets[j] if p < 0 else a_pose[p] + rest_of_joint[sk.names[p]].apply(sk.offsets[j])
    ends = a_pose + np.stack([rest_of_joint[n].apply(e) for n, e in zip(sk.names, sk.end_sites)])
    at = lambda point: point * mirror * UNITS  # noqa: E731 - Mimic metres -> MMD units and axes
    pivot = {name: at(a_pose[sk.index("Spine" if joint in (None, "Hips") else joint)])
             for name, (joint, _) in STANDARD.items()}
    ours = written["ours"]
    bones = {"names": list(ours.bone_names), "frames": ours.bone_frames.tolist(),
             "positions": ours.positions.tolist(), "rotations": ours.rotations[:, [1, 2, 3, 0]].tolist()}
    world: dict[str, Rotation] = {}
    where: dict[str, np.ndarray] = {}
    for name, (_, parent) in STANDARD.items():
        _, position, q = keys(bones, name)
        local = Rotation.from_quat(q)  # the file's x, y, z, w in MMD's axes, used as they are
        if parent is None:
            world[name], where[name] = local, pivot[name] + position
        else:
            world[name] = world[parent] * local
            where[name] = where[parent] + world[parent].apply(pivot[name] - pivot[parent])
    bone_of = {joint: name for name, (joint, _) in reversed(STANDARD.items()) if joint}
    got = np.zeros((KEYS, sk.num_joints, 3))
    got_ends = np.zeros((KEYS, sk.num_joints, 3))
    for j, joint in enumerate(sk.names):
        name = bone_of[joint]
        got[:, j] = where[name] + world[name].apply(at(a_pose[j]) - pivot[name])  # Hips: a point of 下半身
        got_ends[:, j] = where[name] + world[name].apply(at(ends[j]) - pivot[name])
    truth = written["positions"]
    truth_ends = truth + np.einsum("fjab,jb->fja", Rotation.from_quat(
        written["world"].reshape(-1, 4)[:, [1, 2, 3, 0]]).as_matrix().reshape(KEYS, sk.num_joints, 3, 3),
        sk.end_sites)
    error = np.linalg.norm(np.concatenate([got - at(truth), got_ends - at(truth_ends)], axis=1), axis=-1) / UNITS
    leaves = [j for j in range(sk.num_joints) if not sk.children(j)]
    error = np.concatenate([error[:, :sk.num_joints], error[:, sk.num_joints + np.array(leaves)]], axis=1)
    print(f"\nFK world positions, MMD-like skeleton vs Mimic: max {error.max() * 100:.3g} cm, "
          f"mean {error.mean() * 100:.3g} cm")
    assert error.max() < 0.01


def test_our_reader_gives_back_what_mmd_parser_reads(written: dict, node: dict) -> None:
    ours = written["ours"]
    assert ours.model_name == "Mimic" and ours.camera_count == ours.light_count == ours.self_shadow_count == 0
    assert list(ours.bone_names) == node["bones"]["names"]
    np.testing.assert_array_equal(ours.bone_frames, node["bones"]["frames"])
    np.testing.assert_array_equal(ours.positions, node["bones"]["positions"])
    np.testing.assert_array_equal(ours.rotations[:, [1, 2, 3, 0]], node["bones"]["rotations"])
    np.testing.assert_array_equal(ours.interpolation, node["bones"]["interpolation"])
    assert list(ours.morph_names) == node["morphs"]["names"]
    np.testing.assert_array_equal(ours.morph_weights, node["morphs"]["weights"])
    frames, _, rotations = ours.bone("左腕")
    np.testing.assert_array_equal(frames, np.arange(KEYS))
    np.testing.assert_allclose(np.linalg.norm(rotations, axis=1), 1.0, atol=1e-6)
    [ik] = ours.ik_keys  # legs are FK: the leg IK is off from frame 0
    assert ik.frame == 0 and ik.show and ik.ik == {"左足ＩＫ": False, "右足ＩＫ": False, "左つま先ＩＫ": False,
                                                   "右つま先ＩＫ": False}


def test_long_model_name_is_cut_on_a_character_boundary(tmp_path: Path) -> None:
    sk = humanoid()
    motion = Motion(skeleton=sk, fps=30.0, rotations=np.tile([1.0, 0, 0, 0], (3, sk.num_joints, 1)),
                    root_positions=np.tile(sk.offsets[0], (3, 1)))
    name = "とても長いモデルの名前ですよ"  # 14 characters, 28 bytes in Shift-JIS: 10 fit in 20 bytes
    path = write_vmd(tmp_path / "long.vmd", motion, model_name=name)
    assert read_vmd(path).model_name == name[:10]
    assert read_vmd(path).bone("センター")[0].tolist() == [0, 1, 2]  # already 30 fps: every frame kept
    assert node_read(path)["metadata"]["name"] == name[:10]


def test_a_skeleton_that_is_not_the_humanoid_is_refused(tmp_path: Path) -> None:
    sk = Skeleton(("root", "tip"), np.array([-1, 0]), np.array([[0.0, 1.0, 0.0], [0.0, 0.5, 0.0]]))
    motion = Motion(skeleton=sk, fps=30.0, rotations=np.tile([1.0, 0, 0, 0], (2, 2, 1)),
                    root_positions=np.zeros((2, 3)))
    with pytest.raises(UnsupportedOutput, match="humanoid"):
        write_vmd(tmp_path / "x.vmd", motion)
    assert not list(tmp_path.iterdir())


def _damage(data: bytes, how: str) -> bytes:
    bones_at = 50  # the bone count follows the 30-byte magic and the 20-byte model name
    count = struct.unpack_from("<I", data, bones_at)[0]
    morphs_at = bones_at + 4 + 111 * count
    if how == "truncated header":
        return data[:40]
    if how == "truncated keys":
        return data[:bones_at + 4 + 111 * 5 + 50]
    if how == "huge bone count":
        return data[:bones_at] + struct.pack("<I", 0xFFFFFFFF) + data[bones_at + 4:]
    if how == "huge morph count":
        return data[:morphs_at] + struct.pack("<I", 50_000_000) + data[morphs_at + 4:]
    if how == "bad header":
        return b"Vocaloid Motion Data file\0\0\0\0\0" + data[30:]
    if how == "NaN rotation":
        return data[:bones_at + 4 + 31] + struct.pack("<f", float("nan")) + data[bones_at + 4 + 35:]
    if how == "trailing bytes":
        return data + b"\x01\x02\x03"
    if how == "huge IK count":
        return data[:-4 * 21 - 9 - 4] + struct.pack("<I", 1 << 30) + data[-4 * 21 - 9:]
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["truncated header", "truncated keys", "huge bone count", "huge morph count",
                                 "bad header", "NaN rotation", "trailing bytes", "huge IK count"])
def test_damaged_files_are_bad_motion_files(tmp_path: Path, how: str) -> None:
    sk = humanoid()
    motion = Motion(skeleton=sk, fps=30.0, rotations=np.tile([1.0, 0, 0, 0], (4, sk.num_joints, 1)),
                    root_positions=np.tile(sk.offsets[0], (4, 1)), expressions=np.full((4, 1), 0.5),
                    expression_names=("aa",))
    good = write_vmd(tmp_path / "good.vmd", motion).read_bytes()
    bad = tmp_path / "bad.vmd"
    bad.write_bytes(_damage(good, how))
    with pytest.raises(BadMotionFile, match="bad.vmd") as err:
        read_vmd(bad)
    assert "\n" not in str(err.value)


def test_sections_missing_at_the_end_read_as_empty(tmp_path: Path) -> None:
    """Older files stop after the bone or morph keys: the sections that are not there are empty."""
    sk = humanoid()
    motion = Motion(skeleton=sk, fps=30.0, rotations=np.tile([1.0, 0, 0, 0], (2, sk.num_joints, 1)),
                    root_positions=np.tile(sk.offsets[0], (2, 1)))
    data = write_vmd(tmp_path / "full.vmd", motion).read_bytes()
    count = struct.unpack_from("<I", data, 50)[0]
    short = tmp_path / "short.vmd"
    short.write_bytes(data[:54 + 111 * count])
    got = read_vmd(short)
    assert len(got.bone_names) == count and not got.morph_names and not got.ik_keys


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(BadMotionFile, match="does not exist"):
        read_vmd(tmp_path / "nope.vmd")
    with pytest.raises(BadMotionFile, match="folder"):
        read_vmd(tmp_path)
