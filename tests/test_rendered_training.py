"""The rendered training set (training/render_set.py) and its use in training (training/rendered.py,
training.train --rendered): only training-split files, kinds taken in turn, seeded; chunks that ignore padded and
empty frames; a fine-tuning step on real-detector pairs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.lift.layout import lifter_layout
from core.lift.model import TemporalModel
from core.lift.normalize import INPUT_CHANNELS
from training.render_set import AUTHORED_RANGES, make_authored_set, make_set
from training.rendered import RenderedSampler, RenderedSet
from training.train import chunk_losses, motion_kind, split_files

ROOT = Path(__file__).resolve().parent.parent


def _bvh(path: Path, frames: int) -> Path:
    rows = "0 0 0\n" * frames
    path.write_text("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 3 Xposition Yposition Zposition\n"
                    "  End Site\n  {\n    OFFSET 0 1 0\n  }\n}\n"
                    f"MOTION\nFrames: {frames}\nFrame Time: 0.0333333\n{rows}")
    return path


def test_set_takes_training_files_only_kinds_in_turn_and_is_seeded(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    names = [f"dataset-1_{kind}_{style}_{i:03d}.bvh" for kind in ("walk", "bow", "kick")
             for style in ("normal", "proud", "angry") for i in (1, 2)]
    paths = [_bvh(src / n, 200) for n in names] + [_bvh(src / "131_01.bvh", 200)]
    a = make_set(paths, 6, 90, seed=3, mocap_out=tmp_path / "a")
    b = make_set(paths, 6, 90, seed=3, mocap_out=tmp_path / "b")
    assert a == b and a["split"] == "train"
    files = [c["file"] for c in a["clips"]]
    _, held = split_files(files)
    assert not held and all(f.startswith("dataset-") for f in files)  # no held-out style, no CMU file
    assert sorted(motion_kind(f) for f in files) == ["bow", "bow", "kick", "kick", "walk", "walk"]
    assert all(0 <= c["start"] and c["start"] + c["frames"] <= 200 and c["frames"] == 90 for c in a["clips"])
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(files)
    assert len({c["cameras"][0] for c in a["clips"]}) == 6 == len(a["cameras"])


def test_authored_set_alternates_crouch_and_wide_stance_with_drawn_parameters() -> None:
    spec = make_authored_set(6, 90, seed=2)
    assert spec["split"] == "train" and [c["authored"] for c in spec["clips"]] == ["crouch", "wide_stance"] * 3
    for c in spec["clips"]:
        ranges = AUTHORED_RANGES[c["authored"]]
        assert set(c["params"]) == set(ranges) == set(spec["authored"][c["authored"]])  # the renderer's keys
        assert all(lo <= c["params"][k] <= hi for k, (lo, hi) in ranges.items())
    assert spec["clips"][0]["params"] != spec["clips"][2]["params"]
    assert make_authored_set(6, 90, seed=2) == spec


def test_renderer_refuses_held_out_files_in_a_training_set(tmp_path: Path) -> None:
    spec = json.loads((ROOT / "bench" / "validation_set.json").read_text())
    spec["split"] = "train"  # the validation set's files are all held out
    (tmp_path / "set.json").write_text(json.dumps(spec))
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "render_validation.py"), "--set",
                           str(tmp_path / "set.json"), "--out", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0 and "held out for validation" in done.stderr
    assert not list(tmp_path.glob("*.mp4"))


def _set(frames: list[int], k: int) -> RenderedSet:
    n = sum(frames)
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(n, k, INPUT_CHANNELS)).astype(np.float32)
    present = np.ones(n, bool)
    present[3] = False
    traj = np.tile(np.array([0.0, 0.0, -3.0], np.float32), (n, 1))
    traj[:, 0] = np.arange(n)  # which row a frame came from, readable after sampling
    return RenderedSet(inputs=inputs, pose=rng.normal(size=(n, k, 3)).astype(np.float32), trajectory=traj,
                       present=present, starts=np.concatenate([[0], np.cumsum(frames)]), names=("a", "b"))


def test_sampler_stays_in_its_clip_and_weighs_out_padding_and_empty_frames() -> None:
    layout = lifter_layout()
    data = _set([10, 30], layout.num_keypoints)
    x, pose, traj, w = RenderedSampler(data, layout, 21, seed=1)(64)
    rows = np.abs(traj[..., 0].numpy()).round().astype(int)  # mirroring flips X's sign only
    clip = (rows >= 10).astype(int)
    assert np.all(clip == clip[:, :1])  # a chunk never crosses into another clip
    padded = np.concatenate([np.zeros((64, 1), bool), rows[:, 1:] == rows[:, :-1]], 1)
    edge = np.diff(rows, axis=1, prepend=rows[:, :1] - 1) == 0
    assert np.all(w.numpy()[edge & (np.arange(21) > 10)] == 0)  # repeats after the centre are padding
    assert np.all(w.numpy()[rows == 3] == 0) and w.numpy().max() == 1.0
    assert not padded.all()
    mirrored = traj[..., 0].numpy() < 0
    assert 0 < mirrored.any(1).mean() < 1


def test_chunk_losses_ignore_weighted_out_frames() -> None:
    layout = lifter_layout()
    torch.manual_seed(0)
    model = TemporalModel(layout.num_keypoints, INPUT_CHANNELS + 2, (3, 3), 32, 0.0).eval()
    t = model.receptive_field() + 4
    x = torch.randn(2, t, layout.num_keypoints, INPUT_CHANNELS)
    x[..., 2] = torch.rand(2, t, layout.num_keypoints)  # visibility
    pose = torch.randn(2, t, layout.num_keypoints, 3) * 0.2
    traj = torch.tensor([0.0, 0.0, -3.0]).expand(2, t, 3).clone()
    w = torch.ones(2, t)
    mid = model.receptive_field() // 2 + 2  # an output frame
    w[1, mid] = 0.0  # weighed out ...
    with torch.no_grad():
        base = [float(v) for v in chunk_losses(model, x, pose, traj, layout, w)]
    bad = pose.clone()
    bad[1, mid] += 10.0  # ... so its garbage target changes nothing
    with torch.no_grad():
        again = [float(v) for v in chunk_losses(model, x, bad, traj, layout, w)]
    assert again == pytest.approx(base, rel=1e-6)
    with torch.no_grad():
        unweighted = [float(v) for v in chunk_losses(model, x, bad, traj, layout)]
    assert unweighted[0] > base[0] + 0.1  # unweighted, it counts


def test_interpolation_blends_a_network_and_its_fine_tuning(tmp_path: Path) -> None:
    from core.common.errors import WeightsMissing
    from core.lift.model import load_weights, save_weights
    from training.interpolate import interpolate, main

    torch.manual_seed(0)
    a, b = (TemporalModel(23, INPUT_CHANNELS + 2, (3, 3), 16, 0.0).eval() for _ in range(2))
    x = torch.randn(1, a.receptive_field() + 3, 23, INPUT_CHANNELS + 2)
    for alpha, ref in ((0.0, a), (1.0, b)):
        assert torch.allclose(interpolate(a, b, alpha)(x)[0], ref(x)[0], atol=1e-6)
    mid = interpolate(a, b, 0.25).state_dict()
    k = next(n for n, v in mid.items() if v.is_floating_point() and v.numel() > 1)
    assert torch.allclose(mid[k], 0.75 * a.state_dict()[k] + 0.25 * b.state_dict()[k], atol=1e-6)
    with pytest.raises(WeightsMissing, match="architectures"):
        interpolate(a, TemporalModel(23, INPUT_CHANNELS + 2, (3, 3), 32, 0.0), 0.5)
    save_weights(tmp_path / "a.pt", a, {"steps": 1, "evaluation": {"x": 1}})
    save_weights(tmp_path / "b.pt", b, {"steps": 2, "evaluation": {"x": 2}})
    assert main([str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--alpha", "0.7", "--out",
                 str(tmp_path / "c.pt")]) == 0
    c, meta = load_weights(tmp_path / "c.pt")
    assert meta["interpolated"]["alpha"] == 0.7 and "evaluation" not in meta and meta["steps"] == 2
    assert torch.allclose(c(x)[0], interpolate(a, b, 0.7)(x)[0], atol=1e-6)
