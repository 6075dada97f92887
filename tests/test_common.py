"""core/common, the numpy-only layer shared by core and add-on: checked against scipy (here in the tests, never at
run time), the motion file's schemas and its checks on bad files, and the boundary: numpy and the standard
library only."""

from __future__ import annotations

import ast
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation, Slerp

from core.common import axes, mirror, motionfile, rigs
from core.common import rotations as quat
from core.common.errors import BadMotionFile
from core.common.skeleton import Skeleton, humanoid

ROOT = Path(__file__).resolve().parent.parent
COMMON = ROOT / "core" / "common"
RNG = np.random.default_rng(7)


def random_quats(*shape: int) -> np.ndarray:
    return quat.normalize(RNG.normal(size=(*shape, 4)))


def as_scipy(q: np.ndarray) -> Rotation:
    return Rotation.from_quat(q.reshape(-1, 4), scalar_first=True)


def same_rotation(a: np.ndarray, b: np.ndarray, atol: float = 1e-9) -> bool:
    """a and b (..., 4) are the same rotations (q and -q alike)."""
    return bool(np.all(np.abs(np.abs(np.sum(a * b, axis=-1)) - 1.0) < atol))


# --- rotations against scipy ---------------------------------------------------------------------------------------

def test_product_inverse_and_rotate_match_scipy() -> None:
    a, b = random_quats(50), random_quats(50)
    v = RNG.normal(size=(50, 3))
    assert same_rotation(quat.multiply(a, b), (as_scipy(a) * as_scipy(b)).as_quat(scalar_first=True))
    assert same_rotation(quat.inverse(a), as_scipy(a).inv().as_quat(scalar_first=True))
    np.testing.assert_allclose(quat.rotate(a, v), as_scipy(a).apply(v), atol=1e-12)


def test_matrices_both_ways_match_scipy() -> None:
    q = random_quats(200)
    q[:4] = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]  # each branch of the matrix -> quaternion form
    np.testing.assert_allclose(quat.to_matrix(q), as_scipy(q).as_matrix(), atol=1e-12)
    back = quat.from_matrix(as_scipy(q).as_matrix())
    assert same_rotation(back, q) and np.all(back[:, 0] >= 0)


def test_between_turns_a_onto_b_also_when_opposite() -> None:
    for a, b in ((RNG.normal(size=3), RNG.normal(size=3)), (np.array([0, 1.0, 0]), np.array([0, -2.0, 0]))):
        q = quat.between(a, b)
        np.testing.assert_allclose(quat.rotate(q, a / np.linalg.norm(a)), b / np.linalg.norm(b), atol=1e-12)


def test_slerp_matches_scipy() -> None:
    a, b = random_quats(), random_quats()
    t = np.linspace(0, 1, 11)
    want = Slerp([0, 1], as_scipy(np.stack([a, b])))(t).as_quat(scalar_first=True)
    got = quat.slerp(np.broadcast_to(a, (11, 4)), np.broadcast_to(b, (11, 4)), t)
    assert same_rotation(got, want)
    assert same_rotation(quat.slerp(a, a, np.array(0.3)), a)  # equal ends: no 0/0


@pytest.mark.parametrize("order", ["XYZ", "ZXY", "YZX", "XZY", "ZYX", "YXZ"])
def test_euler_in_blender_modes_rebuilds_the_rotation(order: str) -> None:
    q = quat.make_continuous(random_quats(40))
    e = quat.to_euler(q, order)  # (x, y, z) angles; `order` applies its first axis first (extrinsic)
    rebuilt = Rotation.from_euler(order.lower(), e[:, ["XYZ".index(c) for c in order]])
    assert same_rotation(rebuilt.as_quat(scalar_first=True), q)


def test_axis_angle_matches_scipy_rotvec() -> None:
    q = random_quats(30)
    aa = quat.to_axis_angle(q)
    np.testing.assert_allclose(aa[:, :1] * aa[:, 1:], as_scipy(q).as_rotvec(), atol=1e-9)
    np.testing.assert_allclose(quat.to_axis_angle(quat.identity()), [0, 0, 1, 0])


def test_make_continuous_keeps_rotations_and_removes_sign_flips() -> None:
    q = quat.normalize(np.cumsum(RNG.normal(scale=0.1, size=(100, 3, 4)), axis=0) + [1, 0, 0, 0])
    flipped = q * np.where(RNG.random((100, 3, 1)) < 0.5, -1.0, 1.0)
    out = quat.make_continuous(flipped)
    assert same_rotation(out, q) and np.all(np.sum(out[1:] * out[:-1], axis=-1) > 0)


