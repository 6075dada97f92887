"""Every person in the clip (--person all) against a calibrated multi-camera reference and against single-person
tracking: Pose2Sim's Demo_MultiPerson (4 synchronised 1088×1920 60 fps views, 100 frames, a man and a woman,
Qualisys calibration) and the Sports2D demo (one view, two people walking past each other).

Usage: .venv/bin/python bench/people.py [--views 1,2,3,4] [--no-sports2d] [--min-visibility 0.5]

1. People: core.detect2d.detect_people on every view; the number of people per view.
2. Who is who across views: the assignment of each view's tracks to the people of view 1 that makes the views agree
   best (median reprojection error of the triangulated body landmarks over the clip, all permutations tried).
3. Identity, frame by frame: each view's track of each person against both people triangulated from the other views
   (held out). A frame is a swap when the track's 2D lies closer to the other person's projection than to its own
   (median over the body landmarks seen); frames where the two projections are within --ambiguous-px of each other
   are counted apart (people overlapping: geometry cannot tell).
4. Single-person rules (the bugs of issue 14): core.detect2d.detect with person left on view 1, largest on view 4,
   largest on view 3; which person (by the same held-out test) each frame follows, "." where nobody is found.
5. Accuracy: per view and person, the full pipeline (core.pipeline.run_people) against the single-person pipeline
   (core.pipeline.run with person left/right, the rule that picks that person), both scored on Motion.keypoints_3d
   against the person triangulated from the 3 other views (labels fixed, low-passed at 6 Hz as in
   bench/realworld.py): PA-MPJPE and rigid/clip (mm), 19 landmarks; the ratio people / single (within 1.05: as
   good as tracked alone). With others in view, single-person tracking runs the same per-person graphs as "all"
   (core.person.PersonTracker), so the two differ only if that machinery or the per-person lifting diverges. The
   shared world: the distance between the two people's mid-hips, pipeline against reference, mean absolute error (m).
6. Sports2D (one view, no calibration): people found; identity frame by frame against the 2D tracks: each
   person's torso colour histogram (core.person.appearance) per frame against both people's mean look, taken over
   frames where they stand more than a body width apart, and the largest frame-to-frame jump of each torso centre
   (a swap between two people walking in opposite directions is a jump across the gap between them).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.multiview import project, read_qca, reprojection_error, triangulate  # noqa: E402
from bench.realworld import BODY, MP_NAMES, evaluate, fix_labels, reference_points  # noqa: E402
from core.detect2d import detect, detect_people  # noqa: E402
from core.detections import Detections  # noqa: E402
from core.lift.layout import lifter_layout  # noqa: E402
from core.pipeline import ConvertOptions, run, run_people  # noqa: E402

DEMO = ROOT / ".cache" / "pose2sim" / "Demo_MultiPerson"
CALIBRATION = DEMO / "Calib.qca.txt"
SPORTS2D = ROOT / "sample_clips" / "sports2d_walk.mp4"
BODY_IDX = [MP_NAMES.index(n) for n in BODY]
HIPS = [MP_NAMES.index("left_hip"), MP_NAMES.index("right_hip")]
TORSO = [11, 12, 23, 24]


def pixels_of(dets: list[Detections], frames: int, min_vis: float) -> tuple[np.ndarray, np.ndarray]:
    """(V, F, 33, 2) pixels and (V, F, 33) use of one track per view."""
    px = np.stack([d.image[:frames, :, :2] for d in dets]).astype(np.float64)
    use = np.stack([(d.image[:frames, :, 2] >= min_vis) & d.present[:frames, None] for d in dets])
    return px, use


def match_views(cams: list, tracks: list[list[Detections]], frames: int, min_vis: float) -> list[tuple[int, ...]]:
    """For each view, the permutation p with view v's track p[k] = person k of view 0 that makes the views agree."""
    people = len(tracks[0])
    best, best_cost = None, np.inf
    for combo in itertools.product(itertools.permutations(range(people)), repeat=len(tracks) - 1):
        perms = [tuple(range(people))] + list(combo)
        cost = 0.0
        for k in range(people):
            px, use = pixels_of([tracks[v][p[k]] for v, p in enumerate(perms)], frames, min_vis)
            err = np.where(use, reprojection_error(cams, triangulate(cams, px, use), px), np.nan)[:, :, BODY_IDX]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                cost += float(np.nanmedian(err))
        if cost < best_cost:
            best, best_cost = perms, cost
    assert best is not None
    print(f"  views matched (median reprojection {best_cost / people:.1f} px per person): "
          + "; ".join(f"view {v + 1}: tracks {list(p)}" for v, p in enumerate(best)))
    return best


def held_out_distances(cams: list, persons: list[tuple[np.ndarray, np.ndarray]], v: int, pixels: np.ndarray,
                       use: np.ndarray) -> np.ndarray:
    """(P, F): median pixel distance of one 2D track (pixels (F, 33, 2), use (F, 33)) in view v to each person
    triangulated from the views other than v; NaN where nothing to compare."""
    out = []
    for px, u in persons:
        others = u.copy()
        others[v] = False
        pts = triangulate(cams, px, others)
        d = np.linalg.norm(project(cams[v], pts) - pixels, axis=-1)
        d = np.where(use, d, np.nan)[:, BODY_IDX]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out.append(np.nanmedian(d, axis=1))
    return np.stack(out)


