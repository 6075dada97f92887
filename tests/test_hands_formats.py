"""Fingers and expressions in every file Mimic writes: the joined body-plus-fingers skeleton (core/common/hands.py),
the motion file, BVH, VRM Animation (read back by three-vrm-animation) and MMD motion (read back by mmd-parser)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from core.bvh import bvh_to_motion, read_bvh, write_bvh
from core.common import hands, vmd, vrma
from core.common.motionfile import Motion, load_motion, save_motion
from core.common.skeleton import humanoid
from test_vmd import node_read
from test_vrma import angles_deg, node, run_node  # noqa: F401 - node is a fixture

FRAMES, FPS = 40, 30.0


def fist_motion(frames: int = FRAMES) -> Motion:
    """The body at rest with both hands closing into a fist over the clip (every finger joint flexed up to 80°
    toward the palm, the thumb turned down into it), and a few expressions. A rotation axis mirrors in X as
    (x, -y, -z), so the right hand's fingers flex about +Z where the left's flex about -Z."""
    sk = humanoid()
    names = hands.hand_joint_names()
    t = np.linspace(0.0, 1.0, frames)[:, None]
    angle = np.radians(80.0) * t  # (F, 1)
    hand = np.zeros((frames, 2, len(names), 4))
    for side, sign in ((0, -1.0), (1, 1.0)):  # the left's fingers point +X: flexing toward the palm (-Y) is about -Z
        axis = np.array([0.0, 0.0, sign])
        for k, name in enumerate(names):
            turn = axis if not name.startswith("Thumb") else np.array([1.0, 0.0, 0.0])  # X-mirror of itself
            hand[:, side, k] = Rotation.from_rotvec(angle * turn / np.linalg.norm(turn)).as_quat(scalar_first=True)
    rot = np.tile([1.0, 0.0, 0.0, 0.0], (frames, sk.num_joints, 1))
    root = np.tile([0.0, 0.95, 0.0], (frames, 1))
    weights = np.concatenate([t, 1.0 - t], axis=1)
    return Motion(skeleton=sk, fps=FPS, rotations=rot, root_positions=root, hand_rotations=hand,
                  hand_confidence=np.ones((frames, 2)), hand_joints=names, expressions=weights,
                  expression_names=("blink", "aa"))


@pytest.fixture(scope="module")
def fist() -> Motion:
    return fist_motion()


def tips_to_palm(motion: Motion) -> np.ndarray:
    """(F, 2, 5) distance of each fingertip (the Distal joints' end sites) to its palm centre, metres."""
    sk, rot = hands.motion_with_fingers(motion)
    pos = sk.forward_kinematics(rot, motion.root_positions)
    glob = sk.global_rotations(rot)
    from core.common import rotations as quat

    out = np.zeros((motion.num_frames, 2, 5))
    for side in (0, 1):
        wrist = pos[:, sk.index(f"{hands.SIDES[side]}Hand")]
        middle = pos[:, sk.index(hands.full_name(side, "MiddleProximal"))]
        palm = (wrist + middle) / 2 + quat.rotate(glob[:, sk.index(f"{hands.SIDES[side]}Hand")],
                                                 np.array([0.0, -0.03, 0.0]))
        for f, finger in enumerate(("Thumb", "Index", "Middle", "Ring", "Little")):
            j = sk.index(hands.full_name(side, f"{finger}Distal"))
            tip = pos[:, j] + quat.rotate(glob[:, j], sk.end_sites[j])
            out[:, side, f] = np.linalg.norm(tip - palm, axis=-1)
    return out


def test_the_joined_skeleton_has_both_hands_mirrored_and_splits_back(fist: Motion) -> None:
    sk, rot = hands.motion_with_fingers(fist)
    assert sk.num_joints == 21 + 30 and rot.shape == (FRAMES, 51, 4)
    rest = sk.rest_positions()
    for name in hands.hand_joint_names():
        left, right = rest[sk.index(hands.full_name(0, name))], rest[sk.index(hands.full_name(1, name))]
        assert np.allclose(left * [-1, 1, 1], right)  # mirrored in X
        assert left[0] > rest[sk.index("LeftHand")][0]  # beyond the wrist, toward the fingertips
    body, body_rot, hand_rot, joints = hands.split_fingers(sk, rot)
    assert body.names == fist.skeleton.names and np.allclose(body.offsets, fist.skeleton.offsets)
    assert np.allclose(body.end_sites, fist.skeleton.end_sites) and np.allclose(hand_rot, fist.hand_rotations)
    assert joints == fist.hand_joints and np.allclose(body_rot, fist.rotations)
    assert hands.with_fingers(fist.skeleton, fist.rotations, None, ()) == (fist.skeleton, fist.rotations)


def test_a_fist_brings_every_fingertip_toward_the_palm(fist: Motion) -> None:
    d = tips_to_palm(fist)
    shrink = d[-1] / d[0]
    assert np.all(shrink < 0.8), shrink  # every finger of both hands closes
    assert np.allclose(d[:, 0], d[:, 1])  # both hands alike (mirrored)


def test_the_motion_file_keeps_fingers_and_expressions(fist: Motion, tmp_path: Path) -> None:
    save_motion(fist, tmp_path / "fist.npz")
    back = load_motion(tmp_path / "fist.npz")
    assert back.hand_joints == fist.hand_joints and back.expression_names == ("blink", "aa")
    assert np.abs(back.hand_rotations - fist.hand_rotations).max() < 1e-6
    assert np.abs(back.expressions - fist.expressions).max() < 1e-6


def test_bvh_carries_the_finger_joints_and_reads_them_back(fist: Motion, tmp_path: Path) -> None:
    write_bvh(tmp_path / "fist.bvh", fist, units="cm")
    data = read_bvh(tmp_path / "fist.bvh")
    assert "LeftIndexDistal" in data.names and "RightThumbProximal" in data.names and len(data.names) == 51
    back = bvh_to_motion(data, "cm")
    assert back.skeleton.names == fist.skeleton.names
    assert angles_deg(back.hand_rotations, fist.hand_rotations).max() < 1e-3
    assert np.abs(back.positions() - fist.positions()).max() < 1e-5
    write_bvh(tmp_path / "body.bvh", fist.with_channels(hand_rotations=None, hand_joints=()))
    assert len(read_bvh(tmp_path / "body.bvh").names) == 21  # no hands: the body alone, as before


def test_vrma_fingers_read_by_three_vrm_animation(node: str, fist: Motion, tmp_path: Path) -> None:  # noqa: F811
    path = vrma.write_vrma(tmp_path / "fist.vrma", fist)
    got = run_node(node, "read_vrma.mjs", path)
    assert got["warnings"] == []
    sp = vrma.spec()
    worst = 0.0
    for side in (0, 1):
        for k, name in enumerate(hands.hand_joint_names()):
            track = got["rotation"][sp.bones[hands.full_name(side, name)]]
            values = np.array(track["values"]).reshape(-1, 4)[:, [3, 0, 1, 2]]
            worst = max(worst, float(angles_deg(values, fist.hand_rotations[:, side, k]).max()))
    assert worst < 1e-3, worst
    assert "leftThumbMetacarpal" in got["rotation"] and "rightLittleDistal" in got["rotation"]
    back = vrma.read_vrma(path)
    assert angles_deg(back.hand_rotations, fist.hand_rotations).max() < 1e-3 and back.hand_joints == fist.hand_joints


def test_vmd_keys_every_finger_bone_read_by_mmd_parser(fist: Motion, tmp_path: Path) -> None:
    path = vmd.write_vmd(tmp_path / "fist.vmd", fist)
    got = node_read(path)
    names = np.array(got["bones"]["names"])
    rig = {b.joint: b.name for b in vmd.vmd_rig().bones}
    for side in (0, 1):
        for k, joint in enumerate(hands.hand_joint_names()):
            bone = rig[hands.full_name(side, joint)]
            rot = np.array(got["bones"]["rotations"])[names == bone][:, [3, 0, 1, 2]]
            assert len(rot) == FRAMES
            # every finger bone of the standard model rests in its hand's A-pose frame: the key turns it by the
            # same angle as Mimic's local rotation
            turned = np.degrees(2 * np.arccos(np.clip(np.abs(rot[:, 0]), 0, 1)))
            want = np.degrees(2 * np.arccos(np.clip(np.abs(fist.hand_rotations[:, side, k, 0]), 0, 1)))
            assert np.abs(turned - want).max() < 0.01, (bone, np.abs(turned - want).max())
    assert {"まばたき", "あ"} <= set(got["morphs"]["names"])
