"""The clip-level solve (core/clip_solve.py) on a synthetic walk seen by a pinhole camera with noisy 2D and 3D, and its
--solve option."""

from __future__ import annotations

import numpy as np
import pytest

from core.clip_solve import MODES, refine
from core.common import rotations as quat
from core.common.motionfile import Motion
from core.common.skeleton import humanoid
from core.filters import smooth
from core.foot_lock import foot_lock
from core.ik import keypoints_from_pose, solve

FPS, FRAMES, SPEED = 30.0, 90, 0.8  # a 3 s walk at 0.8 m/s
FOCAL = 1.5  # normalised screen units (half the image width = 1)
CAMERA = np.array([-1.2, -1.1, -4.5])  # world -> camera axes: the camera 1.1 m up, 4.5 m away, level
FEET = [29, 31, 30, 32]  # left heel, left toe, right heel, right toe (MediaPipe order)


def _about(axis: int, angle: np.ndarray) -> np.ndarray:
    out = quat.identity(*np.shape(angle))
    out[..., 0], out[..., 1 + axis] = np.cos(np.asarray(angle) / 2), np.sin(np.asarray(angle) / 2)
    return out


def true_walk() -> tuple[np.ndarray, np.ndarray]:
    """A walk crossing the view: legs swinging sinusoidally, knees bending in the swing, feet flat, the stance feet
    pinned by core.foot_lock; returns its landmarks (F, 33, 3), world metres on the floor Y = 0, and which heel/toe
    points are planted (F, 4): still to a millimetre a frame."""
    sk = humanoid()
    t = np.arange(FRAMES) / FPS
    w = 2 * np.pi * 0.9
    rotations = quat.identity(FRAMES, sk.num_joints)
    rotations[:, 0] = _about(1, np.full(FRAMES, np.pi / 2))  # facing +X
    for upper, phase in ((sk.index("LeftUpperLeg"), 0.0), (sk.index("RightUpperLeg"), np.pi)):
        swing, bend = -0.4 * np.sin(w * t + phase), 0.15 + 0.6 * np.maximum(0.0, np.cos(w * t + phase)) ** 2
        rotations[:, upper], rotations[:, upper + 1] = _about(0, swing), _about(0, bend)
        rotations[:, upper + 2] = _about(0, -swing - bend)  # the foot kept flat
    root = np.stack([SPEED * t, np.full(FRAMES, 0.93), np.zeros(FRAMES)], axis=1)
    ankles = keypoints_from_pose(rotations, root, sk)[:, [27, 28]]
    contacts = np.linalg.norm(np.gradient(ankles[..., [0, 2]], axis=0), axis=-1) * FPS < 0.6 * SPEED
    motion = foot_lock(Motion(skeleton=sk, fps=FPS, rotations=rotations, root_positions=root, contacts=contacts,
                              floor={"height_m": 0.0, "up": [0.0, 1.0, 0.0]}), "auto")
    landmarks = keypoints_from_pose(motion.rotations, motion.root_positions, sk)
    landmarks[..., 1] -= landmarks[:, FEET, 1].min() - 0.02
    step = np.linalg.norm(np.diff(landmarks[:, FEET][..., [0, 2]], axis=0), axis=-1)
    still = np.concatenate([step[:1], np.minimum(step[1:], step[:-1]), step[-1:]]) < 0.001
    return landmarks, still & (landmarks[:, FEET, 1] < 0.03)


def project(points: np.ndarray) -> np.ndarray:
    """World points (..., 3) -> normalised screen coordinates (..., 2) through the test's camera."""
    cam = points + CAMERA
    return FOCAL * np.stack([cam[..., 0], -cam[..., 1]], axis=-1) / -cam[..., 2:3]


def skate_mm(points: np.ndarray, planted: np.ndarray) -> float:
    """Mean horizontal motion, mm/frame, of points (F, P, 3) on consecutive planted frames (F, P)."""
    both = planted[1:] & planted[:-1]
    return float(1000 * np.linalg.norm(np.diff(points[..., [0, 2]], axis=0), axis=-1)[both].mean())


def feet_of(motion: Motion) -> np.ndarray:
    return keypoints_from_pose(motion.rotations, motion.root_positions, motion.skeleton)[:, FEET]


@pytest.fixture(scope="module")
def walk() -> dict[str, object]:
    """The true walk, its noisy observations (3D 2 cm, 2D ~1 cm at the subject), the per-frame IK and the clip
    solve of them."""
    truth, planted = true_walk()
    rng = np.random.default_rng(0)
    keypoints = truth + CAMERA + rng.normal(0.0, 0.02, truth.shape)  # the lifter's camera axes
    uv = project(truth) + rng.normal(0.0, 0.003, truth.shape[:2] + (2,))
    visibility = np.full(truth.shape[:2], 0.9)
    frame = solve(smooth(keypoints, FPS, 6.0), visibility, FPS)  # low-passed as core.pipeline does
    return {"truth": truth, "planted": planted, "uv": uv, "visibility": visibility, "keypoints": keypoints,
            "frame": frame, "clip": refine(frame, uv, visibility)}


def test_the_true_walk_plants_its_feet(walk):
    assert 0.15 < walk["planted"].mean() < 0.6
    assert skate_mm(walk["truth"][:, FEET], walk["planted"]) < 0.5


