"""core.fingers: synthetic hands (forward kinematics of rigs/hand.json at known angles, MediaPipe-like landmarks) solved
back, the right hand's mirror convention, the fingers on the body's skeleton, and real MediaPipe Hands output."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core import fingers
from core.common import rotations as quat
from core.common.hands import hand_joint_names, hand_limits_deg, mirrored_offsets, with_fingers
from core.common.skeleton import humanoid

from conftest import BALANCE_CLIP, ROOT, WALK_CLIP

RIG = json.loads((ROOT / "rigs" / "hand.json").read_text())
JOINTS = RIG["joints"]
NAMES = [j["name"] for j in JOINTS]
PARENTS = [NAMES.index(j["parent"]) if j["parent"] else -1 for j in JOINTS]
OFFSETS = np.array([j["offset"] for j in JOINTS])
H = len(JOINTS)
FINGERS = ("Index", "Middle", "Ring", "Little")
FPS = 30.0


def _settings(**changes: object) -> fingers.FingerSettings:
    """The solver's geometry alone: without the learned correction (it is tested on its own below)."""
    return fingers.FingerSettings(correction=False, **changes)


def _bone(j: int) -> np.ndarray:
    """Joint j's rest bone: its child's offset, or its end site."""
    child = [k for k, p in enumerate(PARENTS) if p == j]
    return OFFSETS[child[0]] if child else np.array(JOINTS[j]["end"], dtype=np.float64)


