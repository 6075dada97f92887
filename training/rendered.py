"""Rendered training clips (training/render_set.py) as lifter training pairs: MediaPipe's real outputs on each video
(its 2D and its per-frame 3D, through the same core.lift.normalize inputs the pipeline builds) against the exact
truth the renderer kept, in the lifter's target axes. This is what synthetic 2D cannot give: the detector's own
errors on a body, including where it puts the hips and how it guesses depth.

Targets follow training.train.Synth: pose (F, K, 3) relative to the pelvis (mid-hip) and trajectory (F, 3), both
in camera axes (X image right, Y image up, Z towards the camera), metres.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.common.errors import InputNotFound, NoPersonFound
from core.detect2d import detect
from core.lift.layout import Layout
from core.lift.normalize import detections_to_inputs, flip_inputs, flip_pose

OPENCV_TO_CAMERA = np.array([1.0, -1.0, -1.0])  # OpenCV camera axes (x right, y down, z forward) -> lifter's


@dataclass(frozen=True)
class RenderedSet:
    """Clips end to end: inputs (N, K, INPUT_CHANNELS) float32, pose (N, K, 3) and trajectory (N, 3) metres,
    present (N,) a person was detected; starts (C + 1,) each clip's first row; names (C,)."""

    inputs: np.ndarray
    pose: np.ndarray
    trajectory: np.ndarray
    present: np.ndarray
    starts: np.ndarray
    names: tuple[str, ...]

    @property
    def frames(self) -> int:
        return int(self.starts[-1])


def clip_targets(truth: dict, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """A render's truth (.npz of bench/render_validation.py) -> pose (F, K, 3) pelvis-relative and trajectory (F, 3),
    camera axes, metres."""
    world = np.asarray(truth["landmarks"], dtype=np.float64)[:, layout.mediapipe_index]
    cam = (world @ np.asarray(truth["R"]).T + np.asarray(truth["t"])) * OPENCV_TO_CAMERA
    pelvis = cam[:, list(layout.hips)].mean(1)
    return cam - pelvis[:, None], pelvis


def load_rendered(folder: Path, layout: Layout, cache_dir: Path | None = None, log=print) -> RenderedSet:
    """Every CLIP.mp4 with its CLIP.npz in `folder`, detected by MediaPipe (cached in cache_dir, default
    folder/detections: the first load of a clip costs its detection, later loads are instant). A clip in which
    MediaPipe finds nobody is skipped (said in the log)."""
    folder = Path(folder)
    truths = sorted(p for p in folder.glob("*.npz") if p.with_suffix(".mp4").is_file())
    if not truths:
        raise InputNotFound(f"No rendered clips (CLIP.mp4 with CLIP.npz) in {folder}.",
                            "Render them first: see training/render_set.py.")
    cache = Path(cache_dir) if cache_dir else folder / "detections"
    parts: list[tuple[np.ndarray, ...]] = []
    names: list[str] = []
    for i, npz in enumerate(truths):
        with np.load(npz) as t:
            truth = {k: t[k] for k in ("landmarks", "R", "t")}
        try:
            det = detect(npz.with_suffix(".mp4"), cache_dir=cache)
        except NoPersonFound:
            log(f"rendered clips: MediaPipe finds nobody in {npz.stem}; skipped")
            continue
        f = min(det.num_frames, len(truth["landmarks"]))
        x = detections_to_inputs(det.image[:f], det.world[:f], det.width, det.height, layout)
        pose, traj = clip_targets({**truth, "landmarks": truth["landmarks"][:f]}, layout)
        names.append(npz.stem)
        parts.append((x, pose.astype(np.float32), traj.astype(np.float32), np.asarray(det.present[:f], bool)))
        if (i + 1) % 20 == 0 or i + 1 == len(truths):
            log(f"rendered clips: {i + 1}/{len(truths)} loaded")
    lengths = [len(p[0]) for p in parts]
    return RenderedSet(inputs=np.concatenate([p[0] for p in parts]), pose=np.concatenate([p[1] for p in parts]),
                       trajectory=np.concatenate([p[2] for p in parts]),
                       present=np.concatenate([p[3] for p in parts]),
                       starts=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                       names=tuple(names))


class RenderedSampler:
    """Random chunks of `length` frames of rendered clips (edge frames repeated where a chunk runs past its clip's
    ends, as inference pads), half of them mirrored left/right. Returns inputs, pose, trajectory and a (B, T)
    weight that is 0 on repeated frames and frames without a person."""

    def __init__(self, data: RenderedSet, layout: Layout, length: int, seed: int) -> None:
        self.data, self.layout, self.length = data, layout, length
        self.rng = np.random.default_rng(seed)
        lengths = np.diff(data.starts).astype(np.float64)
        self.clip_p = lengths / lengths.sum()

    def __call__(self, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        d = self.data
        c = self.rng.choice(len(self.clip_p), batch, p=self.clip_p)
        lo, hi = d.starts[c], d.starts[c + 1] - 1
        centre = lo + self.rng.integers(0, hi - lo + 1)
        pos = centre[:, None] + np.arange(self.length)[None] - self.length // 2
        idx = np.clip(pos, lo[:, None], hi[:, None])
        x, pose, traj = d.inputs[idx], d.pose[idx], d.trajectory[idx]
        weight = ((idx == pos) & d.present[idx]).astype(np.float32)
        mirror = self.rng.random(batch) < 0.5
        x[mirror] = flip_inputs(x[mirror], self.layout)
        pose[mirror] = flip_pose(pose[mirror], self.layout)
        traj[mirror] = flip_pose(traj[mirror], None)
        return (torch.from_numpy(x), torch.from_numpy(pose.astype(np.float32)),
                torch.from_numpy(traj.astype(np.float32)), torch.from_numpy(weight))
