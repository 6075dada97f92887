"""core.face on face sequences synthesised from MediaPipe's canonical face: blinks, jaw, head turns, gaps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.common import rotations
from core.common.hands import expression_names
from core.face import BLINK_ENTER, BLINK_EXIT, canonical_face, solve_face
from core.filters import hysteresis

FPS = 30.0
PX_PER_CM = 12.0
UPPER_LOWER = {  # eyelid contour pairs (upper, lower), the person's own sides
    "left": [(466, 249), (388, 390), (387, 373), (386, 374), (385, 380), (384, 381), (398, 382)],
    "right": [(246, 7), (161, 163), (160, 144), (159, 145), (158, 153), (157, 154), (173, 155)],
}
EYE = {"left": [249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466],
       "right": [7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246]}
IRIS = {"left": 473, "right": 468}


def neutral_face(eye_scale: float = 1.0) -> np.ndarray:
    """(478, 3) canonical face (camera axes, cm) with irises added; eyes' opening scaled by eye_scale."""
    base = canonical_face()
    face = np.zeros((478, 3))
    face[:468] = base
    for side, ring in EYE.items():
        centre = base[ring].mean(axis=0)
        face[ring, 1] = centre[1] + eye_scale * (base[ring, 1] - centre[1])
        ring_pts = centre + 0.55 * np.array([[1, 0, 0], [0, -1, 0], [-1, 0, 0], [0, 1, 0]])
        face[IRIS[side]], face[IRIS[side] + 1:IRIS[side] + 5] = centre, ring_pts
    return face


def rotation_path(frames: int, amplitude_deg: float = 30.0) -> np.ndarray:
    """(F, 3, 3) head rotations turning smoothly up to ±amplitude about yaw, pitch and roll."""
    t = np.arange(frames) / FPS
    angles = np.radians(amplitude_deg) * np.stack([np.sin(2 * np.pi * 0.23 * t), np.sin(2 * np.pi * 0.31 * t + 1),
                                                   0.5 * np.sin(2 * np.pi * 0.17 * t + 2)], axis=1)
    half = angles / 2
    qy = np.stack([np.cos(half[:, 0]), 0 * half[:, 0], np.sin(half[:, 0]), 0 * half[:, 0]], axis=1)
    qx = np.stack([np.cos(half[:, 1]), np.sin(half[:, 1]), 0 * half[:, 1], 0 * half[:, 1]], axis=1)
    qz = np.stack([np.cos(half[:, 2]), 0 * half[:, 2], 0 * half[:, 2], np.sin(half[:, 2])], axis=1)
    return rotations.to_matrix(rotations.multiply(qz, rotations.multiply(qy, qx)))


def synthesise(frames: int = 300, closure: dict[str, np.ndarray] | None = None, jaw_cm: np.ndarray | None = None,
               rot: np.ndarray | None = None, eye_scale: float = 1.0, noise_px: float = 0.3, seed: int = 0,
               edit=None) -> np.ndarray:
    """(F, 478, 3) pixel landmarks: the canonical face with eyelids closed by `closure` (side -> (F,) 0..1), the
    jaw lowered by jaw_cm (F,), turned by rot (F, 3, 3), scaled, moved and noised; edit(face (F, 478, 3)) may change
    the face before posing."""
    face = np.repeat(neutral_face(eye_scale)[None], frames, axis=0)
    for side, amount in (closure or {}).items():
        for up, low in UPPER_LOWER[side]:
            face[:, up] += amount[:, None] * (face[:, low] - face[:, up])
    if jaw_cm is not None:
        y = canonical_face()[:, 1]  # camera y is down: the lower lip and chin drop, the mouth corners a third
        face[:, :468][:, y > 4.45, 1] += jaw_cm[:, None]
        face[:, :468][:, (y > 4.2) & (y <= 4.45), 1] += jaw_cm[:, None] / 3
    if edit is not None:
        edit(face)
    rot = np.repeat(np.eye(3)[None], frames, axis=0) if rot is None else rot
    t = np.arange(frames)[:, None] * np.array([0.4, -0.2, 0.0]) + np.array([640.0, 360.0, 0.0])
    rng = np.random.default_rng(seed)
    return (PX_PER_CM * np.einsum("fij,fnj->fni", rot, face) + t[:, None]
            + rng.normal(0.0, noise_px, (frames, 478, 3)))


