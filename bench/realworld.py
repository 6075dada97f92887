"""Real-footage accuracy of the learned lifter ("tcn") against MediaPipe's world landmarks ("mediapipe"), with a
multi-camera triangulated reference: Pose2Sim's Demo_SinglePerson (4 synchronised 1080×1920 60 fps views, 100
frames, one man balancing on one leg, Qualisys calibration; fetched by tools/fetch_assets.py).

Usage: .venv/bin/python bench/realworld.py [--min-visibility 0.5] [--check-px 10] [--max-px PX] [--cutoff 6]
       [--weights core/weights/lifter_tcn.pt]

1. Calibration check: MediaPipe 2D (core.detect2d.detect, person "largest") on all 4 views; every landmark seen
   with visibility >= --min-visibility in 2+ views is triangulated (DLT on undistorted points, bench/multiview.py)
   and reprojected. Printed: the error with MediaPipe's labels as they are; with its left/right swaps undone
   (fix_labels: per frame, view and body part, the labelling that makes the views agree, the left side then
   fixed by anatomy); with views over --check-px dropped (the geometry check: views that agree, agree to a few
   px); and each view held out (triangulated from the other 3), which measures MediaPipe's 2D scatter between
   views (tens of px at ~740 px body height, i.e. a few cm).
2. Reference (metres, world Z up): the labels-fixed landmarks triangulated from all confident views (views over
   --max-px dropped if given), low-passed with a zero-phase 4th-order Butterworth at --cutoff Hz (core.filters.
   smooth; Pose2Sim's default for its triangulated data). Three variants are printed: from all 4 views; from
   the 3 views other than the lifters' input (independent of the input's own 2D errors); and from all 4 views
   on only the frames where MediaPipe's labels in the input view were right (both lifters are fed those
   swapped labels otherwise, and mirror the body with them).
3. Each camera in turn is the monocular input: tcn = TcnLifter().lift(det).keypoints (the shipped lifter: 2D,
   MediaPipe's per-frame 3D as a hint, keypoints moved onto their 2D rays), tcn-2d = the same network fed the 2D
   alone, mediapipe = Detections.world, compared on the 19 landmarks both predict (nose, ears, shoulders, elbows, wrists, hips,
   knees, ankles, heels, foot_index) and on the 12 limb joints alone:
   - PA-MPJPE: per-frame similarity Procrustes (rotation, translation, scale; training.metrics.align);
   - rigid/frame: MPJPE after a per-frame rotation + translation, no scale (on the pelvis-relative pose; the
     translation makes the choice of pelvis irrelevant);
   - rigid/clip: pelvis-relative poses (pelvis = mid-hip), one rotation + translation for the whole clip (fitted
     on all frames), so a body orientation that drifts or flickers from frame to frame counts;
   - accel: mean |second difference of the prediction - that of the reference| × fps² (m/s²) on the
     rigid/clip-aligned pelvis-relative poses, where three consecutive frames are valid;
   - bone CV: mean over the lifter layout's bones among these landmarks of the length's coefficient of variation
     across frames (%), as in bench/lifter.py; bone err: mean |length - reference length| per frame (mm).
   Means over the 4 cameras, the ratios tcn / mediapipe and tcn-2d / mediapipe (below 1: better than MediaPipe),
   and the reference's own mean acceleration and bone CV (the floor those two metrics are measured against).
4. Left/right consistency (core.sides.fix_swaps, the pipeline's step after detection), per camera: frames whose
   labels the multi-view check (fix_labels, any of torso/arms/legs) finds swapped before and after the fix, the
   frames the fix relabelled (it sees only its own camera), and both lifters' PA-MPJPE before -> after against
   the all-views reference (which does not depend on the fix: it relabels by multi-view agreement).

Caveats (the metrics are not all equally well defined here):
- The reference is built from MediaPipe's own 2D landmarks, so it shares their definitions: MediaPipe's world
  landmarks come from the same network, while tcn was trained on mocap joints with offsets that imitate those
  definitions (rigs/lifter_layout.json; nose, ears, heels and toes are synthetic). A systematic definition
  difference (where exactly the hip or shoulder point sits) counts as tcn error, and bone err mostly measures
  such definitions and body size. The 12 limb-joint tables are the better defined ones.
- The reference has its own noise: MediaPipe 2D scatters by ~15 px between views (printed), a few cm. Its
  residual jitter after the low-pass is printed; without the low-pass (--cutoff 0) its jitter (~85 m/s²)
  swamps the accel metric.
- With the all-views reference the input view's 2D is one of its 4 views. That flatters tcn more than MediaPipe:
  tcn places seen keypoints on the input's 2D rays (core.lift.rays). The reference from the 3 other views is
  independent of the input's 2D and is the fair comparison; quote that one.
- No scale is fitted in the rigid metrics: both lifters output metric bodies (MediaPipe's world landmarks have
  an average adult's size; tcn's size comes from its training bodies), so a body-size error counts there, not in
  PA-MPJPE.
- Nothing here is tuned to the lifters: lifters, weights and MediaPipe settings are the shipped ones; the
  reference's settings (visibility 0.5 as in core.lift.mediapipe_world, all views, Pose2Sim's 6 Hz filter)
  were chosen on the reference's own reprojection error, jitter and bone CV; the conclusions are the same with
  --cutoff 0, --max-px 15 or --min-visibility 0.3.
- cam01 and cam02 are 1080 px wide, the calibration's field 1088 px: their pixels are used as they are (shifting
  them by 4 or 8 px only raised the reprojection error).
- One clip, one subject, 100 frames (1.7 s) of one balancing motion: a sanity check, not a benchmark.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.multiview import (Camera, label_swaps, read_qca, relabel, reprojection_error, triangulate,  # noqa: E402
                             triangulate_robust)  # noqa: E402
from core.detect2d import detect  # noqa: E402
from core.detections import Detections  # noqa: E402
from core.lift.tcn import DEFAULT_WEIGHTS, TcnLifter  # noqa: E402
from core.filters import fill_gaps, smooth  # noqa: E402
from core.lift.layout import lifter_layout  # noqa: E402
from core.sides import fix_swaps  # noqa: E402
from core.common import rigs  # noqa: E402
from training.metrics import align  # noqa: E402

DEMO = ROOT / ".cache" / "pose2sim" / "Demo_SinglePerson"
# cam01 is the sample clip pose2sim_balance.mp4
VIDEOS = [ROOT / "sample_clips" / "pose2sim_balance.mp4"] + [DEMO / f"cam0{i}.mp4" for i in (2, 3, 4)]
CALIBRATION = DEMO / "Calib.qca.txt"
MP_NAMES = rigs.landmark_names()
LIMBS = tuple(f"{s}_{j}" for j in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle") for s in ("left", "right"))
BODY = ("nose", "left_ear", "right_ear") + LIMBS + tuple(
    f"{s}_{j}" for j in ("heel", "foot_index") for s in ("left", "right"))
MIRROR = rigs.landmark_mirror()
GROUPS = {  # landmark groups whose left/right labels MediaPipe swaps together; each anchored as noted in fix_labels
    "torso": [MP_NAMES.index(n) for n in MP_NAMES[:13] + MP_NAMES[23:25]],
    "arms": [MP_NAMES.index(n) for n in MP_NAMES[13:23]],
    "legs": [MP_NAMES.index(n) for n in MP_NAMES[25:]],
}
LIFTERS = ("tcn", "tcn-2d", "mediapipe")  # the shipped lifter, the same network without MediaPipe's 3D, MediaPipe
METRICS = ("PA-MPJPE mm", "rigid/frame mm", "rigid/clip mm", "accel m/s^2", "bone CV %", "bone err mm")


def pelvis_relative(points: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """(F, J, 3) minus the mid-hip point of each frame."""
    hips = [names.index("left_hip"), names.index("right_hip")]
    return points - points[:, hips].mean(1, keepdims=True)


def mean_error(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean distance over the finite entries of (..., 3) arrays, in mm."""
    return float(1000 * np.nanmean(np.linalg.norm(a - b, axis=-1)))