def _rotation(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rodrigues: unit axis (3,), angles (N,) radians -> (N, 3, 3)."""
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    s, c = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return np.eye(3) + s * k + (1.0 - c) * (k @ k)


def _local(angles_deg: np.ndarray) -> np.ndarray:
    """The documented convention, written again here: (N, H, 2) degrees -> (N, H, 3, 3) left-hand local rotations,
    abduction about -s*Y after flexion about -(d x Y)."""
    out = np.empty(angles_deg.shape[:2] + (3, 3))
    for j, name in enumerate(NAMES):
        d = _bone(j) / np.linalg.norm(_bone(j))
        lateral = np.cross(d, [0.0, 1.0, 0.0])
        sign = -1.0 if name.startswith(("Ring", "Little")) else 1.0
        flex = _rotation(-lateral / np.linalg.norm(lateral), np.radians(angles_deg[:, j, 0]))
        abd = _rotation(np.array([0.0, -sign, 0.0]), np.radians(angles_deg[:, j, 1]))
        out[:, j] = abd @ flex
    return out


def _landmarks(angles_deg: np.ndarray, palm: np.ndarray, right: bool = False) -> np.ndarray:
    """(N, H, 2) degrees and palm rotations (N, 3, 3) -> MediaPipe-like world landmarks (N, 21, 3): the left hand's
    forward kinematics, turned by the palm; a right hand is that left hand mirrored in x."""
    local = _local(angles_deg)
    n = len(angles_deg)
    glob, pos = np.empty_like(local), np.empty((n, H, 3))
    out = np.zeros((n, 21, 3))
    for j, p in enumerate(PARENTS):
        glob[:, j] = local[:, j] if p < 0 else glob[:, p] @ local[:, j]
        pos[:, j] = OFFSETS[j] if p < 0 else pos[:, p] + glob[:, p] @ OFFSETS[j]
        out[:, JOINTS[j]["landmarks"][0]] = pos[:, j]
        out[:, JOINTS[j]["landmarks"][1]] = pos[:, j] + glob[:, j] @ _bone(j)
    out = np.einsum("nij,nkj->nki", palm, out - out.mean(axis=1, keepdims=True))  # hand-centred like MediaPipe
    return out * np.array([-1.0, 1.0, 1.0]) if right else out


def _pose(prox: tuple[float, float, float], thumb: tuple[float, float, float, float], spread: float = 0.0,
          extended: tuple[str, ...] = ()) -> np.ndarray:
    """(H, 2) degrees: every finger curled to `prox` (proximal, intermediate, distal flexion) except `extended`
    (straight); thumb = (proximal flexion, its abduction, intermediate, distal flexion); spread: proximal abduction."""
    out = np.zeros((H, 2))
    out[0], out[1, 0], out[2, 0] = (thumb[0], thumb[1]), thumb[2], thumb[3]
    for finger in FINGERS:
        j = NAMES.index(f"{finger}Proximal")
        out[j:j + 3, 0] = 0.0 if finger in extended else prox
        out[j, 1] = spread * {"Index": 1.0, "Middle": 0.0, "Ring": 0.6, "Little": 1.2}[finger]
    return out


TUCKED = (40.0, -20.0, 50.0, 30.0)
POSES = {
    "open": _pose((0, 0, 0), (5.0, 35.0, 5.0, 5.0), spread=12.0),
    "fist": _pose((85, 100, 60), TUCKED),
    "pointing": _pose((80, 95, 55), TUCKED, extended=("Index",)),
    "thumbs_up": _pose((85, 100, 60), (0.0, 30.0, 0.0, 0.0)),
    "count_1": _pose((80, 95, 55), TUCKED, extended=("Index",)),
    "count_2": _pose((80, 95, 55), TUCKED, spread=10.0, extended=("Index", "Middle")),
    "count_3": _pose((80, 95, 55), TUCKED, spread=10.0, extended=("Index", "Middle", "Ring")),
    "count_4": _pose((80, 95, 55), (45.0, -25.0, 50.0, 30.0), spread=10.0, extended=FINGERS),
    "count_5": _pose((0, 0, 0), (0.0, 40.0, 0.0, 0.0), spread=15.0),
    "relaxed": _pose((25, 40, 20), (15.0, 10.0, 15.0, 10.0), spread=5.0),
}


def _random_palms(rng: np.random.Generator, n: int) -> np.ndarray:
    return quat.to_matrix(quat.normalize(rng.normal(size=(n, 4))))


def _clip(rng: np.random.Generator, hold: int = 30, noise_m: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Every pose held `hold` frames, each under its own palm orientation turning slowly: landmarks (F, 21, 3) and
    the true angles (F, H, 2) degrees. noise_m: RMS 3D noise per landmark."""
    truth = np.concatenate([np.repeat(p[None], hold, axis=0) for p in POSES.values()])
    start = quat.normalize(rng.normal(size=(len(POSES), 4)))
    spin = quat.normalize(np.concatenate([np.ones((len(POSES), 1)), rng.normal(0.0, 0.05, (len(POSES), 3))], axis=1))
    k = np.arange(hold) / hold
    palms = np.concatenate([quat.slerp(np.repeat(s[None], hold, 0), np.repeat(quat.multiply(e, s)[None], hold, 0), k)
                            for s, e in zip(start, spin)])
    pts = _landmarks(truth, quat.to_matrix(palms))
    pts += rng.normal(0.0, noise_m / np.sqrt(3.0), pts.shape)
    return pts, truth


def _steady(hold: int, count: int, margin: int) -> np.ndarray:
    """(F,) bool: frames at least `margin` from a change of pose."""
    k = np.arange(hold * count) % hold
    return (k >= margin) & (k < hold - margin)


def _both(left: np.ndarray, right: np.ndarray | None = None) -> np.ndarray:
    return np.stack([left, left * np.array([-1.0, 1.0, 1.0]) if right is None else right], axis=1)


def test_convention_directions() -> None:
    """Positive flexion curls toward the palm (-Y), abduction spreads away from the middle finger (rigs/hand.json)."""
    rest = {n: _bone(j) / np.linalg.norm(_bone(j)) for j, n in enumerate(NAMES)}

    def moved(name: str, flex: float, abd: float) -> np.ndarray:
        angles = np.zeros((1, H, 2))
        angles[0, NAMES.index(name)] = np.radians([flex, abd])
        return quat.rotate(fingers.finger_rotations(angles)[0, NAMES.index(name)], rest[name])

    assert np.allclose(moved("IndexProximal", 90.0, 0.0), [0.0, -1.0, 0.0], atol=1e-9)
    assert moved("IndexProximal", 0.0, 20.0)[2] > 0.3 and moved("LittleProximal", 0.0, 20.0)[2] < -0.3
    thumb = moved("ThumbProximal", 0.0, 30.0)
    assert np.degrees(np.arctan2(thumb[2], thumb[0])) == pytest.approx(
        np.degrees(np.arctan2(rest["ThumbProximal"][2], rest["ThumbProximal"][0])) + 30.0)
    assert moved("ThumbProximal", 40.0, 0.0)[1] < -0.5
    # the module's quaternions are the test's own matrices
    angles = np.random.default_rng(1).uniform(-20, 40, (5, H, 2))
    assert np.allclose(quat.to_matrix(fingers.finger_rotations(np.radians(angles))), _local(angles), atol=1e-12)


def test_noise_free_poses_exact() -> None:
    """Every pose under random palm orientations: flexion within 1 degree, palm rotation exact."""
    rng = np.random.default_rng(0)
    truth = np.repeat(np.stack(list(POSES.values())), 20, axis=0)
    palms = _random_palms(rng, len(truth))
    pts = _landmarks(truth, palms)
    solved = fingers.solve_fingers(_both(pts), np.ones((len(pts), 2)), FPS, _settings(cutoff_hz=0))
    err = np.abs(solved.angles_deg[:, 0] - truth)
    assert err[..., 0].max() < 1.0, err[..., 0].max(axis=0)
    assert err[..., 1].max() < 3.0, err[..., 1].max(axis=0)
    got = quat.to_matrix(solved.palm_rotations[:, 0])
    assert np.abs(got - palms).max() < 1e-9
    assert np.all(solved.hand_confidence == 1.0) and not solved.flipped.any()


def test_noisy_clip_with_gaps() -> None:
    """2 mm noise, gaps of 0.2 s, 1 s and a missing start: flexion error < 5 degrees on steady frames, limits kept,
    short gaps interpolated with confidence 0, the clip's lengths fitted."""
    rng = np.random.default_rng(2)
    pts, truth = _clip(rng, noise_m=0.002)
    frames = len(pts)
    score = np.full((frames, 2), 0.9)
    hands = _both(pts)
    short, long = slice(40, 46), slice(100, 130)  # 6 frames = 0.2 s; 30 frames = 1 s
    hands[short, 0], hands[long, 1], hands[:5, 1] = np.nan, np.nan, np.nan
    score[short, 0] = score[long, 1] = score[:5, 1] = 0.0
    solved = fingers.solve_fingers(hands, score, FPS, _settings())

    steady = _steady(30, len(POSES), 8)
    steady[long] = False
    err = np.abs(solved.angles_deg - truth[:, None])  # (F, 2, H, 2)
    flex_err = err[steady, :, :, 0].mean(axis=0)
    assert flex_err.max() < 5.0, flex_err
    limits = hand_limits_deg()
    assert np.all(solved.angles_deg >= limits[..., 0] - 1e-9) and np.all(solved.angles_deg <= limits[..., 1] + 1e-9)
    assert np.all(np.isfinite(solved.hand_rotations))
    assert np.allclose(np.linalg.norm(solved.hand_rotations, axis=-1), 1.0)
    assert np.all(solved.hand_confidence[short, 0] == 0.0) and np.all(solved.hand_confidence[long, 1] == 0.0)
    seen = steady.copy()
    seen[short] = False
    assert np.all(solved.hand_confidence[seen, 0] > 0.8)
    # the short gap is interpolated between its neighbours (the same pose): still within 5 degrees
    assert np.abs(solved.angles_deg[short, 0, :, 0] - truth[short, :, 0]).mean() < 5.0
    rig = np.array([np.linalg.norm(_bone(j)) for j in range(H)])
    assert np.allclose(solved.finger_lengths, rig, atol=0.002)
    assert solved.hand_rotations.shape == (frames, 2, H, 4) and solved.palm_rotations.shape == (frames, 2, 4)
    assert solved.hand_joints == hand_joint_names()


def test_right_hand_is_the_mirrored_left() -> None:
    """A right hand given as the X-mirror of a left: the same angles, mirrored quaternions (w, x, -y, -z), and its
    rotations on the right hand's mirrored rest (with_fingers' offsets) rebuild its own landmarks."""
    rng = np.random.default_rng(3)
    truth = np.repeat(np.stack(list(POSES.values())), 4, axis=0)
    palms = _random_palms(rng, len(truth))
    left = _landmarks(truth, palms)
    right = _landmarks(truth, palms, right=True)
    solved = fingers.solve_fingers(_both(left, right), np.ones((len(truth), 2)), FPS,
                                   _settings(cutoff_hz=0))
    assert np.allclose(solved.angles_deg[:, 1], solved.angles_deg[:, 0], atol=1e-9)
    assert np.allclose(solved.hand_rotations[:, 1], fingers.mirror_rotations(solved.hand_rotations[:, 0]), atol=1e-9)
    assert np.allclose(solved.palm_rotations[:, 1], fingers.mirror_rotations(solved.palm_rotations[:, 0]), atol=1e-9)

    # rebuild the right hand: rest offsets mirrored in X, solved local rotations, then the palm rotation
    offsets = mirrored_offsets(OFFSETS)
    ends = {j: mirrored_offsets(_bone(j)) for j in range(H)}
    local = solved.hand_rotations[:, 1]
    glob, pos = np.empty_like(local), np.empty((len(truth), H, 3))
    rebuilt = np.zeros((len(truth), 21, 3))
    for j, p in enumerate(PARENTS):
        glob[:, j] = local[:, j] if p < 0 else quat.multiply(glob[:, p], local[:, j])
        pos[:, j] = offsets[j] if p < 0 else pos[:, p] + quat.rotate(glob[:, p], offsets[j])
        rebuilt[:, JOINTS[j]["landmarks"][0]] = pos[:, j]
        rebuilt[:, JOINTS[j]["landmarks"][1]] = pos[:, j] + quat.rotate(glob[:, j], ends[j])
    rebuilt = quat.rotate(solved.palm_rotations[:, 1, None], rebuilt)
    centred = right - right[:, :1]
    assert np.abs(rebuilt - centred).max() < 0.003  # metres: hinges' abduction is the only slack


def test_depth_mirrored_hand_is_fixed() -> None:
    """A left hand's landmarks mirrored in depth (the right hand MediaPipe sees when its handedness is wrong) solve
    to the same finger angles and are reported as flipped; without the fix the fingers bend backwards."""
    rng = np.random.default_rng(4)
    truth = np.repeat(np.stack([POSES["fist"], POSES["relaxed"], POSES["pointing"]]), 10, axis=0)
    pts = _landmarks(truth, _random_palms(rng, len(truth))) * np.array([1.0, 1.0, -1.0])
    solved = fingers.solve_fingers(_both(pts), np.ones((len(truth), 2)), FPS, _settings(cutoff_hz=0))
    assert solved.flipped.all()
    assert np.abs(solved.angles_deg[:, 0, :, 0] - truth[..., 0]).max() < 1.0
    plain = fingers.solve_fingers(_both(pts), np.ones((len(truth), 2)), FPS,
                                  _settings(cutoff_hz=0, fix_chirality=False))
    assert np.abs(plain.angles_deg[:, 0, :, 0] - truth[..., 0]).mean() > 20.0


def test_fist_on_the_body_skeleton() -> None:
    """The solved fist and open hand on the humanoid (with_fingers): fingertips come toward the palm's centre in the
    fist, on both sides, and stay on the palm's side (below the hand in the T-pose)."""
    rng = np.random.default_rng(5)
    truth = np.stack([POSES["open"], POSES["fist"]])
    pts = _landmarks(truth, _random_palms(rng, 2))
    solved = fingers.solve_fingers(_both(pts), np.ones((2, 2)), FPS, _settings(cutoff_hz=0))
    body = humanoid()
    skeleton, rotations = with_fingers(body, quat.identity(2, body.num_joints), solved.hand_rotations,
                                       solved.hand_joints)
    joints = skeleton.forward_kinematics(rotations, np.zeros((2, 3)))
    world = skeleton.global_rotations(rotations)
    for side in ("Left", "Right"):
        tips = [skeleton.index(f"{side}{f}Distal") for f in FINGERS]
        tip_pos = joints[:, tips] + quat.rotate(world[:, tips], skeleton.end_sites[tips])
        knuckles = [skeleton.index(f"{side}{f}Proximal") for f in FINGERS]
        centre = 0.5 * (joints[:, [skeleton.index(f"{side}Hand")]] + joints[:, knuckles].mean(axis=1, keepdims=True))
        dist = np.linalg.norm(tip_pos - centre, axis=-1)  # (2, 4): open, fist
        assert np.all(dist[1] < 0.6 * dist[0]), (side, dist)
        assert np.all(tip_pos[1, :, 1] < joints[1, skeleton.index(f"{side}Hand"), 1])  # palm down: below
        hand_x = joints[0, skeleton.index(f"{side}Hand"), 0]
        assert np.all(np.sign(tip_pos[0, :, 0] - hand_x) == (1.0 if side == "Left" else -1.0))


def test_outliers_and_unseen_hand() -> None:
    """Frames whose bones disagree with the clip's lengths lose confidence (most bones off: dropped and filled); a
    hand never seen stays straight with confidence 0 and the rig's lengths."""
    rng = np.random.default_rng(6)
    truth = np.repeat(POSES["relaxed"][None], 60, axis=0)
    pts = _landmarks(truth, _random_palms(rng, 1).repeat(60, axis=0))
    hands = _both(pts)
    hands[:, 1] = np.nan
    hands[20, 0, [6, 8]] += np.array([0.0, 0.04, 0.0])  # index joints misplaced: 3 bones off
    hands[30, 0, 6:] += rng.normal(0.0, 0.03, (15, 3))  # a garbled hand
    solved = fingers.solve_fingers(hands, np.ones((60, 2)), FPS, _settings())
    conf = solved.hand_confidence[:, 0]
    assert conf[20] < 0.9 and conf[20] > 0.5 and conf[30] == 0.0 and conf[25] == 1.0
    assert np.abs(solved.angles_deg[30, 0, :, 0] - truth[30, :, 0]).max() < 2.0  # filled from its neighbours
    assert np.all(solved.hand_confidence[:, 1] == 0.0)
    assert np.allclose(solved.hand_rotations[:, 1], [1.0, 0.0, 0.0, 0.0])
    rig = np.array([np.linalg.norm(_bone(j)) for j in range(H)])
    assert np.allclose(solved.finger_lengths[1], rig)


def test_limits_clamp() -> None:
    """Fingers bent backwards or sideways beyond rigs/hand.json's limits come out at the limits."""
    rng = np.random.default_rng(8)
    pose = POSES["relaxed"].copy()
    index, middle, thumb = NAMES.index("IndexProximal"), NAMES.index("MiddleIntermediate"), 0
    pose[index] = (-60.0, 0.0)  # hyperextended
    pose[middle] = (50.0, 25.0)  # a hinge bent sideways
    pose[thumb] = (10.0, 85.0)
    truth = np.repeat(pose[None], 10, axis=0)
    pts = _landmarks(truth, _random_palms(rng, 10))
    solved = fingers.solve_fingers(_both(pts), np.ones((10, 2)), FPS, _settings(cutoff_hz=0))
    limits = hand_limits_deg()
    got = solved.angles_deg[:, 0]
    assert np.allclose(got[:, index, 0], limits[index, 0, 0])
    assert np.allclose(got[:, middle, 1], limits[middle, 1, 1])
    assert np.allclose(got[:, thumb, 1], limits[thumb, 1, 1])
    assert np.all(got >= limits[..., 0] - 1e-9) and np.all(got <= limits[..., 1] + 1e-9)


def test_vectorised_speed() -> None:
    """Ten seconds of two hands at 30 fps solve in well under a second."""
    import time

    rng = np.random.default_rng(7)
    pts, _ = _clip(rng, hold=30, noise_m=0.002)
    hands = _both(pts)
    start = time.perf_counter()
    fingers.solve_fingers(hands, np.ones((len(pts), 2)), FPS, _settings())
    assert time.perf_counter() - start < 1.0


@pytest.fixture(scope="module")
def real_hands() -> list[tuple[int, str, np.ndarray]]:
    """Real MediaPipe Hands (static images) on crops around the pose's wrists of the sample clips: (side, MediaPipe's
    handedness label, world landmarks (21, 3))."""
    cv2 = pytest.importorskip("cv2")
    mp = pytest.importorskip("mediapipe")
    found = []
    for clip, frames in ((BALANCE_CLIP, range(0, 100, 8)), (WALK_CLIP, range(70, 170, 10))):
        cap = cv2.VideoCapture(str(clip))
        with mp.solutions.pose.Pose(static_image_mode=True) as pose, \
                mp.solutions.hands.Hands(static_image_mode=True, max_num_hands=1,
                                         min_detection_confidence=0.3) as hands:
            for f in frames:
                cap.set(cv2.CAP_PROP_POS_FRAMES, f)
                ok, img = cap.read()
                assert ok
                rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
                h, w = rgb.shape[:2]
                result = pose.process(rgb)
                if not result.pose_landmarks:
                    continue
                lm = result.pose_landmarks.landmark
                for side, (wrist, elbow) in enumerate(((15, 13), (16, 14))):
                    c = np.array([lm[wrist].x * w, lm[wrist].y * h])
                    e = np.array([lm[elbow].x * w, lm[elbow].y * h])
                    size, c = max(2.5 * np.linalg.norm(c - e), 40.0), c + 0.3 * (c - e)
                    x0, y0 = int(max(c[0] - size / 2, 0)), int(max(c[1] - size / 2, 0))
                    crop = rgb[y0:int(c[1] + size / 2), x0:int(c[0] + size / 2)]
                    if crop.size == 0:
                        continue
                    out = hands.process(cv2.resize(crop, (256, 256)))
                    if out.multi_hand_world_landmarks:
                        p = np.array([[q.x, q.y, q.z] for q in out.multi_hand_world_landmarks[0].landmark])
                        found.append((side, out.multi_handedness[0].classification[0].label, p))
        cap.release()
    return found


def test_real_mediapipe_hands(real_hands: list[tuple[int, str, np.ndarray]]) -> None:
    """On real MediaPipe output: the depth flip happens exactly where MediaPipe's handedness (which assumes a mirrored
    image) names the side the body says, after which the fingers curl toward the palm; lengths are hand-sized."""
    assert len(real_hands) >= 20
    sides = np.array([s for s, _, _ in real_hands])
    pts = np.stack([p for _, _, p in real_hands])
    hands = np.full((len(pts), 2, 21, 3), np.nan)
    hands[np.arange(len(pts)), sides] = pts
    settings = _settings(cutoff_hz=0, max_gap_s=0)  # independent images
    solved = fingers.solve_fingers(hands, np.ones((len(pts), 2)), FPS, settings)
    flipped = solved.flipped[np.arange(len(pts)), sides]
    label_wrong = np.array([label == ("Left", "Right")[s] for s, label, _ in real_hands])
    assert np.mean(flipped == label_wrong) >= 0.9, (flipped, label_wrong)
    assert 0.1 < np.mean(flipped) < 0.9  # both kinds occur in these clips
    curl = solved.angles_deg[np.arange(len(pts)), sides, 3:, 0].mean(axis=1)
    assert np.mean(curl > 0) >= 0.9
    plain = fingers.solve_fingers(hands, np.ones((len(pts), 2)), FPS,
                                  _settings(cutoff_hz=0, max_gap_s=0, fix_chirality=False))
    assert np.mean(plain.angles_deg[np.arange(len(pts)), sides, 3:, 0].mean(axis=1) > 0) < 0.8
    index = hand_joint_names().index("IndexProximal")
    assert np.all((solved.finger_lengths[:, index] > 0.015) & (solved.finger_lengths[:, index] < 0.06))


# ------------------------------------------------------------------------------------ the image landmarks' path

FOCAL, CENTRE = 1000.0, np.array([360.0, 640.0])
#: Rest (fingers +X, palm -Y) -> camera axes (x right, y down, z away): fingers up, the palm toward the camera.
FACING = np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def _camera_clip(rng: np.random.Generator, names: tuple[str, ...], hold: int = 20, tilt_deg: float = 25.0,
                 distance: float = 1.2) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Poses held `hold` frames, the palm toward a pinhole camera (focal FOCAL px) `distance` m away, tilted up to
    tilt_deg about random axes: hand-centred landmarks in camera axes (F, 21, 3), their image (F, 21, 2) pixels,
    the true angles (F, H, 2) degrees and the image scale at the hand (pixels per metre)."""
    truth = np.concatenate([np.repeat(POSES[n][None], hold, axis=0) for n in names])
    axes = rng.normal(size=(len(truth), 3))
    half = 0.5 * np.radians(rng.uniform(0.0, tilt_deg, (len(truth), 1)))
    tilt = np.concatenate([np.cos(half), np.sin(half) * axes / np.linalg.norm(axes, axis=1, keepdims=True)], axis=1)
    pts = _landmarks(truth, quat.to_matrix(tilt) @ FACING)
    cam = pts + np.array([0.15, -0.1, distance])
    image = FOCAL * cam[..., :2] / cam[..., 2:] + CENTRE
    return pts, image, truth, FOCAL / distance


def test_palm_scale_is_the_camera_scale() -> None:
    """The palm's weak-perspective scale is the pinhole camera's focal over the hand's distance, within 3 %."""
    rng = np.random.default_rng(9)
    pts, image, _, scale = _camera_clip(rng, ("open", "fist", "relaxed"), hold=5)
    got = fingers.palm_scale(image, pts)
    assert np.all(np.abs(got / scale - 1.0) < 0.03), got / scale


def test_image_fixes_wrong_world_xy() -> None:
    """World landmarks whose fingers' x, y are wrong (each finger landmark pulled 60 % toward its chain parent's
    x, y, depth kept) solve far off; with the true image they come back within a few degrees, both hands alike."""
    rng = np.random.default_rng(10)
    pts, image, truth, _ = _camera_clip(rng, ("open", "fist", "pointing", "relaxed", "count_2"))
    wrong = pts.copy()
    parents = fingers.LANDMARK_PARENTS
    for k in range(1, 21):
        if k not in fingers.PALM_LANDMARKS:
            wrong[:, k, :2] = pts[:, k, :2] - 0.6 * (pts[:, k, :2] - pts[:, parents[k], :2])
    settings = _settings(cutoff_hz=0)
    score = np.ones((len(pts), 2))
    right = image * np.array([-1.0, 1.0]) + np.array([2.0 * CENTRE[0], 0.0])  # the mirrored camera's image
    plain = fingers.solve_fingers(_both(wrong), score, FPS, settings)
    solved = fingers.solve_fingers(_both(wrong), score, FPS, settings, hands_image=np.stack([image, right], axis=1))
    err_plain = np.abs(plain.angles_deg[:, 0, :, 0] - truth[..., 0]).mean()
    err = np.abs(solved.angles_deg[..., 0] - truth[:, None, :, 0]).mean(axis=(0, 2))
    assert err_plain > 10.0, err_plain
    assert np.all(err < 4.0), err
    assert np.allclose(solved.angles_deg[:, 1], solved.angles_deg[:, 0], atol=1e-6)


def test_flattened_depth_comes_back_curled() -> None:
    """Curled hands whose world depth is flattened to 30 % (MediaPipe's under-curled fists): the world alone, and
    the image with the world's depth, under-curl curled fingers by over 12 degrees on average; the image with
    depth from the bones' lengths (length_depth) brings them back within 10 and leaves the open hand open."""
    rng = np.random.default_rng(11)
    names = ("open", "fist", "pointing", "relaxed", "count_2", "open")
    pts, image, truth, _ = _camera_clip(rng, names)
    score = np.ones((len(pts), 2))
    hands = np.stack([pts * np.array([1.0, 1.0, 0.3]), np.full_like(pts, np.nan)], axis=1)
    hands_image = np.stack([image, np.full_like(image, np.nan)], axis=1)
    plain = fingers.solve_fingers(hands, score, FPS, _settings(cutoff_hz=0))
    no_length = fingers.solve_fingers(hands, score, FPS, _settings(cutoff_hz=0), hands_image=hands_image)
    solved = fingers.solve_fingers(hands, score, FPS, _settings(cutoff_hz=0, length_depth=True),
                                   hands_image=hands_image)
    fist = np.repeat([n == "fist" for n in names], 20)
    curled = np.repeat([n != "open" for n in names], 20)

    def error(result: fingers.FingerSolve) -> np.ndarray:
        return result.angles_deg[:, 0, 3:, 0] - truth[:, 3:, 0]  # the four fingers' flexion

    for result in (plain, no_length):
        assert np.abs(error(result)[curled]).mean() > 12.0 and error(result)[fist].mean() < -8.0
    assert np.abs(error(solved)[curled]).mean() < 10.0 and np.abs(error(solved)[fist].mean()) < 6.0
    assert np.abs(error(solved)[~curled]).mean() < 3.0
    assert np.all(solved.hand_confidence[:, 1] == 0.0)
    # frames without an image fall back to the world landmarks
    hands_image[30:40, 0] = np.nan
    points = fingers.image_points(hands_image, hands)
    assert np.array_equal(points[30:40], hands[30:40], equal_nan=True) and np.all(np.isfinite(points[:, 0]))
    assert not np.allclose(points[:30, 0], hands[:30, 0])


def test_image_depth_is_weighed_with_the_world() -> None:
    """Flattened world depth and the image's true depth (MediaPipe's landmark z, in x's pixel scale): the image's
    depth alone (image_depth 1) solves the curled fingers within 3 degrees; the default equal weights land between
    it and the world's."""
    rng = np.random.default_rng(12)
    names = ("open", "fist", "pointing", "relaxed", "count_2")
    pts, image, truth, scale = _camera_clip(rng, names)
    depth = scale * (pts[..., 2:] - pts[:, :1, 2:])
    hands_image = np.stack([np.concatenate([image, depth], axis=-1), np.full((len(pts), 21, 3), np.nan)], axis=1)
    hands = np.stack([pts * np.array([1.0, 1.0, 0.3]), np.full_like(pts, np.nan)], axis=1)
    score = np.ones((len(pts), 2))

    def error(image_depth: float) -> float:
        settings = _settings(cutoff_hz=0, image_depth=image_depth)
        solved = fingers.solve_fingers(hands, score, FPS, settings, hands_image=hands_image)
        return float(np.abs(solved.angles_deg[:, 0, :, 0] - truth[..., 0]).mean())

    alone, default, world = error(1.0), error(fingers.SETTINGS.image_depth), error(0.0)
    assert alone < 3.0 and alone < default < world and world > 8.0, (alone, default, world)


def test_learned_correction_curls_under_bent_fingers(tmp_path) -> None:
    """The shipped correction (core/weights/finger_correction.json) is checked on load, changes flexion only where
    a hand was seen, bends a MediaPipe-like under-curled fist further (every knuckle) and leaves an open hand
    nearly open; a damaged file is a WeightsMissing naming the rebuild command."""
    gain, offset = fingers.load_correction()
    count = len(hand_joint_names())
    assert gain.shape == (count, count) and offset.shape == (count,)
    blocks = np.kron(np.eye(5), np.ones((3, 3)))  # gains stay within each finger
    assert np.all(gain[blocks == 0] == 0.0)
    knuckles = [NAMES.index(f"{f}Proximal") for f in FINGERS]
    claw = np.zeros(count)
    claw[knuckles] = np.radians(45.0)  # MediaPipe's fist: knuckles half bent
    claw[[NAMES.index(f"{f}{level}") for f in FINGERS for level in ("Intermediate", "Distal")]] = np.radians(60.0)
    assert np.all(fingers.correct_flexion(claw)[knuckles] > claw[knuckles] + np.radians(5.0))
    assert np.all(np.abs(np.degrees(fingers.correct_flexion(np.zeros(count)))) < 15.0)

    rng = np.random.default_rng(3)
    pts, _ = _clip(rng, hold=10)
    hands = np.stack([pts, np.full_like(pts, np.nan)], axis=1)
    on = fingers.solve_fingers(hands, np.ones((len(pts), 2)), FPS, fingers.FingerSettings(cutoff_hz=0))
    off = fingers.solve_fingers(hands, np.ones((len(pts), 2)), FPS, _settings(cutoff_hz=0))
    assert not np.allclose(on.angles_deg[:, 0, :, 0], off.angles_deg[:, 0, :, 0])
    assert np.array_equal(on.angles_deg[..., 1], off.angles_deg[..., 1])
    assert np.all(on.angles_deg[:, 1] == 0.0)  # the unseen right hand stays straight

    bad = tmp_path / "correction.json"
    bad.write_text(json.dumps({"joints": NAMES, "gain": [[0.0]], "offset_rad": [0.0] * count}))
    with pytest.raises(fingers.WeightsMissing, match="training.finger_correction"):
        fingers.load_correction(bad)
