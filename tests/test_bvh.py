"""core.bvh: our own reader gives the written motion back, and Blender's bundled BVH importer (real bpy) puts every
joint where our forward kinematics does, on every frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from core.bvh import UNIT_SCALE, bvh_to_motion, read_bvh, write_bvh
from core.common.errors import BadBvhFile
from core.common.motionfile import Motion
from core.scipy_rotations import from_wxyz, to_wxyz
from core.common.skeleton import humanoid

FRAMES = 60


def random_motion(frames: int = FRAMES, seed: int = 0) -> Motion:
    """A humanoid with non-default bone lengths, every joint turning through large angles, the root travelling."""
    rng = np.random.default_rng(seed)
    base = humanoid()
    skeleton = base.with_offsets(base.offsets * rng.uniform(0.8, 1.25, (base.num_joints, 1)), base.end_sites * 1.1)
    t = np.linspace(0.0, 1.0, frames)[:, None]
    axes = rng.normal(size=(skeleton.num_joints, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    speed = rng.uniform(-2.5, 2.5, skeleton.num_joints)  # up to ~140° per clip, some past 90° (Euler edge cases)
    start = Rotation.random(skeleton.num_joints, random_state=1).as_rotvec() * 0.5
    rotations = np.stack([to_wxyz(Rotation.from_rotvec(start[j] + t * speed[j] * axes[j]))
                          for j in range(skeleton.num_joints)], axis=1)
    root = np.concatenate([np.sin(3 * t), 0.9 + 0.05 * np.cos(7 * t), -1.5 * t], axis=1)
    return Motion(skeleton=skeleton, fps=30.0, rotations=rotations, root_positions=root)


def angles(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    return (from_wxyz(q1.reshape(-1, 4)).inv() * from_wxyz(q2.reshape(-1, 4))).magnitude()


@pytest.mark.parametrize("units", ["m", "cm"])
@pytest.mark.parametrize("order", ["ZXY", "XYZ"])
def test_write_then_read_gives_the_same_motion(tmp_path: Path, units: str, order: str) -> None:
    motion = random_motion()
    path = tmp_path / "clip.bvh"
    write_bvh(path, motion, units=units, order=order)
    data = read_bvh(path)
    assert data.names == list(motion.skeleton.names)
    assert data.num_frames == FRAMES and data.fps == pytest.approx(motion.fps, rel=1e-6)
    assert all(c[-3:] == [f"{a}rotation" for a in order] for c in data.channels)
    again = bvh_to_motion(data, units=units)
    np.testing.assert_allclose(again.skeleton.offsets, motion.skeleton.offsets, atol=1e-6)
    np.testing.assert_allclose(again.skeleton.end_sites, motion.skeleton.end_sites, atol=1e-6)
    np.testing.assert_array_equal(again.skeleton.parents, motion.skeleton.parents)
    assert angles(again.rotations, motion.rotations).max() < 1e-5
    np.testing.assert_allclose(again.positions(), motion.positions(), atol=1e-4)
    # The file itself is in the chosen unit: positions straight from the BVH scale by it.
    np.testing.assert_allclose(data.positions() / UNIT_SCALE[units], motion.positions(), atol=1e-4)


def test_no_temp_file_is_left_behind(tmp_path: Path) -> None:
    write_bvh(tmp_path / "a.bvh", random_motion(frames=3))
    assert [p.name for p in tmp_path.iterdir()] == ["a.bvh"]


def blender_positions(path: Path, names: tuple[str, ...], frames: int, global_scale: float) -> np.ndarray:
    """Import `path` with Blender's own BVH importer; world joint positions (F, J, 3) in Blender axes."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    result = bpy.ops.import_anim.bvh(filepath=str(path), axis_forward="-Z", axis_up="Y", global_scale=global_scale,
                                     rotate_mode="NATIVE", frame_start=1, use_fps_scale=False,
                                     update_scene_fps=False, update_scene_duration=True, use_cyclic=False)
    assert result == {"FINISHED"}
    arm = next(ob for ob in bpy.context.scene.objects if ob.type == "ARMATURE")
    out = np.zeros((frames, len(names), 3))
    for f in range(frames):
        bpy.context.scene.frame_set(1 + f)
        for j, name in enumerate(names):
            out[f, j] = tuple(arm.matrix_world @ arm.pose.bones[name].head)
    return out


@pytest.mark.parametrize("units", ["m", "cm"])
def test_blender_imports_every_joint_where_our_fk_puts_it(tmp_path: Path, units: str) -> None:
    motion = random_motion()
    path = tmp_path / "clip.bvh"
    write_bvh(path, motion, units=units)
    blender = blender_positions(path, motion.skeleton.names, FRAMES, global_scale=1.0 / UNIT_SCALE[units])
    # The importer turns the file's Y-up, -Z-forward axes into Blender's Z up: (x, y, z)_Blender = (X, -Z, Y).
    ours = blender[..., [0, 2, 1]] * [1.0, 1.0, -1.0]
    error = np.linalg.norm(ours - motion.positions(), axis=-1)
    assert error.max() < 1e-3, f"worst joint {motion.skeleton.names[int(np.argmax(error.max(0)))]}: {error.max()} m"