def test_bone_lengths_stay_exact(walk):
    frame, clip = walk["frame"], walk["clip"]
    sk = clip.skeleton
    np.testing.assert_array_equal(sk.offsets, frame.skeleton.offsets)
    pos = sk.forward_kinematics(clip.rotations, clip.root_positions)
    lengths = np.linalg.norm(pos[:, 1:] - pos[:, sk.parents[1:]], axis=-1)
    np.testing.assert_allclose(lengths, np.broadcast_to(np.linalg.norm(sk.offsets[1:], axis=-1), lengths.shape),
                               atol=1e-9)
    assert np.abs(np.linalg.norm(clip.rotations, axis=-1) - 1).max() < 1e-9


def test_noisy_walk_comes_out_with_planted_feet(walk):
    planted = walk["planted"]
    frame, clip = feet_of(walk["frame"]), feet_of(walk["clip"])
    assert skate_mm(frame, planted) > 10.0  # the per-frame solve carries the noise into the feet
    assert skate_mm(clip, planted) < 5.0
    spread = [np.std(clip[planted[:, k], k, 1]) for k in range(4)]
    assert 100 * np.mean(spread) < 1.5
    assert 100 * np.maximum(0.0, -clip[..., 1].min(axis=1)).mean() < 0.5  # no floor penetration
    info = walk["clip"].meta["clip_solve"]
    assert info["ran"] and info["focal"] == pytest.approx(FOCAL, rel=0.05)
    assert info["terms_after"]["slide"] < 0.2 * info["terms_before"]["slide"]


def test_clean_2d_is_matched(walk):
    """A warm start with its arms and chest turned away from clean 2D (and from the lifter's 3D, which is noisy but
    right): the clip solve turns them most of the way back within its iteration budget. No contacts: this pose's
    feet need not stand on a level floor."""
    frame = walk["frame"]
    sk, ik = frame.skeleton, frame.meta["ik"]
    turned = frame.rotations.copy()
    for name, axis, angle in (("Chest", 1, 0.25), ("LeftLowerArm", 1, -0.5), ("RightLowerArm", 1, 0.5),
                              ("LeftUpperArm", 2, -0.4), ("RightUpperArm", 2, 0.4)):
        j = sk.index(name)
        turned[:, j] = quat.multiply(turned[:, j], _about(axis, np.full(FRAMES, angle)))
    truth = keypoints_from_pose(turned, frame.root_positions, sk)
    level, offset = np.asarray(ik["level_wxyz"]), np.asarray(ik["ground_offset"])

    def screen(points: np.ndarray, level: np.ndarray, offset: np.ndarray) -> np.ndarray:
        cam = quat.rotate(quat.inverse(level), points - offset)  # p_camera = level⁻¹ · (p - offset)
        return FOCAL * np.stack([cam[..., 0], -cam[..., 1]], axis=-1) / -cam[..., 2:3]

    uv = screen(truth, level, offset)
    lifted = truth + np.random.default_rng(2).normal(0.0, 0.03, truth.shape)
    clip = refine(frame.with_channels(keypoints_3d=lifted, contacts=None, contact_probability=None), uv,
                  walk["visibility"], focal=FOCAL)
    camera = clip.meta["clip_solve"]["camera"]
    arms = [11, 12, 13, 14, 15, 16]

    def error(motion: Motion, level: np.ndarray, offset: np.ndarray) -> float:
        out = screen(keypoints_from_pose(motion.rotations, motion.root_positions, sk), level, offset)
        return float(np.median(np.linalg.norm(out - uv, axis=-1)[:, arms]))

    before, after = error(frame, level, offset), error(clip, np.asarray(camera["level_wxyz"]), camera["ground_offset"])
    assert after < 0.5 * before
    assert after * 4.5 / FOCAL < 0.07  # metres at the subject, 4.5 m away


def test_missing_landmarks_and_a_single_frame(walk):
    uv, visibility = walk["uv"].copy(), walk["visibility"].copy()
    uv[10:30, 13:17] = np.nan  # arms unseen for a while
    visibility[40:50] = 0.0  # the person lost for 10 frames
    uv[40:50] = np.nan
    out = refine(walk["frame"], uv, visibility)
    assert np.isfinite(out.rotations).all() and np.isfinite(out.root_positions).all()
    assert skate_mm(feet_of(out), walk["planted"]) < 6.0

    one = walk["frame"]
    single = one.with_channels(rotations=one.rotations[:1], root_positions=one.root_positions[:1],
                               confidence=one.confidence[:1], keypoints_3d=one.keypoints_3d[:1],
                               contacts=one.contacts[:1], contact_probability=one.contact_probability[:1])
    out = refine(single, walk["uv"][:1], walk["visibility"][:1])
    assert out.num_frames == 1 and np.isfinite(out.rotations).all() and out.meta["clip_solve"]["ran"]
    blind = refine(single, np.full((1, 33, 2), np.nan), np.zeros((1, 33)))
    assert np.isfinite(blind.rotations).all() and blind.meta["clip_solve"]["focal"] is None


def test_solve_option():
    from core.__main__ import build_parser
    from core.pipeline import ConvertOptions

    assert ConvertOptions().solve in MODES
    assert build_parser().parse_args(["clip.mp4", "--solve", "frame"]).solve == "frame"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["clip.mp4", "--solve", "nope"])