def test_motion_resampled_follows_scipy_slerp_and_keeps_duration() -> None:
    sk = humanoid()
    q = quat.make_continuous(quat.normalize(np.cumsum(RNG.normal(scale=0.05, size=(31, sk.num_joints, 4)), 0)
                                            + [1, 0, 0, 0]))
    contacts = np.zeros((31, 2), bool)
    contacts[10:20, 0] = True
    m = motionfile.Motion(sk, 30.0, q, RNG.normal(size=(31, 3)), contacts=contacts)
    r = m.resampled(60.0)
    assert r.num_frames == 61 and r.fps == 60.0
    t = np.arange(61) / 60.0
    want = Slerp(np.arange(31) / 30.0, as_scipy(q[:, 5]))(t).as_quat(scalar_first=True)
    assert same_rotation(r.rotations[:, 5], want, atol=1e-9)
    np.testing.assert_allclose(r.root_positions[::2], m.root_positions)
    assert r.contacts[::2].tolist() == contacts.tolist()


# --- axes, mirroring, rig data ----------------------------------------------------------------------------------------

def test_mimic_to_blender_axes() -> None:
    np.testing.assert_allclose(axes.to_blender([[0, 1, 0], [0, 0, 1], [1, 0, 0]]), [[0, 0, 1], [0, -1, 0], [1, 0, 0]])
    np.testing.assert_allclose(quat.to_matrix(axes.MIMIC_TO_BLENDER_QUAT), axes.MIMIC_TO_BLENDER, atol=1e-12)
    np.testing.assert_allclose(axes.from_blender(axes.to_blender([1.0, 2, 3])), [1, 2, 3])


def test_counterparts_in_both_naming_styles() -> None:
    assert mirror.counterpart("left_wrist") == "right_wrist"
    assert mirror.counterpart("mouth_right") == "mouth_left"
    assert mirror.counterpart("RightUpperLeg") == "LeftUpperLeg"
    assert mirror.counterpart("nose") == "nose" and mirror.counterpart("Hips") == "Hips"
    idx = rigs.landmark_mirror()
    names = rigs.landmark_names()
    assert len(names) == rigs.num_landmarks() == 33
    assert np.array_equal(idx[idx], np.arange(33)) and names[idx[names.index("left_heel")]] == "right_heel"
    assert names[idx[0]] == "nose"


def test_skeleton_fk_matches_scipy_chain() -> None:
    sk = humanoid()
    q = random_quats(5, sk.num_joints)
    root = RNG.normal(size=(5, 3))
    glob: list[Rotation] = []
    want = np.zeros((5, sk.num_joints, 3))
    for j, p in enumerate(sk.parents):
        local = as_scipy(q[:, j])
        glob.append(local if p < 0 else glob[p] * local)
        want[:, j] = root if p < 0 else want[:, p] + glob[p].apply(sk.offsets[j])
    np.testing.assert_allclose(sk.forward_kinematics(q, root), want, atol=1e-12)


# --- the motion file ----------------------------------------------------------------------------------------------

def full_motion(frames: int = 12, person: int = 0) -> motionfile.Motion:
    sk = humanoid()
    return motionfile.Motion(
        skeleton=sk, fps=30.0, rotations=random_quats(frames, sk.num_joints), root_positions=RNG.normal(size=(frames, 3)),
        confidence=RNG.random((frames, sk.num_joints)), keypoints_2d=RNG.normal(size=(frames, 33, 3)),
        keypoints_3d=RNG.normal(size=(frames, 33, 3)), contacts=RNG.random((frames, 2)) < 0.5,
        contact_probability=RNG.random((frames, 4)), hand_rotations=random_quats(frames, 2, 15),
        hand_confidence=RNG.random((frames, 2)), expressions=RNG.random((frames, 3)),
        hand_joints=tuple(f"finger{i}" for i in range(15)), expression_names=("blink", "aa", "happy"),
        person=person, camera={"focal_px": 1400.0}, floor={"height_m": 0.0}, meta={"source": "test"})


def test_v2_round_trip_with_every_channel_and_two_persons(tmp_path: Path) -> None:
    a, b = full_motion(person=3), full_motion(person=5)
    motionfile.save_motions([a, b], tmp_path / "m.npz")
    back = motionfile.load_motions(tmp_path / "m.npz")
    assert [m.person for m in back] == [3, 5]
    for want, got in zip((a, b), back):
        for name, value in want.channels().items():
            np.testing.assert_allclose(getattr(got, name), value, atol=1e-6, err_msg=name)
        assert got.hand_joints == want.hand_joints and got.expression_names == want.expression_names
        assert got.camera == want.camera and got.floor == want.floor and got.meta["source"] == "test"
    assert motionfile.load_motion(tmp_path / "m.npz", person=1).person == 5
    with pytest.raises(BadMotionFile, match="no person 2"):
        motionfile.load_motion(tmp_path / "m.npz", person=2)


