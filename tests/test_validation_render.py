"""bench/render_validation.py end to end on a tiny clip: real bpy (Workbench), the real anny body and held-out mocap.
The ground truth must land on the rendered body, and its foot contacts must be those of a walk."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
MOCAP = ROOT.parent / "shared" / "data" / "mocap" / "bandai-namco-1-train.tar.xz"
FRAMES = 20

pytestmark = pytest.mark.skipif(not MOCAP.is_file(), reason="needs ../shared/data/mocap (see ../shared/README.md)")


@pytest.fixture(scope="module")
def walk_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the set's 'walk' clip rendered, its first FRAMES frames (CLIP.mp4 and CLIP.npz)."""
    out = tmp_path_factory.mktemp("validation")
    subprocess.run([sys.executable, str(ROOT / "bench" / "render_validation.py"), "--only", "walk",
                    "--max-frames", str(FRAMES), "--out", str(out)], cwd=ROOT, check=True,
                   capture_output=True, timeout=240)
    return out


@pytest.fixture(scope="module")
def walk(walk_dir: Path) -> tuple[dict, np.ndarray]:
    """The 'walk' render: (ground truth, video frames (F, H, W, 3))."""
    import cv2

    out = walk_dir
    cam = json.loads((ROOT / "bench" / "validation_set.json").read_text())["clips"][0]["cameras"][0]
    truth = dict(np.load(out / f"walk__{cam}.npz"))
    video = cv2.VideoCapture(str(out / f"walk__{cam}.mp4"))
    frames = []
    while (got := video.read())[0]:
        frames.append(got[1])
    return truth, np.array(frames)


def _project(truth: dict, points: np.ndarray) -> np.ndarray:
    cam = points @ truth["R"].T + truth["t"]
    uv = cam @ truth["K"].T
    return uv[..., :2] / uv[..., 2:3]


def _on_body(frames: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """(F, P) whether pixel uv (F, P, 2) differs from its image row's median colour (the background: sky or floor,
    uniform along a row) by more than 30 of 255, anywhere in its 3x3 neighbourhood."""
    f, h, w, _ = frames.shape
    background = np.median(frames, axis=2)  # (F, H, 3)
    diff = np.linalg.norm(frames.astype(np.float64) - background[:, :, None], axis=-1) > 30
    x = np.clip(np.round(uv[..., 0]).astype(int), 1, w - 2)
    y = np.clip(np.round(uv[..., 1]).astype(int), 1, h - 2)
    rows = np.arange(f)[:, None]
    return np.any([diff[rows, y + dy, x + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)


def test_video_matches_truth(walk: tuple[dict, np.ndarray]) -> None:
    truth, frames = walk
    assert frames.shape == (FRAMES, int(truth["height"]), int(truth["width"]), 3)
    assert truth["landmarks"].shape == (FRAMES, 33, 3) and float(truth["fps"]) == 30.0
    names = list(truth["landmark_names"])
    uv = _project(truth, truth["landmarks"])
    assert np.allclose(uv[:, truth["landmark_valid"]], truth["image_points"][:, truth["landmark_valid"]], atol=1e-6)
    # joint centres and the head's surface points (MediaPipe's shoulder and hip points sit on the silhouette's edge)
    joints = list(truth["joint_names"])
    points = np.concatenate([
        truth["landmarks"][:, [names.index(n) for n in ("nose", "left_ear", "right_ear", "left_heel", "right_heel")]],
        truth["joints"][:, [joints.index(n) for n in ("LeftUpperArm", "RightUpperArm", "LeftLowerArm", "RightLowerArm",
                                                      "LeftUpperLeg", "RightUpperLeg", "LeftLowerLeg", "RightLowerLeg",
                                                      "LeftFoot", "RightFoot", "Hips", "Neck")]]], axis=1)
    hit = _on_body(frames, _project(truth, points))
    assert hit.mean() > 0.97, f"truth off the body: {hit.mean(0).round(2)}"
    # the same points 0.5 m to the side (across the view) fall on the background: the check can fail
    side = truth["R"][0] * 0.5
    assert _on_body(frames, _project(truth, points + side)).mean() < 0.1


def test_truth_is_metric_and_grounded(walk: tuple[dict, np.ndarray]) -> None:
    truth, _ = walk
    names = list(truth["landmark_names"])
    lm = truth["landmarks"]
    height = lm[:, names.index("nose"), 1].mean()
    assert 1.4 < height < 1.8  # the MakeHuman body's nose, metres above the floor
    leg = np.linalg.norm(lm[:, names.index("left_knee")] - lm[:, names.index("left_ankle")], axis=-1)
    assert leg.std() < 1e-3 and 0.35 < leg.mean() < 0.5  # a rigid shin
    depth = (lm[:, names.index("left_hip")] @ truth["R"].T + truth["t"])[:, 2]
    assert 2.0 < depth.min() and depth.max() < 8.0  # a phone a few metres away


def test_walk_contacts(walk: tuple[dict, np.ndarray]) -> None:
    truth, _ = walk
    planted, heights = truth["contacts"], truth["contact_heights"]
    assert list(truth["contact_points"]) == ["left_heel", "left_toe", "right_heel", "right_toe"]
    assert planted.any(1).mean() > 0.8  # walking: a foot is on the ground (almost) always
    left, right = planted[:, :2].any(1), planted[:, 2:].any(1)
    assert left.any() and right.any() and not (left & right).all()  # both feet step, not both planted throughout
    assert np.all(heights[planted] > -0.01) and np.all(heights[planted] < 0.03)
    assert heights.min() > -0.02  # nothing sinks into the floor
    # a planted point does not slide: under 3 mm/frame on pairs of planted frames
    names = list(truth["landmark_names"])
    pts = truth["landmarks"][:, [names.index(n) for n in ("left_heel", "left_foot_index", "right_heel",
                                                           "right_foot_index")]]
    both = planted[1:] & planted[:-1]
    step = np.linalg.norm(np.diff(pts[..., [0, 2]], axis=0), axis=-1)
    assert both.sum() > 10 and step[both].mean() < 0.003


def test_rendered_training_pairs_line_up_with_mediapipe(walk_dir: Path) -> None:
    """training.rendered on a real render and real MediaPipe: the targets, projected back through the render's
    camera into the lifter's normalised image coordinates, fall where MediaPipe found the same landmarks, and
    MediaPipe's 3D (the hint channels) is near the target pose: the axes and the pelvis agree."""
    from core.lift.layout import lifter_layout
    from training.metrics import pa_mpjpe
    from training.rendered import load_rendered

    layout = lifter_layout()
    data = load_rendered(walk_dir, layout, log=lambda _: None)
    assert data.frames == FRAMES and data.present.all()
    truth = np.load(next(walk_dir.glob("*.npz")))
    f = 2.0 * truth["K"][0, 0] / float(truth["width"])
    cam = data.pose + data.trajectory[:, None]
    assert np.all(cam[..., 2] < -1.0)  # in front of the camera: Z points towards it
    uv = f * cam[..., :2] / -cam[..., 2:3] * np.array([1.0, -1.0])
    seen = data.inputs[..., 2] > 0.5
    err = np.linalg.norm(uv - data.inputs[..., :2], axis=-1)[seen]
    assert np.median(err) < 0.03, np.median(err)  # 3 % of the width: about 10 px on this 360 px-wide portrait
    assert 1000 * pa_mpjpe(data.inputs[..., 3:6].astype(float), data.pose.astype(float)) < 150
    assert np.allclose(data.pose[:, list(layout.hips)].mean(1), 0.0, atol=1e-6)
