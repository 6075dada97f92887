"""Benchmark of the learned lifter ("tcn") against MediaPipe's own world landmarks.

Usage: .venv/bin/python bench/lifter.py [CLIP ...] [--frames 20000] [--repeat 3] [--eval DATA] [--weights PT]

Prints:
1. Inference speed of TcnLifter.lift (flip averaging on) on a long clip made by tiling real detections: frames/s,
   best of --repeat, against the target of 2,000 frames/s.
2. Held-out mocap accuracy stored with the weights (MPJPE, PA-MPJPE, trajectory and acceleration errors; from 2D
   alone, clean and with detector-like noise, and from noisy 2D with the stand-in for MediaPipe's 3D that the
   lifter also reads); with --eval DATA it is measured again on the held-out files of DATA.
3. On each real clip (default: both sample clips): jitter, as the mean acceleration magnitude of the
   pelvis-relative 23 keypoints (m/s²), and bone-length variation, as the mean over the layout's bones of the
   coefficient of variation of the length across frames (%), for the lifter and for MediaPipe's world landmarks,
   with the ratio lifter / MediaPipe (below 1: the lifter is steadier). No ground truth exists for these clips, so
   these figures measure steadiness, not accuracy.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.detect2d import detect
from core.detections import Detections  # noqa: E402
from core.lift.layout import lifter_layout  # noqa: E402
from core.lift.tcn import DEFAULT_WEIGHTS, TcnLifter  # noqa: E402

TARGET_FPS = 2000.0
CLIPS = [ROOT / "sample_clips" / "sports2d_walk.mp4", ROOT / "sample_clips" / "pose2sim_balance.mp4"]


def tiled(det: Detections, frames: int) -> Detections:
    """`det` repeated (forwards, then backwards, ...) to `frames` frames."""
    idx = np.arange(frames) % (2 * det.num_frames)
    idx = np.where(idx < det.num_frames, idx, 2 * det.num_frames - 1 - idx)
    return Detections(times=np.arange(frames) / det.fps, image=det.image[idx], world=det.world[idx],
                      present=det.present[idx], width=det.width, height=det.height, fps=30.0, info={})


def steadiness(points: np.ndarray, fps: float, layout_bones: np.ndarray) -> tuple[float, float]:
    """points (F, 23, 3) metres, consecutive frames → (mean acceleration m/s² of the pelvis-relative keypoints,
    mean coefficient of variation of bone lengths in %)."""
    lay = lifter_layout()
    rel = points - points[:, list(lay.hips)].mean(1, keepdims=True)
    acc = np.linalg.norm(np.diff(rel, 2, axis=0), axis=-1) * fps * fps
    lengths = np.linalg.norm(points[:, layout_bones[:, 0]] - points[:, layout_bones[:, 1]], axis=-1)
    cv = lengths.std(0) / lengths.mean(0)
    return float(np.nanmean(acc)), float(100 * np.nanmean(cv))


def longest_run(mask: np.ndarray) -> slice:
    """The longest run of True in `mask`, as a slice."""
    best, start = (0, 0), None
    for i, m in enumerate(np.append(mask, False)):
        if m and start is None:
            start = i
        if not m and start is not None:
            if i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return slice(*best)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("clips", nargs="*", type=Path, default=CLIPS)
    p.add_argument("--frames", type=int, default=20000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--eval", type=Path, default=None, help="mocap folder: evaluate on its held-out files again")
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="the lifter's weights")
    a = p.parse_args()
    lifter = TcnLifter(a.weights)
    lay = lifter.layout
    dets = {c: detect(c) for c in a.clips}

    long = tiled(next(iter(dets.values())), a.frames)
    best = min(_timed(lambda: lifter.lift(long)) for _ in range(a.repeat))
    fps = a.frames / best
    print(f"inference: {a.frames} frames in {best:.3f} s = {fps:,.0f} frames/s "
          f"(target {TARGET_FPS:,.0f}; ratio {fps / TARGET_FPS:.1f}x; receptive field "
          f"{lifter.model.receptive_field()} frames, flip averaging on)")

    ev = lifter.meta.get("evaluation")
    if a.eval is not None:
        from training.mocap import load_mocap
        from training.train import Augment, evaluate, split_files

        data = load_mocap(a.eval, ROOT / ".cache" / "mocap")
        _, val = split_files(data.names)
        ev = evaluate(lifter.model, data.subset(val), lay, Augment(), cameras=2)
    if ev:
        print(f"held-out mocap ({ev['files']} files x {ev['cameras_per_file']} held-out cameras):")
        for k, label in (("clean", "clean 2D"), ("noisy", "noisy 2D"), ("noisy_hint", "noisy 2D + 3D hint")):
            if k not in ev:
                continue
            e = ev[k]
            print(f"  {label:18s}: MPJPE {e['mpjpe_mm']:.1f} mm, PA-MPJPE {e['pa_mpjpe_mm']:.1f} mm, trajectory "
                  f"{e['trajectory_mm']:.0f} mm ({100 * e['trajectory_rel']:.1f}% of depth), accel error "
                  f"{e.get('accel_error_mm_per_frame2', float('nan')):.2f} mm/frame^2")

    print("real clips: jitter (mean acceleration, m/s^2) and bone-length variation (mean CV, %), lower is steadier")
    for clip, det in dets.items():
        lifted = lifter.lift(det)
        run = longest_run(det.present & np.all(np.isfinite(det.world[:, lay.mediapipe_index]), axis=(1, 2)))
        tcn = lifted.keypoints[run][:, lay.mediapipe_index]
        mp = det.world[run][:, lay.mediapipe_index]
        j_t, b_t = steadiness(tcn, det.fps, lay.bones)
        j_m, b_m = steadiness(mp, det.fps, lay.bones)
        print(f"  {clip.name} ({run.stop - run.start} frames at {det.fps:.0f} fps):")
        print(f"    jitter       tcn {j_t:7.2f}  mediapipe {j_m:7.2f}  ratio {j_t / j_m:.2f}")
        print(f"    bone CV %    tcn {b_t:7.2f}  mediapipe {b_m:7.2f}  ratio {b_t / b_m:.2f}")
        travel = np.linalg.norm(lifted.info["trajectory"][run][-1] - lifted.info["trajectory"][run][0])
        print(f"    pelvis travel (tcn trajectory, first to last frame): {travel:.2f} m")
    return 0


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    sys.exit(main())
