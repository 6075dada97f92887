"""Motion quality on Mimic's rendered validation set (bench/render_validation.py): the core CLI on each clip with
both lifters, scored against the exact ground truth, the baseline (MediaPipe's world landmarks) beside ours.

Usage: .venv/bin/python bench/motion_quality.py [--only CLIP ...] [--data .cache/validation] [--reuse]
       [--json FILE] [--foot-lock auto|grounding|off] [--solve clip|frame] [--weights FILE.pt]

Per clip, `python -m core CLIP.mp4 -o OUT.npz --lifter {tcn,mediapipe} --foot-lock MODE --solve SOLVE` (detections
cached in .cache/validation/detections, so the second lifter reuses the first's MediaPipe run; --reuse keeps motion
files already written; their names carry the foot-lock mode unless auto, and the solve when --solve is given).
The output animation's landmarks are core.ik.keypoints_from_pose of the motion file (the IK's forward model:
exactly what the BVH/FBX shows, landmarks placed on the solved skeleton), compared with the truth's landmarks (same
MediaPipe definitions: bench/render_validation.py):
- PA-MPJPE mm: the 12 limb landmarks (shoulders, elbows, wrists, hips, knees, ankles), per-frame similarity
  Procrustes (training.metrics.align).
- MPJPE mm: the same landmarks relative to the mid-hip, one rotation for the whole clip (the output's world axes
  are its own guess of the camera's; a rotation per frame would hide a body orientation that flickers), no scale.
- accel m/s^2: mean |second difference of output - that of truth| x fps^2 on those clip-aligned poses (jitter).
- skate mm/frame: the output heel and toe points (left/right heel, foot_index) on consecutive frames where the
  truth says that point is planted (contacts: below 3 cm and slower than 0.15 m/s), horizontal displacement in
  the output's world (Y up); truth's own residual on the same frames printed as the floor.
- height sd cm: per planted point, the standard deviation of its output height over its planted frames (mean
  over the points).
- pen cm: mean over frames of how far the lowest output heel/toe point sits below the output's floor (meta
  floor height, 0 if none).
- travel m: horizontal path length of the output's mid-hip vs the truth's (depth jitter becomes travel).
- bone CV %: coefficient of variation of the output's limb lengths across frames (0 when the skeleton is rigid).
The truth row: the same foot metrics on the ground truth itself (what a perfect output scores) and "planted", the
share of (frame, heel/toe point) pairs the truth calls planted. Overall: the mean over clips. ratio: tcn /
mediapipe (below 1: ours better).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.common import rigs  # noqa: E402
from core.common.atomic import atomic_path  # noqa: E402
from core.common.motionfile import load_motion  # noqa: E402
from core.ik import keypoints_from_pose  # noqa: E402
from training.metrics import align  # noqa: E402

DATA = ROOT / ".cache" / "validation"
SET = ROOT / "bench" / "validation_set.json"
LIFTERS = ("tcn", "mediapipe")
NAMES = rigs.landmark_names()
LIMBS = tuple(f"{s}_{j}" for j in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle") for s in ("left", "right"))
FEET = ("left_heel", "left_foot_index", "right_heel", "right_foot_index")  # truth contact columns, in order
BONES = tuple((f"{s}_{a}", f"{s}_{b}") for s in ("left", "right")
              for a, b in (("shoulder", "elbow"), ("elbow", "wrist"), ("hip", "knee"), ("knee", "ankle")))
METRICS = ("PA-MPJPE mm", "MPJPE mm", "accel m/s2", "skate mm/f", "height sd cm", "pen cm", "travel m", "bone CV %")


def _idx(names: tuple[str, ...]) -> list[int]:
    return [NAMES.index(n) for n in names]


def run_cli(video: Path, output: Path, lifter: str, cache: Path, foot_lock: str = "auto",
            solve: str | None = None, weights: Path | None = None) -> float:
    """Run the core CLI on `video` with `lifter`, `foot_lock`, `solve` (None: the core's default) and the tcn
    lifter's `weights` (None: the shipped ones), writing the motion file `output`; returns the seconds it took."""
    env = {**os.environ, "MIMIC_CACHE_DIR": str(cache)}
    t0 = time.time()
    done = subprocess.run([sys.executable, "-m", "core", str(video), "-o", str(output), "--lifter", lifter,
                           "--foot-lock", foot_lock, *(["--solve", solve] if solve else []),
                           *(["--weights", str(weights)] if weights and lifter == "tcn" else []), "--overwrite",
                           "--progress", "none"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"core failed on {video.name} ({lifter}, exit {done.returncode}): {done.stderr.strip()}")
    return time.time() - t0


def output_landmarks(path: Path) -> tuple[np.ndarray, float, float]:
    """The motion file's animation as 33 landmarks (F, 33, 3) metres, its fps and its floor height."""
    m = load_motion(path)
    floor = (m.floor or {}).get("height_m", 0.0) or 0.0
    return keypoints_from_pose(m.rotations, m.root_positions, m.skeleton), m.fps, float(floor)


def mid_hip(points: np.ndarray) -> np.ndarray:
    """(F, 3) mean of the two hip landmarks of (F, 33, 3)."""
    return points[:, _idx(("left_hip", "right_hip"))].mean(1)


def path_length(points: np.ndarray) -> float:
    """Horizontal (X, Z) path length of (F, 3) metres."""
    return float(np.linalg.norm(np.diff(points[:, [0, 2]], axis=0), axis=-1).sum())


def skate(points: np.ndarray, planted: np.ndarray) -> tuple[float, int]:
    """Mean horizontal displacement mm/frame of points (F, P, 3) between consecutive frames where planted (F, P)
    holds in both, and the number of such (frame, point) pairs."""
    both = planted[1:] & planted[:-1]
    step = np.linalg.norm(np.diff(points[..., [0, 2]], axis=0), axis=-1)
    return (float(1000 * step[both].mean()) if both.any() else float("nan")), int(both.sum())


def height_spread(points: np.ndarray, planted: np.ndarray) -> float:
    """Mean over points of the std of their height (cm) over their planted frames (points with 2+ such frames)."""
    sd = [np.std(points[planted[:, p], p, 1]) for p in range(points.shape[1]) if planted[:, p].sum() > 1]
    return float(100 * np.mean(sd)) if sd else float("nan")


def score(out: np.ndarray, fps: float, floor: float, truth: dict) -> dict[str, float]:
    """METRICS of the output landmarks out (F, 33, 3) against one clip's ground truth (render_validation .npz)."""
    gt = truth["landmarks"]
    f = min(len(out), len(gt))
    out, gt, planted = out[:f], gt[:f], truth["contacts"][:f]
    limbs = _idx(LIMBS)
    p, g = out[:, limbs], gt[:, limbs]
    w = np.ones(p.shape[:2])
    pa = float(1000 * np.linalg.norm(align(p, g, w, scale=True) - g, axis=-1).mean())
    pr, gr = p - mid_hip(out)[:, None], g - mid_hip(gt)[:, None]
    flat = align(pr.reshape(1, -1, 3), gr.reshape(1, -1, 3), w.reshape(1, -1), scale=False).reshape(pr.shape)
    mpjpe = float(1000 * np.linalg.norm(flat - gr, axis=-1).mean())
    accel = float(np.linalg.norm(np.diff(flat, 2, axis=0) - np.diff(gr, 2, axis=0), axis=-1).mean() * fps * fps)
    feet = out[:, _idx(FEET)]
    lengths = np.stack([np.linalg.norm(out[:, NAMES.index(a)] - out[:, NAMES.index(b)], axis=-1) for a, b in BONES], 1)
    return {
        "PA-MPJPE mm": pa, "MPJPE mm": mpjpe, "accel m/s2": accel,
        "skate mm/f": skate(feet, planted)[0],
        "height sd cm": height_spread(feet, planted),
        "pen cm": float(100 * np.maximum(floor - feet[..., 1].min(1), 0.0).mean()),
        "travel m": path_length(mid_hip(out)),
        "bone CV %": float(100 * (lengths.std(0) / lengths.mean(0)).mean()),
    }


def truth_floor(truth: dict) -> dict[str, float]:
    """The ground truth's own values of the foot metrics (what a perfect output would score)."""
    gt, planted = truth["landmarks"], truth["contacts"]
    feet = gt[:, _idx(FEET)]
    return {"skate mm/f": skate(feet, planted)[0], "height sd cm": height_spread(feet, planted),
            "pen cm": float(100 * np.maximum(-feet[..., 1].min(1), 0.0).mean()), "travel m": path_length(mid_hip(gt)),
            "planted %": float(100 * planted.mean())}


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "-"


def fmt(v: float) -> str:
    return f"{v:7.1f}" if abs(v) >= 10 else f"{v:7.2f}"


def print_table(rows: dict[str, dict[str, dict[str, float]]], truths: dict[str, dict[str, float]],
                kinds: dict[str, str]) -> dict[str, dict[str, float]]:
    """Per clip: truth's foot floor, then each lifter's METRICS; then the means over clips and the ratios."""
    head = f"{'clip':<26}{'lifter':<10}" + "".join(f"{m:>13}" for m in METRICS)
    print(head)
    print("-" * len(head))
    for clip, by in rows.items():
        t = truths[clip]
        print(f"{clip:<26}{'truth':<10}" + "".join(f"{fmt(t[m]) if m in t else '':>13}" for m in METRICS)
              + f"   planted {t['planted %']:.0f} %   ({kinds[clip]})")
        for lifter in LIFTERS:
            print(f"{'':<26}{lifter:<10}" + "".join(f"{fmt(by[lifter][m]):>13}" for m in METRICS))
    print("-" * len(head))
    mean = {lifter: {m: float(np.nanmean([by[lifter][m] for by in rows.values()])) for m in METRICS}
            for lifter in LIFTERS}
    mean["truth"] = {m: float(np.nanmean([t[m] for t in truths.values()])) for m in ("skate mm/f", "height sd cm",
                                                                                     "pen cm", "travel m")}
    print(f"{'mean over ' + str(len(rows)) + ' clips':<26}{'truth':<10}"
          + "".join(f"{fmt(mean['truth'][m]) if m in mean['truth'] else '':>13}" for m in METRICS))
    for lifter in LIFTERS:
        print(f"{'':<26}{lifter:<10}" + "".join(f"{fmt(mean[lifter][m]):>13}" for m in METRICS))
    print(f"{'':<26}{'ratio':<10}" + "".join(f"{ratio(mean['tcn'][m], mean['mediapipe'][m]):>13}" for m in METRICS))
    print("\nPA-MPJPE and MPJPE per clip, tcn / mediapipe:")
    for clip, by in rows.items():
        print(f"  {clip:<26} PA {by['tcn']['PA-MPJPE mm'] / by['mediapipe']['PA-MPJPE mm']:.2f}"
              f"   MPJPE {by['tcn']['MPJPE mm'] / by['mediapipe']['MPJPE mm']:.2f}")
    return mean


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="*", default=None, help="clip names (default: all rendered)")
    p.add_argument("--data", type=Path, default=DATA, help="the rendered set (bench/render_validation.py --out)")
    p.add_argument("--reuse", action="store_true", help="keep motion files already written")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--foot-lock", choices=("auto", "grounding", "off"), default="auto",
                   help="the core's --foot-lock (default auto, the core's default); motion files are kept per mode")
    p.add_argument("--solve", choices=("clip", "frame"), default=None,
                   help="the core's --solve (default: the core's default); motion files are kept per choice")
    p.add_argument("--weights", type=Path, default=None,
                   help="the tcn lifter's weights (default: the shipped ones); motion files are kept per file name")
    a = p.parse_args()
    spec = json.loads(SET.read_text(encoding="utf-8"))
    stems = [a.data / f"{c['name']}__{cam}" for c in spec["clips"] for cam in c["cameras"]
             if a.only is None or c["name"] in a.only]
    missing = [s.name for s in stems if not (s.with_suffix(".mp4").is_file() and s.with_suffix(".npz").is_file())]
    if missing:
        sys.exit(f"error: not rendered: {', '.join(missing)}; run bench/render_validation.py first.")
    outdir = a.data / "out"
    outdir.mkdir(exist_ok=True)
    rows, truths, kinds, seconds = {}, {}, {}, {}
    for stem in stems:
        truth = dict(np.load(stem.with_suffix(".npz")))
        rows[stem.name], truths[stem.name], kinds[stem.name] = {}, truth_floor(truth), str(truth["kind"])
        for lifter in LIFTERS:
            out = outdir / (f"{stem.name}.{lifter}{'' if a.foot_lock == 'auto' else '.' + a.foot_lock}"
                            f"{'' if a.solve is None else '.' + a.solve}"
                            f"{'' if a.weights is None or lifter != 'tcn' else '.' + a.weights.stem}.npz")
            if not (a.reuse and out.is_file()):
                seconds[f"{stem.name}.{lifter}"] = run_cli(stem.with_suffix(".mp4"), out, lifter,
                                                           a.data / "detections", a.foot_lock, a.solve, a.weights)
                print(f"{stem.name} {lifter}: {seconds[f'{stem.name}.{lifter}']:.1f} s", flush=True)
            landmarks, fps, floor = output_landmarks(out)
            rows[stem.name][lifter] = score(landmarks, fps, floor, truth)
    print()
    mean = print_table(rows, truths, kinds)
    if seconds:
        print(f"\ncore CLI time: {sum(seconds.values()):.0f} s for {len(seconds)} runs")
    if a.json:
        with atomic_path(a.json) as tmp:
            tmp.write_text(json.dumps({"clips": rows, "truth": truths, "mean": mean, "seconds": seconds}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
