"""core.ik, core.contacts and the MediaPipe world lifter.

Round trips: random poses -> forward kinematics -> the 33 landmarks placed exactly as rigs/humanoid_ik.json says
(core.ik.keypoints_from_pose) -> IK -> the same pose, lengths and landmarks back. Then the lifter on a synthetic
camera and the whole chain on real footage with real MediaPipe.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from core.detections import Detections
from core.ik import keypoints_from_pose, load_ik_rig, scaled_skeleton, solve
from core.lift import get_lifter
from core.lift.mediapipe_world import CameraModel, MediaPipeWorldLifter
from core.scipy_rotations import from_wxyz, to_wxyz
from core.common.skeleton import Skeleton

FPS = 30.0
RIG = load_ik_rig()
LANDMARK = {name: k for k, name in enumerate(RIG.landmark_names)}

# Non-default proportions (the groups of rigs/humanoid_ik.json); left and right alike unless a test says otherwise.
SCALES = {"pelvis": 1.1, "shoulders": 0.9, "head": 1.05, "trunk": 1.12, "neck": 0.85, "upper_arm": 1.07,
          "forearm": 0.93, "hand": 1.1, "thigh": 1.05, "shin": 0.96, "foot": 1.08}


def group_scales(**sides: float) -> dict[str, float]:
    """SCALES spelled out per side; keyword overrides like left_thigh=1.2."""
    out: dict[str, float] = {}
    for name, s in SCALES.items():
        if name in ("pelvis", "shoulders", "head", "trunk", "neck"):
            out[name] = s
        else:
            out[f"left_{name}"] = out[f"right_{name}"] = s
    out.update(sides)
    return out


def _axis(angles: np.ndarray, axis: int) -> Rotation:
    v = np.zeros((len(angles), 3))
    v[:, axis] = angles
    return Rotation.from_rotvec(v)


def _deg(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    return np.radians(rng.uniform(lo, hi, n))


def _ball(rng: np.random.Generator, n: int, max_deg: float) -> Rotation:
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    return Rotation.from_rotvec(axis * _deg(rng, n, 0.0, max_deg)[:, None])


def random_pose(frames: int, seed: int = 0, scales: dict[str, float] | None = None, bend: tuple[float, float] = (25, 145)
                ) -> tuple[Skeleton, np.ndarray, np.ndarray]:
    """Random poses that the 33 landmarks determine completely, so IK must give them back exactly.

    Honest about what landmarks can see, the generator only moves joints the way the IK's model allows:
    - pelvis: any orientation; spine: side bend γ and twist τ only, split as the IK assumes (Spine = S½·T½,
      Chest = T^-½·S½·T); forward lean is indistinguishable from pelvis tilt, so the pelvis carries it;
    - neck: any rotation; head on neck: nod and tilt only (its axial twist is the neck's);
    - clavicles: level (the trunk model assumes it; test_clavicles_follow_shrugs moves them); toes: fixed;
    - upper arm and thigh: any rotation; elbow and knee: hinges (bent at least `bend[0]` degrees, so that the bend
      plane defines the upper-limb twist) followed by a twist of the forearm/shin about its own axis;
    - wrist and ankle: two degrees of freedom, deviation·flexion and flexion·inversion (their axial twist is the
      forearm's/shin's, which is what the hand's pinky-to-index and the foot's heel-to-toe lines measure).
    Returns the skeleton with non-default bone lengths, local rotations (F, J, 4) w-x-y-z and root positions (F, 3).
    """
    rng = np.random.default_rng(seed)
    sk = scaled_skeleton(RIG, scales or group_scales())
    loc: dict[str, Rotation] = {"Hips": _axis(_deg(rng, frames, -180, 180), 1) * _ball(rng, frames, 40)}
    gamma, tau = _deg(rng, frames, -35, 35), _deg(rng, frames, -45, 45)
    half_swing, half_twist = _axis(gamma / 2, 2), _axis(tau / 2, 1)
    loc["Spine"] = half_swing * half_twist
    loc["Chest"] = half_twist.inv() * half_swing * _axis(tau, 1)
    loc["Neck"] = _ball(rng, frames, 40)
    loc["Head"] = _axis(_deg(rng, frames, -25, 25), 2) * _axis(_deg(rng, frames, -35, 35), 0)
    for side, sign in (("Left", -1.0), ("Right", 1.0)):
        loc[f"{side}UpperArm"] = Rotation.random(frames, random_state=int(rng.integers(1 << 31)))
        loc[f"{side}LowerArm"] = _axis(sign * _deg(rng, frames, *bend), 1) * _axis(_deg(rng, frames, -80, 80), 0)
        loc[f"{side}Hand"] = _axis(_deg(rng, frames, -25, 25), 1) * _axis(_deg(rng, frames, -60, 60), 2)
        loc[f"{side}UpperLeg"] = _ball(rng, frames, 90)
        loc[f"{side}LowerLeg"] = _axis(_deg(rng, frames, *bend), 0) * _axis(_deg(rng, frames, -30, 30), 1)
        loc[f"{side}Foot"] = _axis(_deg(rng, frames, -40, 40), 0) * _axis(_deg(rng, frames, -25, 25), 2)
    rotations = np.zeros((frames, sk.num_joints, 4))
    rotations[..., 0] = 1.0
    for name, rot in loc.items():
        rotations[:, sk.index(name)] = to_wxyz(rot)
    root = rng.normal(size=(frames, 3)) * [1.0, 0.1, 1.0] + [0.0, 1.0, -3.0]
    return sk, rotations, root


def angle_between(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Angles (radians) between two arrays of w-x-y-z rotations (..., 4)."""
    shape = q1.shape[:-1]
    return (from_wxyz(q1.reshape(-1, 4)).inv() * from_wxyz(q2.reshape(-1, 4))).magnitude().reshape(shape)


def test_round_trip_reproduces_landmarks_rotations_and_twist() -> None:
    sk, rot, root = random_pose(240)
    keypoints = keypoints_from_pose(rot, root, sk)
    motion = solve(keypoints, np.ones(keypoints.shape[:2]), FPS, ground=False)

    again = keypoints_from_pose(motion.rotations, motion.root_positions, motion.skeleton)
    error = np.linalg.norm(again - keypoints, axis=-1)
    assert error.max() < 1e-3, f"worst landmark {RIG.landmark_names[int(np.argmax(error.max(0)))]}: {error.max():.2e} m"
    np.testing.assert_allclose(motion.positions(), sk.forward_kinematics(rot, root), atol=1e-3)

    # Every local rotation, twist about the bone included, comes back (the generator only makes visible poses).
    worst = np.degrees(angle_between(motion.rotations, rot).max(axis=0))
    bad = {sk.names[j]: round(float(a), 4) for j, a in enumerate(worst) if a > 0.01}
    assert not bad, f"joints off by degrees: {bad}"


def test_twists_that_only_the_landmarks_show() -> None:
    """Forearm pronation turns no joint position, only the pinky/index landmarks; the IK must still see it."""
    sk, rot, root = random_pose(60, seed=5)
    fore = sk.index("LeftLowerArm")
    base = keypoints_from_pose(rot, root, sk)
    turned = rot.copy()
    turned[:, fore] = to_wxyz(from_wxyz(rot[:, fore]) * _axis(np.full(60, np.radians(50.0)), 0))
    keypoints = keypoints_from_pose(turned, root, sk)
    moved = np.linalg.norm(keypoints - base, axis=-1).max(axis=0) > 1e-6
    assert {RIG.landmark_names[k] for k in np.flatnonzero(moved)} == {"left_pinky", "left_index", "left_thumb"}
    motion = solve(keypoints, np.ones(keypoints.shape[:2]), FPS, ground=False)
    world = motion.skeleton.global_rotations(motion.rotations)
    truth = sk.global_rotations(turned)
    for name in ("Hips", "Chest", "LeftUpperArm", "LeftLowerArm", "LeftHand", "Head", "LeftFoot"):
        j = sk.index(name)
        assert np.degrees(angle_between(world[:, j], truth[:, j]).max()) < 0.01, name


def test_unsure_hand_landmarks_leave_the_forearm_untwisted() -> None:
    sk, rot, root = random_pose(60, seed=10)
    keypoints = keypoints_from_pose(rot, root, sk)
    confidence = np.ones(keypoints.shape[:2])
    hand = [LANDMARK[n] for n in ("left_pinky", "left_index", "left_thumb")]
    confidence[:30, hand] = 0.1
    motion = solve(keypoints, confidence, FPS, ground=False)
    fore = sk.index("LeftLowerArm")
    axis = _unit(sk.offsets[sk.index("LeftHand")])
    twist = from_wxyz(motion.rotations[:, fore]).as_rotvec() @ axis
    np.testing.assert_allclose(twist[:30], 0.0, atol=1e-9)  # only the swing from the upper arm's frame
    assert np.degrees(angle_between(motion.rotations[30:], rot[30:]).max()) < 0.01  # sure again: exact
    again = keypoints_from_pose(motion.rotations, motion.root_positions, motion.skeleton)
    body = [k for k in range(33) if k not in hand]
    assert np.abs(again[:, body] - keypoints[:, body]).max() < 1e-3  # the wrist still lands where it should


def test_clavicles_follow_shrugs() -> None:
    """Shrugs move the shoulder landmarks; the clavicles aim at them. The trunk model assumes level clavicles, so
    here the fit is close rather than exact (the spine and the shoulder width absorb a little of each shrug)."""
    sk, rot, root = random_pose(100, seed=9)
    shrug = np.radians(np.random.default_rng(0).uniform(-15, 15, 100))
    left, right = sk.index("LeftShoulder"), sk.index("RightShoulder")
    rot[:, left], rot[:, right] = to_wxyz(_axis(shrug, 2)), to_wxyz(_axis(-shrug, 2))
    keypoints = keypoints_from_pose(rot, root, sk)
    motion = solve(keypoints, np.ones(keypoints.shape[:2]), FPS, ground=False)
    again = keypoints_from_pose(motion.rotations, motion.root_positions, motion.skeleton)
    assert np.linalg.norm(again - keypoints, axis=-1).max() < 0.015
    raised = from_wxyz(motion.rotations[:, left]).apply([1.0, 0.0, 0.0])[:, 1]
    assert np.corrcoef(raised, np.sin(shrug))[0, 1] > 0.97
    assert np.degrees(np.abs(np.arcsin(raised) - shrug)).max() < 6.0


def test_bone_lengths_are_recovered() -> None:
    sk, rot, root = random_pose(90, seed=1)
    keypoints = keypoints_from_pose(rot, root, sk)
    motion = solve(keypoints, np.ones(keypoints.shape[:2]), FPS, ground=False)
    np.testing.assert_allclose(motion.skeleton.offsets[1:], sk.offsets[1:], atol=1e-6)
    np.testing.assert_allclose(motion.skeleton.end_sites, sk.end_sites, atol=1e-6)
    assert motion.meta["ik"]["scales"]["trunk"] == pytest.approx(SCALES["trunk"], abs=1e-6)
    assert motion.meta["ik"]["scales"]["neck"] == pytest.approx(SCALES["neck"], abs=1e-6)
    # Rest directions are the rig's: only lengths change.
    rest = RIG.skeleton.offsets
    cos = np.sum(_unit(motion.skeleton.offsets) * _unit(rest), axis=1)
    np.testing.assert_allclose(cos, 1.0, atol=1e-12)


def test_asymmetric_limbs_with_symmetric_off() -> None:
    scales = group_scales(left_thigh=1.2, right_thigh=0.9, left_forearm=1.0, right_forearm=0.8)
    sk, rot, root = random_pose(60, seed=2, scales=scales)
    keypoints = keypoints_from_pose(rot, root, sk)
    exact = solve(keypoints, np.ones(keypoints.shape[:2]), FPS, ground=False, symmetric=False)
    np.testing.assert_allclose(exact.skeleton.offsets[1:], sk.offsets[1:], atol=1e-6)
    pooled = solve(keypoints, np.ones(keypoints.shape[:2]), FPS, ground=False)
    left, right = pooled.skeleton.index("LeftLowerLeg"), pooled.skeleton.index("RightLowerLeg")
    lengths = np.linalg.norm(pooled.skeleton.offsets[[left, right]], axis=1)
    assert lengths[0] == pytest.approx(lengths[1]) and 0.9 * 0.41 < lengths[0] < 1.2 * 0.41


def test_only_confident_frames_set_the_lengths() -> None:
    sk, rot, root = random_pose(90, seed=3)
    keypoints = keypoints_from_pose(rot, root, sk)
    confidence = np.ones(keypoints.shape[:2])
    knee = LANDMARK["left_knee"]
    keypoints[:40, knee] += [0.0, 0.3, 0.0]  # a bad stretch, flagged as unsure
    confidence[:40, knee] = 0.1
    motion = solve(keypoints, confidence, FPS, ground=False)
    thigh = motion.skeleton.index("LeftLowerLeg")
    np.testing.assert_allclose(motion.skeleton.offsets[thigh], sk.offsets[thigh], atol=1e-6)
    assert np.all(motion.confidence[:40, motion.skeleton.index("LeftUpperLeg")] == pytest.approx(0.1))
    assert np.all(motion.confidence[40:] == 1.0)


def test_straight_limbs_fall_back_to_the_parent_frame() -> None:
    sk, rot, root = random_pose(60, seed=4, bend=(0.0, 0.0))
    keypoints = keypoints_from_pose(rot, root, sk)
    motion = solve(keypoints, np.ones(keypoints.shape[:2]), FPS, ground=False)
    assert np.all(np.isfinite(motion.rotations))
    again = keypoints_from_pose(motion.rotations, motion.root_positions, motion.skeleton)
    assert np.abs(again - keypoints).max() < 1e-3
    # With no bend to see, the upper limb only swings away from its parent: no twist about its rest axis.
    for name in ("LeftUpperArm", "RightUpperArm", "LeftUpperLeg", "RightUpperLeg"):
        j = sk.index(name)
        axis = _unit(sk.offsets[sk.children(j)[0]])
        swing_only = from_wxyz(motion.rotations[:, j]).as_rotvec() @ axis
        np.testing.assert_allclose(swing_only, 0.0, atol=1e-9, err_msg=name)


def test_missing_keypoints_give_no_nan() -> None:
    sk, rot, root = random_pose(120, seed=6)
    keypoints = keypoints_from_pose(rot, root, sk)
    confidence = np.ones(keypoints.shape[:2])
    rng = np.random.default_rng(0)
    lost = rng.random(confidence.shape) < 0.2
    lost[:, [LANDMARK[n] for n in ("left_wrist", "left_pinky", "left_index", "left_thumb")]] = True  # never seen
    lost[50:70] = True  # nobody in view for a while
    keypoints[lost] = np.nan
    confidence[lost] = 0.0
    motion = solve(keypoints, confidence, FPS)
    for name in ("rotations", "root_positions", "confidence", "keypoints_3d"):
        finite = np.isfinite(getattr(motion, name))
        if name == "keypoints_3d":
            finite = finite[:, [k for k in range(33) if not np.all(lost[:, k])]]
        assert np.all(finite), name
    assert np.all(motion.confidence[:, sk.index("LeftHand")] == 0.0)
    assert np.all(motion.confidence[50:70] == 0.0)
    nobody = solve(np.full((10, 33, 3), np.nan), np.zeros((10, 33)), FPS)
    assert np.all(np.isfinite(nobody.rotations)) and np.all(np.isfinite(nobody.root_positions))


def test_quaternions_are_continuous_over_time() -> None:
    frames = 200
    sk = scaled_skeleton(RIG, group_scales())
    t = np.linspace(0.0, 1.0, frames)
    rotations = np.zeros((frames, sk.num_joints, 4))
    rotations[..., 0] = 1.0
    rotations[:, 0] = to_wxyz(_axis(2.5 * np.pi * t, 1))  # the whole body spins one and a quarter times
    rotations[:, sk.index("LeftUpperArm")] = to_wxyz(_axis(np.full(frames, 0.3), 1) * _axis(3 * np.pi * t, 0))
    rotations[:, sk.index("LeftLowerArm")] = to_wxyz(_axis(np.full(frames, -1.0), 1))
    keypoints = keypoints_from_pose(rotations, np.zeros((frames, 3)) + [0, 1, 0], sk)
    motion = solve(keypoints, np.ones(keypoints.shape[:2]), FPS, ground=False)
    dots = np.sum(motion.rotations[1:] * motion.rotations[:-1], axis=-1)
    assert dots.min() > 0.9
    assert np.degrees(angle_between(motion.rotations, rotations).max()) < 0.01


def test_ground_levels_a_tilted_camera_and_puts_the_feet_on_the_floor() -> None:
    frames = 90
    sk = scaled_skeleton(RIG, group_scales())
    rotations = np.zeros((frames, sk.num_joints, 4))
    rotations[..., 0] = 1.0
    walk = np.stack([np.linspace(0.0, 1.5, frames), np.zeros(frames), np.zeros(frames)], axis=1)
    rotations[:, 0] = to_wxyz(_axis(np.full(frames, 0.4), 1))  # standing, turned 23° to the left
    standing = keypoints_from_pose(rotations, sk.offsets[0] + walk, sk)
    camera = Rotation.from_euler("xz", [25.0, -8.0], degrees=True)  # a camera pitched and rolled
    keypoints = camera.apply(standing.reshape(-1, 3)).reshape(standing.shape) + [0.3, -1.4, -4.0]
    motion = solve(keypoints, np.ones(keypoints.shape[:2]), FPS)
    # Levelled and grounded: heights exactly as before the camera tilted; across the floor, only turned about Y.
    positions, truth = motion.positions(), sk.forward_kinematics(rotations, sk.offsets[0] + walk)
    np.testing.assert_allclose(positions[..., 1], truth[..., 1], atol=1e-6)
    flat = (positions - positions[:1, :1])[..., [0, 2]].reshape(-1, 2)
    flat_truth = (truth - truth[:1, :1])[..., [0, 2]].reshape(-1, 2)
    u, _, vt = np.linalg.svd(flat.T @ flat_truth)
    np.testing.assert_allclose(flat @ (u @ vt), flat_truth, atol=1e-6)
    feet = [LANDMARK[n] for n in ("left_heel", "left_foot_index", "right_heel", "right_foot_index")]
    sole = float(np.min(keypoints_from_pose(rotations[:1] * 0 + [1, 0, 0, 0], sk.offsets[0][None], sk)[0, feet, 1]))
    np.testing.assert_allclose(motion.keypoints_3d[:, feet, 1], sole, atol=1e-6)
    assert np.all(motion.contacts)
    hips = motion.keypoints_3d[0, [LANDMARK["left_hip"], LANDMARK["right_hip"]]].mean(axis=0)
    np.testing.assert_allclose(hips[[0, 2]], 0.0, atol=1e-9)


def test_contacts_follow_a_stepping_foot() -> None:
    from core.contacts import foot_contacts

    frames = 120
    t = np.arange(frames) / FPS
    keypoints = np.zeros((frames, 33, 3))
    left, right = RIG.feet["left"], RIG.feet["right"]
    lift = np.clip(np.sin(2 * np.pi * 0.5 * t), 0.0, None) * 0.25  # left foot up for the first second of each two
    keypoints[:, list(left), 1] = lift[:, None]
    keypoints[:, list(left), 2] = (0.5 * lift)[:, None]
    contacts = foot_contacts(keypoints, FPS, RIG.feet)
    assert np.all(contacts[:, 1])
    assert not np.any(contacts[lift > 0.06, 0])
    down = np.convolve(lift == 0, np.ones(7), mode="same") == 7  # on the ground 3 frames either side
    assert np.all(contacts[down, 0]) and down.sum() > 40


def test_the_floor_is_the_lowest_place_the_feet_rest() -> None:
    """Standing on a box, stepping down, standing on the ground: the ground is the floor, not the box top."""
    from core.contacts import floor_height

    t = np.arange(int(3.0 * FPS)) / FPS
    height = np.interp(t, [0.0, 1.5, 1.8, 3.0], [1.0, 1.0, 0.03, 0.03])
    keypoints = np.zeros((len(t), 33, 3))
    feet = [k for side in RIG.feet.values() for k in side]
    keypoints[:, feet, 1] = height[:, None] + np.random.default_rng(0).normal(0.0, 0.005, (len(t), len(feet)))
    valid = np.ones(keypoints.shape[:2], dtype=bool)
    assert floor_height(keypoints, valid, FPS, RIG.feet, sole_height=0.03) == pytest.approx(0.0, abs=0.01)
    valid[int(1.6 * FPS):] = False  # the ground part never seen: the box top is all there is
    assert floor_height(keypoints, valid, FPS, RIG.feet, sole_height=0.03) == pytest.approx(0.97, abs=0.01)


# --------------------------------------------------------------------------------------------------- the lifter

def synthetic_detections(keypoints: np.ndarray, camera: CameraModel, width: int = 1280, height: int = 720
                         ) -> Detections:
    """What MediaPipe would report for keypoints (F, 33, 3) seen by `camera`: pixels and hip-centred world
    landmarks turned into the view along the ray to the hips (as a person crop sees them)."""
    frames = keypoints.shape[0]
    f = camera.focal_px(width, height)
    depth = -keypoints[..., 2]
    u = width / 2 + f * keypoints[..., 0] / depth
    v = height / 2 - f * keypoints[..., 1] / depth
    hips = keypoints[:, [LANDMARK["left_hip"], LANDMARK["right_hip"]]].mean(axis=1)
    ray = hips / np.linalg.norm(hips, axis=1, keepdims=True)
    axis = np.cross([0.0, 0.0, -1.0], ray)
    turn = Rotation.from_rotvec(axis / np.linalg.norm(axis, axis=1, keepdims=True)
                                * np.arccos(np.clip(-ray[:, 2], -1, 1))[:, None])
    local = keypoints - hips[:, None]
    world = Rotation.from_quat(np.repeat(turn.inv().as_quat(), 33, axis=0)).apply(local.reshape(-1, 3))
    image = np.stack([u, v, np.ones_like(u)], axis=-1)
    return Detections(times=np.arange(frames) / FPS, image=image, world=world.reshape(frames, 33, 3),
                      present=np.ones(frames, dtype=bool), width=width, height=height, fps=FPS)


def test_lifter_recovers_the_root_trajectory_of_a_pinhole_camera() -> None:
    frames = 120
    sk, rot, _ = random_pose(1, seed=7, bend=(25, 60))
    rot = np.repeat(rot, frames, axis=0)
    t = np.arange(frames) / FPS
    rot[:, 0] = to_wxyz(_axis(0.6 * t, 1) * from_wxyz(rot[:, 0]))  # turning while it walks
    path = np.stack([-1.0 + 0.5 * t, 0.2 * np.sin(t), -3.0 - 0.8 * t], axis=1)  # across and away from the camera
    keypoints = keypoints_from_pose(rot, path, sk)
    camera = CameraModel()
    lifted = MediaPipeWorldLifter(camera).lift(synthetic_detections(keypoints, camera))
    assert lifted.lifter == "mediapipe" and lifted.keypoints.shape == keypoints.shape
    inner = slice(15, -15)  # the ends of the smoothed trajectory bend a little
    error = np.linalg.norm(lifted.keypoints - keypoints, axis=-1)[inner]
    assert error.max() < 0.01, f"{error.max():.4f} m"
    np.testing.assert_array_equal(lifted.confidence, 1.0)


def test_lifter_marks_frames_without_a_person() -> None:
    sk, rot, root = random_pose(1, seed=8, bend=(25, 60))
    keypoints = keypoints_from_pose(np.repeat(rot, 40, axis=0), np.zeros((40, 3)) + [0.2, 0.0, -3.5], sk)
    det = synthetic_detections(keypoints, CameraModel())
    det.present[10:20] = False
    det.image[10:20] = np.nan
    det.world[10:20] = np.nan
    lifted = get_lifter("mediapipe").lift(det)
    assert np.all(np.isnan(lifted.keypoints[10:20])) and np.all(lifted.confidence[10:20] == 0.0)
    assert np.all(np.isfinite(lifted.keypoints[20:]))
    assert np.abs(lifted.keypoints[25:] - keypoints[25:]).max() < 0.01


def test_real_footage_gives_an_upright_person_standing_on_the_floor(balance_clip: Path) -> None:
    from core.detect2d import detect
    from core.filters import fill_gaps, smooth

    det = detect(balance_clip)
    lifted = get_lifter("mediapipe").lift(det)
    assert lifted.info["depth_m_median"] == pytest.approx(2.7, abs=1.0)  # the man stands about 3 m away
    valid = lifted.confidence > 0
    keypoints, _ = fill_gaps(lifted.keypoints, valid, det.fps)
    motion = solve(smooth(keypoints, det.fps, 6.0), lifted.confidence, det.fps)
    assert motion.num_frames == det.num_frames
    assert np.all(np.isfinite(motion.rotations)) and np.all(np.isfinite(motion.root_positions))
    sk = motion.skeleton
    lengths = {name: float(np.linalg.norm(sk.offsets[sk.index(name)]))
               for name in ("LeftLowerArm", "LeftHand", "LeftLowerLeg", "LeftFoot")}
    assert 0.2 < lengths["LeftLowerArm"] < 0.4 and 0.18 < lengths["LeftHand"] < 0.35
    assert 0.3 < lengths["LeftLowerLeg"] < 0.55 and 0.3 < lengths["LeftFoot"] < 0.55
    up = from_wxyz(motion.rotations[:, 0]).apply([0.0, 1.0, 0.0])
    assert np.median(up[:, 1]) > 0.9  # levelled: the hips stand upright
    feet = [LANDMARK[n] for n in ("left_heel", "left_foot_index", "right_heel", "right_foot_index")]
    lowest = motion.keypoints_3d[:, feet, 1].min(axis=1)
    assert abs(float(np.median(lowest))) < 0.05  # on the floor, neither sinking nor floating
    # Seen in the video: the right foot is down at the start, the left one from about frame 20 to 55.
    assert motion.contacts[:12, 1].all() and motion.contacts[24:57, 0].mean() > 0.7
    assert not motion.contacts[30:50, 1].any()


def _unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)