def test_schema_1_files_still_load(tmp_path: Path) -> None:
    """A schema-1 file as Mimic 0.1 wrote it: channels at the top level, the skeleton in meta."""
    m = full_motion()
    meta = {"schema_version": 1, "fps": 30.0, "num_frames": m.num_frames, "units": "m",
            "skeleton": m.skeleton.to_json(), "lifter": "tcn"}
    with open(tmp_path / "v1.npz", "wb") as fh:
        np.savez_compressed(fh, meta_json=np.array(json.dumps(meta)), rotations=m.rotations.astype(np.float32),
                            root_positions=m.root_positions.astype(np.float32), contacts=m.contacts)
    back = motionfile.load_motion(tmp_path / "v1.npz")
    np.testing.assert_allclose(back.positions(), m.positions(), atol=1e-5)
    assert back.contacts.tolist() == m.contacts.tolist() and back.meta["lifter"] == "tcn"


def _archive(path: Path, meta: object, **arrays: np.ndarray) -> Path:
    with open(path, "wb") as fh:
        np.savez(fh, meta_json=np.array(json.dumps(meta)), **arrays)
    return path


def _broken(tmp_path: Path, case: str) -> Path:
    """One defect per case, starting from a good file."""
    good = tmp_path / "good.npz"
    m = full_motion()
    motionfile.save_motion(m, good)
    with np.load(good) as data:
        meta = json.loads(str(data["meta_json"]))
        arrays = {k: data[k] for k in data.files if k != "meta_json"}
    path = tmp_path / f"{case}.npz"
    if case == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "not_npz":
        np.save(path.with_suffix(".npy"), np.zeros(3))
        path.with_suffix(".npy").rename(path)
    elif case == "meta_list":
        _archive(path, [1, 2], **arrays)
    elif case == "no_meta":
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
    elif case == "schema_9":
        _archive(path, dict(meta, schema_version=9), **arrays)
    elif case == "schema_string":
        _archive(path, dict(meta, schema_version="2"), **arrays)
    elif case in ("fps_0", "fps_nan", "fps_negative"):
        _archive(path, dict(meta, fps={"fps_0": 0, "fps_nan": float("nan"), "fps_negative": -30}[case]), **arrays)
    elif case == "huge_frames":
        _archive(path, dict(meta, num_frames=10**9), **arrays)
    elif case == "no_rotations":
        _archive(path, meta, **{k: v for k, v in arrays.items() if k != "person0/rotations"})
    elif case == "wrong_shape":
        _archive(path, meta, **dict(arrays, **{"person0/rotations": arrays["person0/rotations"][:, :5]}))
    elif case == "short_channel":
        _archive(path, meta, **dict(arrays, **{"person0/contacts": arrays["person0/contacts"][:3]}))
    elif case == "nan_rotations":
        bad = arrays["person0/rotations"].copy()
        bad[4, 2] = np.nan
        _archive(path, meta, **dict(arrays, **{"person0/rotations": bad}))
    elif case == "inf_root":
        bad = arrays["person0/root_positions"].copy()
        bad[0, 1] = np.inf
        _archive(path, meta, **dict(arrays, **{"person0/root_positions": bad}))
    elif case == "not_unit":
        _archive(path, meta, **dict(arrays, **{"person0/rotations": arrays["person0/rotations"] * 2}))
    elif case == "string_array":
        _archive(path, meta, **dict(arrays, **{"person0/root_positions": np.full((12, 3), "x")}))
    elif case == "bad_skeleton":
        _archive(path, dict(meta, persons=[{"id": 0, "skeleton": {"names": ["a"], "parents": [5]}}]), **arrays)
    elif case == "no_persons":
        _archive(path, dict(meta, persons=[]), **arrays)
    elif case == "huge_array":  # a header claiming 10**9 frames: refused before anything is allocated
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                      "shape": (10**9, 21, 4)})
        meta_npy = io.BytesIO()
        np.save(meta_npy, np.array(json.dumps(meta)))
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("meta_json.npy", meta_npy.getvalue())
            z.writestr("person0/rotations.npy", header.getvalue())
    return path


BROKEN = ["truncated", "empty", "not_npz", "meta_list", "no_meta", "schema_9", "schema_string", "fps_0", "fps_nan",
          "fps_negative", "huge_frames", "no_rotations", "wrong_shape", "short_channel", "nan_rotations", "inf_root",
          "not_unit", "string_array", "bad_skeleton", "no_persons", "huge_array"]


@pytest.mark.parametrize("case", BROKEN)
def test_every_broken_motion_file_is_a_bad_motion_file(tmp_path: Path, case: str) -> None:
    path = _broken(tmp_path, case)
    with pytest.raises(BadMotionFile) as err:
        motionfile.load_motion(path)
    assert str(path) in str(err.value) and err.value.fix


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(BadMotionFile, match="does not exist"):
        motionfile.load_motion(tmp_path / "nope.npz")
    with pytest.raises(BadMotionFile, match="folder"):
        motionfile.load_motion(tmp_path)