def bone_stats(points: np.ndarray, ref: np.ndarray, bones: np.ndarray) -> tuple[float, float]:
    """(mean coefficient of variation of bone lengths across frames %, mean |length - reference length| mm)."""
    length = np.linalg.norm(points[:, bones[:, 0]] - points[:, bones[:, 1]], axis=-1)
    ref_length = np.linalg.norm(ref[:, bones[:, 0]] - ref[:, bones[:, 1]], axis=-1)
    length = np.where(np.isfinite(ref_length), length, np.nan)
    cv = np.nanstd(length, 0) / np.nanmean(length, 0)
    return float(100 * np.nanmean(cv)), float(1000 * np.nanmean(np.abs(length - ref_length)))


def acceleration(points: np.ndarray, fps: float) -> np.ndarray:
    """(F-2, J, 3) second differences × fps², m/s² (NaN where a frame is missing)."""
    return np.diff(points, 2, axis=0) * fps * fps


def evaluate(pred: np.ndarray, ref: np.ndarray, names: tuple[str, ...], bones: np.ndarray, fps: float) -> list[float]:
    """The METRICS of pred (F, J, 3) against ref (F, J, 3), metres, the same landmarks `names`."""
    valid = np.all(np.isfinite(pred), -1) & np.all(np.isfinite(ref), -1)
    ref = np.where(valid[..., None], ref, np.nan)
    pred = np.where(valid[..., None], pred, np.nan)
    w = valid.astype(np.float64)
    pa = mean_error(align(pred, ref, w, scale=True), ref)
    rigid = mean_error(align(pred, ref, w, scale=False), ref)
    pr, rr = pelvis_relative(pred, names), pelvis_relative(ref, names)
    wr = w * np.all(np.isfinite(pr), -1) * np.all(np.isfinite(rr), -1)
    flat = align(pr.reshape(1, -1, 3), rr.reshape(1, -1, 3), wr.reshape(1, -1), scale=False).reshape(pr.shape)
    clip = mean_error(np.where(wr[..., None] > 0, flat, np.nan), rr)
    accel = float(np.nanmean(np.linalg.norm(acceleration(flat, fps) - acceleration(rr, fps), axis=-1)))
    cv, err = bone_stats(pred, ref, bones)
    return [pa, rigid, clip, accel, cv, err]