MALFORMED = {
    "empty": "",
    "no_motion": "HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 3 Xposition Yposition Zposition\n}\n",
    "short_motion": ("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 3 Xposition Yposition Zposition\n}\n"
                     "MOTION\nFrames: 3\nFrame Time: 0.0333\n0 1 2\n3 4 5\n"),
    "text_values": ("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 3 Xposition Yposition Zposition\n}\n"
                    "MOTION\nFrames: 1\nFrame Time: 0.0333\n0 one 2\n"),
    "bad_token": ("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  BONE 3\n}\n"
                  "MOTION\nFrames: 1\nFrame Time: 0.0333\n0 1 2\n"),
    "bad_offset": ("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 zero 0\n  CHANNELS 3 Xposition Yposition Zposition\n}\n"
                   "MOTION\nFrames: 1\nFrame Time: 0.0333\n0 1 2\n"),
    "no_frame_count": ("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 3 Xposition Yposition Zposition\n}\n"
                       "MOTION\n0 1 2\n"),
    "no_joints": "HIERARCHY\nMOTION\nFrames: 0\nFrame Time: 0.0333\n",
    "zero_frame_time": ("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 3 Xposition Yposition Zposition\n}\n"
                        "MOTION\nFrames: 1\nFrame Time: 0\n0 1 2\n"),
    "negative_frames": ("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 3 Xposition Yposition Zposition\n}\n"
                        "MOTION\nFrames: -5\nFrame Time: 0.0333\n0 1 2\n"),
    "nan_values": ("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 3 Xposition Yposition Zposition\n}\n"
                   "MOTION\nFrames: 1\nFrame Time: 0.0333\n0 nan 2\n"),
    "short_rows": ("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 3 Xposition Yposition Zposition\n}\n"
                   "MOTION\nFrames: 2\nFrame Time: 0.0333\n0 1 2\n3 4\n"),
    "unbalanced": ("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 3 Xposition Yposition Zposition\n"
                   "MOTION\nFrames: 1\nFrame Time: 0.0333\n0 1 2\n"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_files_raise_bad_bvh_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.bvh"
    path.write_text(MALFORMED[name], encoding="utf-8")
    with pytest.raises(BadBvhFile) as err:
        read_bvh(path)
    assert str(path) in str(err.value) and err.value.exit_code == BadBvhFile.exit_code


def test_a_missing_file_raises_bad_bvh_file(tmp_path: Path) -> None:
    with pytest.raises(BadBvhFile):
        read_bvh(tmp_path / "nowhere.bvh")


def test_a_well_formed_minimal_file_still_reads(tmp_path: Path) -> None:
    """The malformed cases above differ from this one file by one defect each."""
    path = tmp_path / "ok.bvh"
    path.write_text("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 3 Xposition Yposition Zposition\n"
                    "  End Site\n  {\n    OFFSET 0 1 0\n  }\n}\nMOTION\nFrames: 2\nFrame Time: 0.0333\n0 1 2\n3 4 5\n",
                    encoding="utf-8")
    data = read_bvh(path)
    np.testing.assert_array_equal(data.positions()[:, 0], [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(data.end_sites[0], [0, 1, 0])


def test_joint_names_with_spaces_and_keywords_read_as_blender_reads_them(tmp_path: Path) -> None:
    """Blender's importer takes the rest of the line as the name; a joint called MOTION... is just a name."""
    path = tmp_path / "spaces.bvh"
    path.write_text("HIERARCHY\nROOT Root Bone\n{\n  OFFSET 0 0 0\n  CHANNELS 6 Xposition Yposition Zposition "
                    "Zrotation Xrotation Yrotation\n  JOINT Left Upper Arm\n  {\n    OFFSET 1 0 0\n"
                    "    CHANNELS 3 Zrotation Xrotation Yrotation\n    JOINT MOTION_capture tip\n    {\n"
                    "      OFFSET 0 1 0\n      CHANNELS 3 Zrotation Xrotation Yrotation\n      End Site\n      {\n"
                    "        OFFSET 0 1 0\n      }\n    }\n  }\n}\nMOTION\nFrames: 2\nFrame Time: 0.04\n"
                    + "0 0 0 0 0 0 90 0 0 0 0 0\n" * 2, encoding="utf-8")
    data = read_bvh(path)
    assert data.names == ["Root Bone", "Left Upper Arm", "MOTION_capture tip"]
    assert data.parents.tolist() == [-1, 0, 1] and data.fps == pytest.approx(25.0)
    np.testing.assert_allclose(data.positions()[0, 2], [0, 0, 0], atol=1e-12)  # (1,0,0) + Rz(90°)·(0,1,0)


def test_names_with_spaces_survive_our_writer(tmp_path: Path) -> None:
    motion = random_motion(frames=3)
    names = tuple(n if i % 2 else f"{n} Bone" for i, n in enumerate(motion.skeleton.names))
    sk = motion.skeleton
    spaced = Motion(skeleton=type(sk)(names, sk.parents, sk.offsets, sk.end_sites), fps=30.0,
                    rotations=motion.rotations, root_positions=motion.root_positions)
    write_bvh(tmp_path / "s.bvh", spaced)
    back = bvh_to_motion(read_bvh(tmp_path / "s.bvh"))
    assert back.skeleton.names == names
    np.testing.assert_allclose(back.positions(), spaced.positions(), atol=1e-5)