def follows(dist: np.ndarray, present: np.ndarray) -> str:
    """A string of who each frame's track is closest to ("." nobody found)."""
    who = np.argmin(np.nan_to_num(dist, nan=np.inf), axis=0)
    return "".join("." if not p or not np.isfinite(dist[:, n]).any() else str(w)
                   for n, (w, p) in enumerate(zip(who, present)))


def multiview(views: list[int], min_vis: float, ambiguous_px: float) -> None:
    cams_all = read_qca(CALIBRATION)
    cams = [cams_all[v - 1] for v in views]
    videos = [DEMO / f"cam0{v}.mp4" for v in views]
    t = time.perf_counter()
    tracks = [detect_people(v) for v in videos]
    print(f"Pose2Sim Demo_MultiPerson, views {views}: people found per view {[len(t) for t in tracks]} "
          f"({time.perf_counter() - t:.1f} s)")
    if len({len(t) for t in tracks}) != 1:
        print("  views disagree on the number of people: stop")
        return
    frames = min(d.num_frames for tr in tracks for d in tr)
    fps = tracks[0][0].fps
    perms = match_views(cams, tracks, frames, min_vis)
    people = len(tracks[0])
    persons = [pixels_of([tracks[v][p[k]] for v, p in enumerate(perms)], frames, min_vis) for k in range(people)]

    print("identity frame by frame (held-out reprojection; 'swap' = closer to the other person):")
    total = swaps = ambiguous = 0
    for v in range(len(views)):
        for k in range(people):
            det = tracks[v][perms[v][k]]
            dist = held_out_distances(cams, persons, v, persons[k][0][v], persons[k][1][v])
            seen = det.present[:frames] & np.isfinite(dist).all(axis=0)
            gap = np.abs(dist[k] - np.delete(dist, k, axis=0).min(axis=0)) if people > 1 else np.full(frames, np.inf)
            clear = seen & (gap >= ambiguous_px)
            wrong = clear & (np.delete(dist, k, axis=0).min(axis=0) < dist[k]) if people > 1 else clear & False
            total += int(clear.sum())
            swaps += int(wrong.sum())
            ambiguous += int((seen & ~clear).sum())
            print(f"  view {views[v]} person {k}: seen {int(det.present[:frames].sum())}/{frames}, checked "
                  f"{int(clear.sum())}, swapped {int(wrong.sum())}, ambiguous {int((seen & ~clear).sum())}; "
                  f"median distance to own {np.nanmedian(dist[k]):.1f} px")
    print(f"  all views: {swaps} swapped of {total} checked person-frames ({ambiguous} ambiguous)")

    print("single-person rules (which person each frame follows, by held-out reprojection):")
    for view, rule in ((1, "left"), (4, "largest"), (3, "largest")):
        if view not in views:
            continue
        v = views.index(view)
        det = detect(videos[v], person=rule)
        px, use = pixels_of([det], frames, min_vis)
        dist = held_out_distances(cams, persons, v, px[0], use[0])
        line = follows(dist, det.present[:frames])
        counts = {str(k): line.count(str(k)) for k in range(people)}
        print(f"  view {view} --person {rule}: {line}  {counts}, lost {line.count('.')}")

    print("accuracy: full pipeline (all) against single-person tracking, keypoints_3d vs the other 3 views")
    lay = lifter_layout()
    bones = np.array([[BODY.index(lay.names[i]), BODY.index(lay.names[j])] for i, j in lay.bones
                      if lay.names[i] in BODY and lay.names[j] in BODY])
    fixed = [fix_labels(cams, px, use)[:2] for px, use in persons]
    rows = []
    for v, video in enumerate(videos):
        motions = run_people(video, ConvertOptions(person="all"))
        mine = [motions[perms[v][k]] for k in range(people)]
        hips_ref = []
        for k in range(people):
            ref = reference_points(cams, fixed[k][0], fixed[k][1], fps, 6.0, None, v)
            hips_ref.append(ref[:, HIPS].mean(axis=1))
            single = None
            for rule in ("left", "right"):
                m = run(video, ConvertOptions(person=rule))
                a = m.keypoints_2d[:frames, TORSO, :2].mean(axis=1)
                b = mine[k].keypoints_2d[:frames, TORSO, :2].mean(axis=1)
                if np.nanmedian(np.linalg.norm(a - b, axis=-1)) < 20:
                    single = m
                    break
            if single is None:
                print(f"  view {views[v]} person {k}: no single-person rule follows this person")
                continue
            ours = evaluate(mine[k].keypoints_3d[:frames][:, BODY_IDX], ref[:frames][:, BODY_IDX], BODY, bones, fps)
            alone = evaluate(single.keypoints_3d[:frames][:, BODY_IDX], ref[:frames][:, BODY_IDX], BODY, bones, fps)
            rows.append((ours[0] / alone[0], ours[2] / alone[2]))
            print(f"  view {views[v]} person {k} ({rule}): PA-MPJPE all {ours[0]:.1f} / alone {alone[0]:.1f} mm "
                  f"= {ours[0] / alone[0]:.3f}; rigid/clip all {ours[2]:.1f} / alone {alone[2]:.1f} mm "
                  f"= {ours[2] / alone[2]:.3f}")
        if people == 2:
            ref_d = np.linalg.norm(hips_ref[0] - hips_ref[1], axis=-1)[:frames]
            pos = [m.positions()[:frames, 0] for m in mine]
            ours_d = np.linalg.norm(pos[0] - pos[1], axis=-1)
            print(f"  view {views[v]} shared world: distance between the two people {np.nanmean(ours_d):.2f} m, "
                  f"reference {np.nanmean(ref_d):.2f} m, mean abs error {np.nanmean(np.abs(ours_d - ref_d)):.2f} m")
    if rows:
        r = np.array(rows)
        print(f"  mean ratio all / alone: PA-MPJPE {r[:, 0].mean():.3f} (worst {r[:, 0].max():.3f}), "
              f"rigid/clip {r[:, 1].mean():.3f} (worst {r[:, 1].max():.3f})")