def blink_track(frames: int, starts: list[int], length: int = 4) -> np.ndarray:
    """(F,) eyelid closure: full for `length` frames from each start, half on the frame before and after."""
    a = np.zeros(frames)
    for s in starts:
        a[s - 1] = a[s + length] = 0.5
        a[s:s + length] = 1.0
    return a


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Runs of True in a (F,) mask as (start, end) inclusive."""
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1))


def f1(found: list[tuple[int, int]], truth: list[tuple[int, int]], slack: int = 1) -> float:
    """Event F1: a found run matches a true one when its start and end lie within `slack` frames of it."""
    hit = {i for i, (s, e) in enumerate(found) for ts, te in truth if abs(s - ts) <= slack and abs(e - te) <= slack}
    matched = {j for j, (ts, te) in enumerate(truth) for s, e in found if abs(s - ts) <= slack and abs(e - te) <= slack}
    precision = len(hit) / max(len(found), 1)
    recall = len(matched) / max(len(truth), 1)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


STARTS = [30, 75, 128, 170, 222, 265]


def column(solve, name: str) -> np.ndarray:
    return solve.expressions[:, solve.names.index(name)]


def test_canonical_face_is_mediapipe_s_and_symmetric():
    face = canonical_face()
    assert face.shape == (468, 3)
    mirrored = face * np.array([-1.0, 1.0, 1.0])
    assert np.linalg.norm(face[:, None] - mirrored[None], axis=-1).min(axis=1).max() < 1e-9
    assert face[263, 0] > face[362, 0] > 0 > face[133, 0] > face[33, 0]  # the person's left eye: the image's right
    assert face[10, 1] < face[1, 1] < face[152, 1]  # forehead above nose above chin (y down)
    assert face[1, 2] < face[234, 2]  # the nose is nearer the camera than the cheek


def test_blinks_found_at_the_right_frames_while_the_head_turns():
    frames = 300
    a = blink_track(frames, STARTS)
    image = synthesise(frames, {"left": a, "right": a}, rot=rotation_path(frames), noise_px=0.6)
    solve = solve_face(image, np.ones(frames, bool), FPS)
    truth = [(s, s + 3) for s in STARTS]
    both = solve.eyes_closed.all(axis=1)
    score = f1(runs(both), truth)
    assert score >= 0.9, (runs(both), truth)
    blink = column(solve, "blink")
    assert np.all(blink[a == 1.0] > 0.9) and np.all(blink[a == 0.0] < 0.35)
    assert np.allclose(column(solve, "blinkLeft")[a == 1.0], 0.0)  # a full blink is `blink`, not also blinkLeft


def test_turning_the_head_alone_is_not_blinking():
    frames = 300
    solve = solve_face(synthesise(frames, rot=rotation_path(frames, 35.0), seed=1), np.ones(frames, bool), FPS)
    assert not solve.eyes_closed.any()
    for name in ("blink", "eyeBlinkLeft", "eyeBlinkRight"):
        assert column(solve, name).max() < 0.3, name


def test_jaw_open_follows_the_truth():
    frames = 300
    t = np.arange(frames) / FPS
    jaw = 1.5 * np.clip(np.sin(2 * np.pi * 0.4 * t), 0.0, None) ** 2  # cm, closed half of the time
    solve = solve_face(synthesise(frames, jaw_cm=jaw, rot=rotation_path(frames), seed=2), np.ones(frames, bool), FPS)
    est = column(solve, "jawOpen")
    corr = np.corrcoef(est, jaw)[0, 1]
    assert corr >= 0.9, corr
    assert est[jaw == 0].mean() < 0.1 and est[jaw > 1.4].mean() > 0.4
    assert column(solve, "aa")[jaw > 1.4].mean() > column(solve, "aa")[jaw < 0.1].mean() + 0.3
    for name in ("happy", "surprised", "mouthPucker", "blink"):  # opening the jaw is none of these
        assert column(solve, name).max() < 0.2, name
    assert not solve.eyes_closed.any()


def test_small_eyes_are_not_always_blinking():
    frames = 300
    a = blink_track(frames, STARTS)
    solve = solve_face(synthesise(frames, {"left": a, "right": a}, rot=rotation_path(frames), eye_scale=0.6, seed=3),
                       np.ones(frames, bool), FPS)
    blink = column(solve, "blink")
    assert np.median(blink[a == 0]) < 0.15
    assert solve.eyes_closed.all(axis=1).mean() < 0.15
    assert f1(runs(solve.eyes_closed.all(axis=1)), [(s, s + 3) for s in STARTS]) >= 0.9


def test_head_rotation_is_recovered():
    frames = 300
    rot = rotation_path(frames)
    jaw = 1.0 * (np.arange(frames) % 60 > 30)
    a = blink_track(frames, STARTS)
    solve = solve_face(synthesise(frames, {"left": a, "right": a}, jaw, rot, seed=4), np.ones(frames, bool), FPS)
    truth = rotations.from_matrix(rot)
    err = np.degrees(2 * np.arccos(np.clip(np.abs(np.sum(truth * solve.head_rotations, axis=1)), 0, 1)))
    assert err.max() < 3.0, err.max()
    assert solve.confidence.min() > 0.5


def test_left_and_right_winks_are_not_swapped():
    frames = 200
    left, right = blink_track(frames, [40, 140]), blink_track(frames, [90])
    image = synthesise(frames, {"left": left, "right": right}, rot=rotation_path(frames, 20.0), seed=5)
    assert image[0, 263, 0] > image[0, 33, 0]  # the person's left eye on the image's right
    solve = solve_face(image, np.ones(frames, bool), FPS)
    for wink, mine, other in ((left == 1, "eyeBlinkLeft", "eyeBlinkRight"),
                              (right == 1, "eyeBlinkRight", "eyeBlinkLeft")):
        assert column(solve, mine)[wink].min() > 0.9 and column(solve, other)[wink].max() < 0.3
    assert column(solve, "blinkLeft")[left == 1].min() > 0.7 and column(solve, "blink")[left == 1].max() < 0.3
    assert column(solve, "blinkRight")[right == 1].min() > 0.7
    assert f1(runs(solve.eyes_closed[:, 0]), [(40, 43), (140, 143)]) == 1.0
    assert f1(runs(solve.eyes_closed[:, 1]), [(90, 93)]) == 1.0


def test_smile_brows_and_gaze():
    frames = 240
    on = (np.arange(frames) % 80 >= 50).astype(float)  # each expression held for 30 of every 80 frames

    def edit(face):
        phase = np.arange(frames) // 80
        smile, brows, look = on * (phase == 0), on * (phase == 1), on * (phase == 2)
        face[:, [61, 291], 1] -= 0.6 * smile[:, None]  # mouth corners up (y down)
        face[:, [61, 291], 0] += 0.3 * smile[:, None] * np.array([-1, 1])
        brow = [107, 66, 105, 70, 63, 46, 336, 296, 334, 300, 293, 276]
        face[:, brow, 1] -= 1.0 * brows[:, None]
        upper = [up for pairs in UPPER_LOWER.values() for up, _ in pairs]
        face[:, upper, 1] -= 0.25 * brows[:, None]  # eyes wide
        face[:, 468:478, 0] += 0.3 * look[:, None]  # irises toward the person's left (+x)

    solve = solve_face(synthesise(frames, rot=rotation_path(frames, 20.0), seed=6, edit=edit), np.ones(frames, bool),
                       FPS)
    held = lambda k: (np.arange(frames) // 80 == k) & (np.arange(frames) % 80 >= 55) & (np.arange(frames) % 80 < 75)
    rest = (np.arange(frames) % 80 >= 5) & (np.arange(frames) % 80 < 40)
    for k, names in enumerate([("happy", "mouthSmileLeft", "mouthSmileRight"),
                               ("browInnerUp", "browOuterUpLeft", "browOuterUpRight", "eyeWideLeft", "eyeWideRight", "surprised"), ("lookLeft",)]):
        for name in names:
            assert column(solve, name)[held(k)].min() > 0.5, name
            assert column(solve, name)[rest].max() < 0.2, name
    assert column(solve, "lookRight").max() < 0.2
    assert column(solve, "happy")[held(1) | held(2)].max() < 0.2


def test_weights_in_range_finite_across_gaps():
    frames = 240
    a = blink_track(frames, [50, 150])
    image = synthesise(frames, {"left": a, "right": a}, 1.2 * (np.arange(frames) % 50 > 25), rotation_path(frames),
                       seed=7)
    present = np.ones(frames, bool)
    present[100:110] = present[200:] = False
    image[~present] = np.nan
    solve = solve_face(image, present, FPS)
    assert solve.names == expression_names() and solve.expressions.shape == (frames, len(expression_names()))
    assert np.all(np.isfinite(solve.expressions)) and solve.expressions.min() >= 0 and solve.expressions.max() <= 1
    assert solve.head_rotations.shape == (frames, 4) and np.all(np.isfinite(solve.head_rotations))
    assert np.allclose(np.linalg.norm(solve.head_rotations, axis=1), 1.0)
    assert np.all(solve.confidence[~present] == 0) and solve.confidence[present].min() > 0.5
    assert not solve.eyes_closed[~present].any()


def test_no_face_at_all_is_neutral():
    solve = solve_face(np.full((20, 478, 3), np.nan), np.zeros(20, bool), FPS)
    assert np.all(solve.expressions == 0) and np.all(solve.confidence == 0)
    assert np.allclose(solve.head_rotations, [1, 0, 0, 0])
    empty = solve_face(np.zeros((0, 478, 3)), np.zeros(0, bool), FPS)
    assert empty.expressions.shape == (0, len(expression_names())) and empty.head_rotations.shape == (0, 4)


def test_hysteresis_does_not_flicker():
    c = np.array([0.0, 0.55, 0.65, 0.5, 0.4, 0.5, 0.3, 0.5, 0.59, 0.61, 0.2])
    expected = [False, False, True, True, True, True, False, False, False, True, False]
    assert hysteresis(c, BLINK_ENTER, BLINK_EXIT).tolist() == expected


@pytest.mark.parametrize("mirror", [False, True])
def test_head_rotation_axes_are_the_camera_s(mirror):
    """head_rotations are in camera axes: a turn about +y (down) by a positive angle swings the nose toward -x."""
    frames = 30
    angle = np.radians(25.0) * (-1 if mirror else 1)
    rot = np.repeat(rotations.to_matrix(np.array([np.cos(angle / 2), 0, np.sin(angle / 2), 0]))[None], frames, 0)
    image = synthesise(frames, rot=rot, seed=8)
    solve = solve_face(image, np.ones(frames, bool), FPS)
    nose_dx = image[:, 1, 0] - 0.5 * (image[:, 33, 0] + image[:, 263, 0])
    q = solve.head_rotations[frames // 2]
    assert np.sign(q[2] * q[0]) == np.sign(np.sin(angle)) == np.sign(-nose_dx.mean())


def test_slow_noisy_blinks_do_not_flicker():
    frames, starts = 300, [20, 80, 140, 200, 260]
    a = np.zeros(frames)
    for s in starts:  # eyelids closing over 10 frames, held 4, opening over 10
        a[s:s + 24] = np.concatenate([np.linspace(0.1, 1, 10), np.ones(4), np.linspace(1, 0.1, 10)])
    solve = solve_face(synthesise(frames, {"left": a, "right": a}, rot=rotation_path(frames), noise_px=1.0, seed=9),
                       np.ones(frames, bool), FPS)
    for side in range(2):
        assert len(runs(solve.eyes_closed[:, side])) == len(starts), runs(solve.eyes_closed[:, side])


ROOT = Path(__file__).resolve().parent.parent
RENDERED = ROOT / ".cache" / "validation" / "hands_face" / "face_0m6"


@pytest.fixture(scope="module")
def rendered_face() -> Path:
    """The rendered face clip of our validation set (bench/render_hands_face.py, about 75 s in Blender when it is
    not there yet: the CC0 MPFB2 body from the pinned wheel that `make setup` fetches)."""
    if not (RENDERED.with_suffix(".mp4").is_file() and RENDERED.with_suffix(".npz").is_file()):
        pytest.importorskip("bpy")
        made = subprocess.run([sys.executable, str(ROOT / "bench" / "render_hands_face.py"), "--only", "face_0m6"],
                              cwd=ROOT, capture_output=True, text=True, timeout=900)
        assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    return RENDERED


def face_mesh_video(video: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """Real MediaPipe Face Mesh (refined, tracking) on every frame: (F, 478, 3) pixels (z like x), (F,) found, fps."""
    import cv2
    import mediapipe as mp

    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS)
    marks, found = [], []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=True) as mesh:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            h, w = bgr.shape[:2]
            res = mesh.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            if res.multi_face_landmarks:
                marks.append([(q.x * w, q.y * h, q.z * w) for q in res.multi_face_landmarks[0].landmark])
            else:
                marks.append(np.full((478, 3), np.nan))
            found.append(bool(res.multi_face_landmarks))
    cap.release()
    return np.asarray(marks, dtype=np.float64), np.asarray(found), fps


def test_real_face_mesh_on_the_rendered_face(rendered_face: Path):
    """bench/render_hands_face.py's face clip (blinks at known frames, two jaw openings, a ±6° head turn) through
    the real MediaPipe Face Mesh and solve_face."""
    with np.load(rendered_face.with_suffix(".npz")) as z:
        truth = {k: z[k] for k in z.files}
    image, found, fps = face_mesh_video(rendered_face.with_suffix(".mp4"))
    frames = len(truth["jaw_open"])
    image, found = image[:frames], found[:frames]
    assert found.mean() > 0.95
    solve = solve_face(image, found, fps)
    closed = solve.eyes_closed.all(axis=1)
    events = [(s + e) // 2 for s, e in runs(closed)]
    score = f1([(e, e) for e in events], [(t, t) for t in truth["blink_frames"]])
    assert score >= 0.9, (events, truth["blink_frames"])
    jaw = column(solve, "jawOpen")
    assert np.corrcoef(jaw, truth["jaw_open"])[0, 1] >= 0.9
    assert 0.45 < jaw[np.isclose(truth["jaw_open"], 0.6)].mean() < 0.8 < jaw[truth["jaw_open"] == 1.0].mean()
    assert not closed[truth["blink"].max(axis=1) == 0].any()
    # the head bone turns 6 sin(2 pi t / 3 s) degrees about the up axis: about camera +y (down) that is minus it
    q = solve.head_rotations
    rel = rotations.multiply(q, rotations.inverse(rotations.normalize(q.mean(axis=0))))
    yaw = np.degrees(2 * np.arctan2(rel[:, 2], rel[:, 0]))
    keyed = 6.0 * np.sin(2 * np.pi * np.arange(frames) / fps / 3.0)
    assert np.abs(yaw + keyed).max() < 3.0, np.abs(yaw + keyed).max()
    for name in ("happy", "surprised", "browInnerUp", "lookDown", "mouthPucker"):  # neither blinks nor jaw
        assert column(solve, name).max() < 0.3, name