def fix_labels(cams: list[Camera], pixels: np.ndarray,
               use: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Undo MediaPipe's left/right swaps view by view (pixels (V, F, 33, 2), use (V, F, 33)) before triangulating.

    Per frame and landmark group, the views' labels are exchanged where that makes the views agree best
    (multiview.label_swaps); which side is left is then fixed from anatomy, not from labels: the torso by its
    handedness (left = up × facing, facing = nose - mid-ears, world Z up), the arms by which shoulder each elbow
    is nearer, the legs by which hip each knee is nearer. Returns the relabelled pixels and use, and per group the
    (V, F) flags of what was relabelled.
    """
    n = MP_NAMES.index
    counts: dict[str, np.ndarray] = {}
    for group, idx in GROUPS.items():
        mirror = np.arange(len(MP_NAMES))
        mirror[idx] = MIRROR[idx]
        flags = label_swaps(cams, pixels, use, idx, MIRROR)
        pts = triangulate(cams, relabel(pixels, flags, mirror), relabel(use, flags, mirror))
        if group == "torso":
            facing = pts[:, n("nose")] - 0.5 * (pts[:, n("left_ear")] + pts[:, n("right_ear")])
            facing[:, 2] = 0.0
            left = np.cross([0.0, 0.0, 1.0], facing)
            across = (pts[:, [n("left_shoulder"), n("left_hip")]].sum(1)
                      - pts[:, [n("right_shoulder"), n("right_hip")]].sum(1))
            wrong = np.einsum("fi,fi->f", across, left) < 0
        else:
            a, b = ("elbow", "shoulder") if group == "arms" else ("knee", "hip")
            d = lambda s, t: np.linalg.norm(pts[:, n(f"{s}_{a}")] - pts[:, n(f"{t}_{b}")], axis=-1)  # noqa: E731
            wrong = d("left", "right") + d("right", "left") < d("left", "left") + d("right", "right")
        flags[:, wrong] = ~flags[:, wrong]
        pixels, use = relabel(pixels, flags, mirror), relabel(use, flags, mirror)
        counts[group] = flags
    return pixels, use, counts


def reference_points(cams: list[Camera], pixels: np.ndarray, use: np.ndarray, fps: float, cutoff_hz: float,
                     max_px: float | None = None, leave_out: int | None = None) -> np.ndarray:
    """(F, 33, 3) reference landmarks, metres, world axes: triangulated from all views (or all but `leave_out`),
    with worst views dropped above `max_px` if given, then low-passed (zero-phase Butterworth, order 4, at
    `cutoff_hz`; Pose2Sim's default filter for its triangulated data) and left NaN where never triangulated."""
    if leave_out is not None:
        use = use.copy()
        use[leave_out] = False
    pts = triangulate(cams, pixels, use) if max_px is None else triangulate_robust(cams, pixels, use, max_px)[0]
    valid = np.all(np.isfinite(pts), axis=-1)
    filled, _ = fill_gaps(pts, valid, fps, max_gap_s=0.5)
    out = smooth(filled, fps, cutoff_hz)
    out[~valid] = np.nan
    return out


@dataclass
class Row:
    camera: str
    lifter: str
    values: list[float]


def print_table(title: str, rows: list[Row], reference: list[float]) -> None:
    """One line per camera and lifter, the means over cameras, the ratios to mediapipe, and the reference's own
    mean acceleration and bone CV (what the lifters' accel and bone CV are measured against)."""
    print(f"\n{title}")
    head = f"  {'camera':8s} {'lifter':10s}" + "".join(f"{m:>15s}" for m in METRICS)
    print(head)
    print("  " + "-" * (len(head) - 2))
    line = lambda a, b, vals: print(f"  {a:8s} {b:10s}" + "".join(  # noqa: E731
        f"{v:15.2f}" if np.isfinite(v) else f"{'':15s}" for v in vals))
    for r in rows:
        line(r.camera, r.lifter, r.values)
    means = {k: np.mean([r.values for r in rows if r.lifter == k], axis=0) for k in LIFTERS}
    for k, v in means.items():
        line("mean", k, v)
    for k in LIFTERS[:-1]:
        line("ratio", f"{k}/mp", means[k] / means["mediapipe"])
    line("itself", "reference", [np.nan, np.nan, np.nan, reference[0], reference[1], np.nan])


def print_swap_fix(tcn: TcnLifter, cams: list[Camera], dets: list[Detections], frames: int, swapped: np.ndarray,
                   min_visibility: float, ref: np.ndarray, body: list[int], bones: np.ndarray, fps: float,
                   preds: dict[str, list[np.ndarray]]) -> None:
    """Per input camera: frames whose left/right labels are wrong by the multi-view check (fix_labels; any group)
    before and after core.sides.fix_swaps, the frames it relabelled, and both lifters' PA-MPJPE (19 landmarks and
    12 limb joints, reference from all 4 views) before and after. swapped: (V, F) the check on the raw labels."""
    fixed = [fix_swaps(d) for d in dets]
    pixels = np.stack([f.image[:frames, :, :2] for f, _ in fixed]).astype(np.float64)
    use = np.stack([f.image[:frames, :, 2] for f, _ in fixed]) >= min_visibility
    after = np.any(np.stack(list(fix_labels(cams, pixels, use)[2].values())), axis=0)
    fixed_preds = {"tcn": [tcn.lift(f).keypoints[:frames, body] for f, _ in fixed],
                   "mediapipe": [f.world[:frames, body].astype(np.float64) for f, _ in fixed]}
    limb = [BODY.index(n) for n in LIMBS]
    limb_bones = np.array([[limb.index(i), limb.index(j)] for i, j in bones if i in limb and j in limb])
    pa = lambda p, v, idx, bn: evaluate(p[:, idx], ref[:, idx], tuple(BODY[i] for i in idx), bn, fps)[0]  # noqa: E731
    print("\nleft/right consistency (core.sides.fix_swaps): frames with swapped labels by the multi-view check, and "
          "PA-MPJPE mm (reference from all 4 views) before -> after")
    print(f"  {'camera':8s} {'swapped':>8s} {'after':>6s} {'relabelled':>11s}   "
          + "".join(f"{f'{k} {n}':>26s}" for k in ("mediapipe", "tcn") for n in ("19 lm", "12 limbs")))
    for v, cam in enumerate(cams):
        cells = []
        for k in ("mediapipe", "tcn"):
            for idx, bn in ((list(range(len(BODY))), bones), (limb, limb_bones)):
                cells.append(f"{pa(preds[k][v], v, idx, bn):12.1f} -> {pa(fixed_preds[k][v], v, idx, bn):6.1f}")
        print(f"  {cam.name:8s} {int(swapped[v].sum()):8d} {int(after[v].sum()):6d} {int(fixed[v][1][:frames].sum()):11d}   "
              + "".join(f"{c:>26s}" for c in cells))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--min-visibility", type=float, default=0.5, help="views below this visibility are not used")
    p.add_argument("--check-px", type=float, default=10.0, help="calibration check: drop views reprojecting further")
    p.add_argument("--max-px", type=float, default=None, help="reference: drop views reprojecting further (px)")
    p.add_argument("--cutoff", type=float, default=6.0, help="reference low-pass cut-off, Hz (0: none)")
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="the tcn lifter's weights")
    a = p.parse_args()
    missing = [str(f) for f in (*VIDEOS, CALIBRATION) if not f.is_file()]
    if missing:
        print(f"missing {', '.join(missing)}: run .venv/bin/python tools/fetch_assets.py", file=sys.stderr)
        return 1

    cams = read_qca(CALIBRATION)
    dets: list[Detections] = [detect(v, person="largest") for v in VIDEOS]
    frames = min(d.num_frames for d in dets)
    fps = dets[0].fps
    raw = np.stack([d.image[:frames, :, :2] for d in dets]).astype(np.float64)  # (V, F, 33, 2)
    raw_use = np.stack([d.image[:frames, :, 2] for d in dets]) >= a.min_visibility
    body = [MP_NAMES.index(n) for n in BODY]
    print(f"{len(cams)} cameras ({', '.join(c.name for c in cams)}), {frames} frames at {fps:g} fps; "
          f"video sizes {[(d.width, d.height) for d in dets]}, calibrated {[c.size for c in cams]}")

    print(f"calibration check: reprojection error of the {len(BODY)} body landmarks, px, views with visibility >= "
          f"{a.min_visibility:g}")
    err = np.where(raw_use, reprojection_error(cams, triangulate(cams, raw, raw_use), raw), np.nan)[:, :, body]
    print(f"  MediaPipe's labels as they are:   mean {np.nanmean(err):6.2f}, median {np.nanmedian(err):6.2f}; "
          "per camera " + ", ".join(f"{np.nanmean(e):.1f}" for e in err))
    pixels, use, swaps = fix_labels(cams, raw, raw_use)
    print("  left/right labels exchanged (frames per camera): "
          + "; ".join(f"{g} {f.sum(1).tolist()}" for g, f in swaps.items()))
    swapped = np.any(np.stack(list(swaps.values())), axis=0)  # (V, F): the input's own labels were wrong there
    plain = triangulate(cams, pixels, use)
    err = np.where(use, reprojection_error(cams, plain, pixels), np.nan)[:, :, body]
    print(f"  labels fixed, all views:          mean {np.nanmean(err):6.2f}, median {np.nanmedian(err):6.2f}; "
          "per camera " + ", ".join(f"{np.nanmean(e):.1f}" for e in err))
    robust, kept = triangulate_robust(cams, pixels, use, a.check_px)
    err = np.where(kept, reprojection_error(cams, robust, pixels), np.nan)[:, :, body]
    print(f"  dropping views over {a.check_px:g} px:       mean {np.nanmean(err):6.2f}, "
          f"median {np.nanmedian(err):6.2f}; per camera " + ", ".join(f"{np.nanmean(e):.1f}" for e in err)
          + f"; {kept[:, :, body].sum()} of {use[:, :, body].sum()} observations kept, "
          f"{100 * np.isfinite(robust[:, body, 0]).mean():.1f}% of landmark-frames")
    others = [use & (np.arange(len(cams)) != v)[:, None, None] for v in range(len(cams))]
    held = [np.where(use[v], reprojection_error([cams[v]], triangulate(cams, pixels, others[v]), pixels[v:v + 1])[0],
                     np.nan)[:, body] for v in range(len(cams))]
    print("  each view held out (triangulated from the other 3): median "
          + ", ".join(f"{np.nanmedian(e):.1f}" for e in held) + " px")

    lay = lifter_layout()
    bones = np.array([[BODY.index(lay.names[i]), BODY.index(lay.names[j])] for i, j in lay.bones
                      if lay.names[i] in BODY and lay.names[j] in BODY])
    limb_idx = [BODY.index(n) for n in LIMBS]
    limb_bones = np.array([[limb_idx.index(i), limb_idx.index(j)] for i, j in bones
                           if i in limb_idx and j in limb_idx])
    tcn = TcnLifter(a.weights)
    tcn_2d = TcnLifter(a.weights, use_hint=False)
    preds = {"tcn": [tcn.lift(d).keypoints[:frames, body] for d in dets],
             "tcn-2d": [tcn_2d.lift(d).keypoints[:frames, body] for d in dets],
             "mediapipe": [d.world[:frames, body].astype(np.float64) for d in dets]}
    how = (f"labels fixed, {'all views' if a.max_px is None else f'views over {a.max_px:g} px dropped'}, "
           f"low-passed at {a.cutoff:g} Hz" if a.cutoff else "not low-passed")
    ref_all = reference_points(cams, pixels, use, fps, a.cutoff, a.max_px)[:, body]
    height = np.nanmax(ref_all[..., 2]) - np.nanmin(ref_all[..., 2])
    print(f"reference ({how}): {100 * np.isfinite(ref_all[..., 0]).mean():.1f}% of landmark-frames, "
          f"spans {height:.2f} m vertically (world Z up)")

    print_swap_fix(tcn, cams, dets, frames, swapped, a.min_visibility, ref_all, body, bones, fps, preds)

    variants = (("all 4 views", False, False), ("the 3 views other than the input", True, False),
                ("all 4 views, only frames where the input's left/right labels were right", False, True))
    for label, leave, right in variants:
        refs = [reference_points(cams, pixels, use, fps, a.cutoff, a.max_px, v)[:, body] if leave else ref_all
                for v in range(len(cams))]
        if right:
            refs = [np.where(swapped[v][:, None, None], np.nan, r) for v, r in enumerate(refs)]
            print(f"\ninput frames with left/right labels swapped, left out: {swapped.sum(1).tolist()} per camera")
        for subset, idx, bn in (("19 landmarks", list(range(len(BODY))), bones),
                                ("12 limb joints", limb_idx, limb_bones)):
            names = tuple(BODY[i] for i in idx)
            rows = [Row(cam.name, lifter, evaluate(preds[lifter][v][:, idx], refs[v][:, idx], names, bn, fps))
                    for v, cam in enumerate(cams) for lifter in LIFTERS]
            own = [(float(np.nanmean(np.linalg.norm(acceleration(pelvis_relative(r[:, idx], names), fps), axis=-1))),
                    bone_stats(r[:, idx], r[:, idx], bn)[0]) for r in refs]
            print_table(f"reference from {label}; {subset}", rows, list(np.mean(own, axis=0)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