def sports2d() -> None:
    import cv2  # noqa: F401 - core.person needs it; imported here to fail early

    from core.person import Found, appearance
    from core.video import frames_of, probe

    t = time.perf_counter()
    tracks = detect_people(SPORTS2D)
    print(f"Sports2D demo: {len(tracks)} people ({time.perf_counter() - t:.1f} s); frames seen "
          f"{[int(d.present.sum()) for d in tracks]} of {tracks[0].num_frames}")
    info = probe(SPORTS2D)
    hists: list[list[np.ndarray | None]] = [[] for _ in tracks]
    for n, frame in enumerate(frames_of(info, 0.0, info.duration_s)):
        if n >= tracks[0].num_frames:
            break
        for k, d in enumerate(tracks):
            if d.present[n]:
                img = d.image[n].astype(np.float64)
                box = np.concatenate([img[:, :2].min(0), img[:, :2].max(0)])
                hists[k].append(appearance(frame.rgb, Found(img, d.world[n], box)))
            else:
                hists[k].append(None)
    anchors = np.stack([d.image[:, TORSO, :2].mean(axis=1) for d in tracks])  # (P, F, 2), NaN where not seen
    widths = np.stack([d.image[:, :, 0].max(axis=1) - d.image[:, :, 0].min(axis=1) for d in tracks])
    apart = np.ones(anchors.shape[1], dtype=bool)
    for i, j in itertools.combinations(range(len(tracks)), 2):
        with np.errstate(invalid="ignore"):
            apart &= ~(np.abs(anchors[i, :, 0] - anchors[j, :, 0]) <= np.fmax(widths[i], widths[j]))
    looks = []
    for k in range(len(tracks)):
        hs = [h for n, h in enumerate(hists[k]) if h is not None and apart[n]]
        looks.append(np.mean(hs, axis=0) if hs else None)
    for k, d in enumerate(tracks):
        own = other = checked = 0
        for n, h in enumerate(hists[k]):
            if h is None or looks[k] is None:
                continue
            like = [float(np.sum(np.sqrt(h * lk))) if lk is not None else -1.0 for lk in looks]
            checked += 1
            if int(np.argmax(like)) == k:
                own += 1
            else:
                other += 1
        seen = np.flatnonzero(d.present)
        steps = np.linalg.norm(np.diff(anchors[k, seen], axis=0), axis=-1) / np.maximum(np.diff(seen), 1)
        print(f"  person {k}: look checked in {checked} frames, like itself {own}, like someone else {other}; "
              f"largest torso step {steps.max() if steps.size else 0:.0f} px/frame (body width "
              f"{np.nanmedian(widths[k]):.0f} px); x from {anchors[k, seen[0], 0]:.0f} "
              f"to {anchors[k, seen[-1], 0]:.0f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--views", default="1,2,3,4", help="Demo_MultiPerson views to use (at least 3)")
    p.add_argument("--no-sports2d", action="store_true")
    p.add_argument("--min-visibility", type=float, default=0.5)
    p.add_argument("--ambiguous-px", type=float, default=10.0)
    a = p.parse_args()
    views = [int(v) for v in a.views.split(",")]
    missing = [str(f) for f in [CALIBRATION] + [DEMO / f"cam0{v}.mp4" for v in views] if not f.is_file()]
    if missing:
        print(f"missing {', '.join(missing)}: run .venv/bin/python tools/fetch_assets.py", file=sys.stderr)
        return 1
    multiview(views, a.min_visibility, a.ambiguous_px)
    if not a.no_sports2d:
        sports2d()
    return 0


if __name__ == "__main__":
    sys.exit(main())
