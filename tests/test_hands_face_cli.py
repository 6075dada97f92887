"""`python -m core --hands --face` end to end on the real balance clip: the motion file carries fingers (with the
wrists turned), a face that cannot be seen (the clip's is pixelated) is a warning, not an error, the body is what
it is without them, and the BVH has the finger joints; progress names the second pass."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.bvh import read_bvh
from core.common.hands import hand_joint_names
from core.common.motionfile import load_motion

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> tuple[int, list[dict], str]:
    done = subprocess.run([sys.executable, "-m", "core", *args, "--progress", "json", "--overwrite"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()], done.stderr


@pytest.fixture(scope="module")
def both(balance_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[dict]]:
    out = tmp_path_factory.mktemp("hands-face")
    rc, events, stderr = cli(str(balance_clip), "-o", str(out / "with.npz"), "--hands", "--face")
    assert rc == 0, stderr
    rc, _, stderr = cli(str(balance_clip), "-o", str(out / "without.npz"))
    assert rc == 0, stderr
    return out / "with.npz", out / "without.npz", events


def test_fingers_and_a_face_warning(both: tuple[Path, Path, list[dict]]) -> None:
    with_path, without_path, events = both
    motion, body = load_motion(with_path), load_motion(without_path)
    assert motion.hand_rotations.shape == (motion.num_frames, 2, 15, 4) and motion.hand_joints == hand_joint_names()
    seen = motion.hand_confidence > 0
    assert seen.mean(axis=0).min() > 0.3  # both hands found on a good share of the frames
    assert np.all(np.isfinite(motion.hand_rotations))
    assert motion.expressions is None  # the face is pixelated in this clip
    assert any("no face was found" in e.get("warning", "") for e in events)
    stages = [e["stage"] for e in events if "stage" in e]
    assert stages.index("detect") < stages.index("hands_face") < stages.index("lift") < stages.index("fingers")
    assert np.allclose(motion.positions(), body.positions())  # the body's joints are where they were
    wrists = [motion.skeleton.index(n) for n in ("LeftHand", "RightHand")]
    turned = np.abs(np.sum(motion.rotations[:, wrists] * body.rotations[:, wrists], axis=-1)) < 0.9999
    assert turned[seen].mean() > 0.9  # the palms turned the wrists where the hands were seen


def test_bvh_from_the_motion_file_has_the_fingers(both: tuple[Path, Path, list[dict]], tmp_path: Path) -> None:
    rc, _, stderr = cli(str(both[0]), "-o", str(tmp_path / "hands.bvh"))
    assert rc == 0, stderr
    names = read_bvh(tmp_path / "hands.bvh").names
    assert len(names) == 51 and "LeftThumbProximal" in names and "RightLittleDistal" in names