def test_saved_file_is_documented_layout(tmp_path: Path) -> None:
    motionfile.save_motion(full_motion(), tmp_path / "m.npz")
    with zipfile.ZipFile(tmp_path / "m.npz") as z:
        names = sorted(n.removesuffix(".npy") for n in z.namelist())
    assert names == sorted(["meta_json"] + [f"person0/{c}" for c in motionfile.CHANNELS])
    doc = (ROOT / "docs" / "MOTION_FILE.md").read_text(encoding="utf-8")
    for channel in motionfile.CHANNELS:
        assert f"`{channel}`" in doc, f"{channel} is not documented in docs/MOTION_FILE.md"


# --- the boundary -------------------------------------------------------------------------------------------------

def test_common_imports_only_numpy_and_the_standard_library() -> None:
    """Statically: every import in core/common is the standard library, numpy, or a sibling imported relatively
    (inside the extension the package is bl_ext.<repo>.mimic.core.common: there is no top-level `core`)."""
    allowed = set(sys.stdlib_module_names) | {"numpy", "__future__"}
    for path in [*COMMON.glob("*.py"), ROOT / "addon" / "common.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                tops = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                tops = [node.module or ""] if node.level == 0 else []
                assert node.level <= 1, f"{path.name}: imports from outside core/common"
            else:
                continue
            for name in tops:
                assert name.split(".")[0] in allowed, f"{path.name}: {name}"


def test_importing_the_light_modules_loads_nothing_heavy() -> None:
    """At run time: the shared layer, the add-on's view of it, the lifter interface and its normaliser."""
    code = ("import sys; import core.common.motionfile, core.common.rigs, core.common.axes, core.common.mirror, "
            "core.lift, core.lift.normalize, core.lift.layout, core.detections, core.sides; "
            "print(sorted(m for m in ('scipy', 'torch', 'cv2', 'mediapipe', 'bpy', 'training') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_unit_basis_and_smoothstep() -> None:
    """The vector helpers of core/common/rotations.py: unit vectors (NaN or eps for zero), right-handed orthonormal
    frames whose first column is the aim, and a clipped smooth ramp."""
    from core.common import rotations as quat

    rng = np.random.default_rng(3)
    v = rng.normal(size=(50, 3))
    assert np.allclose(np.linalg.norm(quat.unit(v), axis=-1), 1.0)
    assert np.all(np.isnan(quat.unit(np.zeros(3)))) and np.allclose(quat.unit(np.zeros(3), 1e-12), 0.0)
    frames = quat.basis(v, rng.normal(size=(50, 3)))
    assert np.allclose(frames @ np.swapaxes(frames, -1, -2), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(frames), 1.0) and np.allclose(frames[..., 0], quat.unit(v))
    assert np.allclose(quat.smoothstep(np.array([-1.0, 0.0, 0.5, 1.0, 2.0])), [0.0, 0.0, 0.5, 1.0, 1.0])


def test_planted_foot_helpers_are_one_place_for_core_and_addon() -> None:
    """core/common/legs.py: contact spans, the hips drop smoothed without scipy (as scipy's moving max then mean),
    and the two-bone IK reaching a target within reach with the bones' lengths kept."""
    from scipy.ndimage import maximum_filter1d, uniform_filter1d

    from core.common import legs

    assert legs.segments(np.array([0, 1, 1, 0, 1], dtype=bool)) == [(1, 2), (4, 4)]
    drop = np.random.default_rng(0).random(50) * (np.arange(50) % 7 == 0)
    smooth = legs.smooth_drop(drop, 3)
    assert np.allclose(smooth, uniform_filter1d(maximum_filter1d(drop, 7, mode="nearest"), 7, mode="nearest"))
    assert np.all(smooth >= drop - 1e-12)
    hip, knee, ankle = np.array([[0.0, 1.0, 0.0]]), np.array([[0.0, 0.55, 0.05]]), np.array([[0.0, 0.1, 0.0]])
    target = np.array([[0.2, 0.25, 0.1]])
    up, low, knee_new, ankle_new = legs.two_bone(hip, knee, ankle, target, np.array([[0.0, 0.0, 1.0]]),
                                                 float(np.linalg.norm(knee - hip)),
                                                 float(np.linalg.norm(ankle - knee)), 0.9)
    assert np.allclose(ankle_new, target) and np.isclose(np.linalg.norm(knee_new - hip), np.linalg.norm(knee - hip))
    assert np.isclose(np.linalg.norm(ankle_new - knee_new), np.linalg.norm(ankle - knee))
