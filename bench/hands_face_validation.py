"""Score finger and face estimates against the rendered hands-and-face set (bench/render_hands_face.py).

Usage: .venv/bin/python bench/hands_face_validation.py [--data .cache/validation/hands_face] [--json OUT]
                                                         [--only mimic|baseline]
       Runs Mimic (core.pipeline.run with hands and face, scored below) and, beside it, the baseline: MediaPipe Hands directly on every rendered hand frame (static image mode; 'hands': the
       full frame, 'hands_crop': an oracle square crop around each true hand, an upper bound for crop-from-pose),
       and MediaPipe Face Mesh on the face clip (blinks: both eyes' lid gap under half its median; jaw: the
       inner-lip gap over the face height), and prints the scores below as JSON. 46 s on 2 shared cores.

Scores (all functions take the truth .npz's arrays; hands axis: 0 = the person's left, 1 = right):
- finger flexion error (degrees): landmark_flexion turns 21 hand points into 15 joint bends (the angle between a
  finger segment and the one before it, rigs/hand.json's landmark pairs: convention-free, scale- and
  translation-free), compared with the truth's; mean over joints and frames, per pose and per clip (distance).
  Predicted finger rotations (F, 2, 15, 4) are turned into points by hand_points_from_rotations first.
- hand swaps: frames where a predicted LEFT hand's wrist is nearer the true right wrist than the true left (and
  the same for right), in the image.
- blink F1 at +-1 frame: predicted blink events (frames) against the truth's.
- jaw-open correlation: Pearson r of a predicted jaw-open signal against the truth's jaw-open weight.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.common.hands import hand_landmarks, hand_skeleton  # noqa: E402
from core.common.rotations import unit  # noqa: E402

DATA = ROOT / ".cache" / "validation" / "hands_face"
#: The landmark before each chain's first landmark (MediaPipe Hands: 0 wrist, 1-4 thumb, 5-8 index, ...).
_CHAIN_START = (1, 5, 9, 13, 17)


def _parent_landmark(a: int) -> int:
    return 0 if a in _CHAIN_START else a - 1


def landmark_flexion(points: np.ndarray) -> np.ndarray:
    """(..., 21, 3) MediaPipe-ordered hand points -> (..., 15) bend in degrees at each rigs/hand.json joint: the
    angle between the segment (parent landmark -> joint landmark) and (joint landmark -> child landmark)."""
    pairs = hand_landmarks()
    parent = np.array([_parent_landmark(int(a)) for a in pairs[:, 0]])
    before = unit(points[..., pairs[:, 0], :] - points[..., parent, :], 1e-12)
    after = unit(points[..., pairs[:, 1], :] - points[..., pairs[:, 0], :], 1e-12)
    return np.degrees(np.arccos(np.clip(np.sum(before * after, -1), -1.0, 1.0)))


def hand_points_from_rotations(hand_rotations: np.ndarray, wrist_rotations: np.ndarray | None = None) -> np.ndarray:
    """(F, 2, 15, 4) local finger rotations w-x-y-z (rigs/hand.json rest, axis 1 = left, right) -> (F, 2, 21, 3)
    points in the hand's frame (wrist at 0; the right hand mirrored in X), by forward kinematics of rigs/hand.json.
    wrist_rotations (F, 2, 4), if given, turns each whole hand (the bend is unaffected)."""
    from core.common.rotations import multiply as quat_mul, rotate as quat_apply

    hand = hand_skeleton()
    pairs = hand_landmarks()
    q = np.asarray(hand_rotations, dtype=np.float64)
    F = q.shape[0]
    root = np.zeros((F, 2, 4))
    root[..., 0] = 1.0
    if wrist_rotations is not None:
        root = np.asarray(wrist_rotations, dtype=np.float64)
    glob = np.zeros(q.shape)
    pos = np.zeros((F, 2, len(hand.names), 3))
    out = np.zeros((F, 2, 21, 3))
    mirror = np.array([[1.0, 1.0, 1.0], [-1.0, 1.0, 1.0]])
    for k, p in enumerate(hand.parents):
        off = hand.offsets[k] * mirror
        if p < 0:
            glob[:, :, k] = quat_mul(root, q[:, :, k])
            pos[:, :, k] = quat_apply(root, np.broadcast_to(off, (F, 2, 3)))
        else:
            glob[:, :, k] = quat_mul(glob[:, :, p], q[:, :, k])
            pos[:, :, k] = pos[:, :, p] + quat_apply(glob[:, :, p], np.broadcast_to(off, (F, 2, 3)))
        out[:, :, pairs[k, 0]] = pos[:, :, k]
    for k in np.flatnonzero(np.any(hand.end_sites != 0, axis=1)):  # the tips
        end = hand.end_sites[k] * mirror
        out[:, :, pairs[k, 1]] = pos[:, :, k] + quat_apply(glob[:, :, k], np.broadcast_to(end, (F, 2, 3)))
    return out


def flexion_error(truth_flexion: np.ndarray, predicted_flexion: np.ndarray) -> np.ndarray:
    """(F, 2, 15) truth and predicted bends (degrees; NaN = no prediction) -> (F, 2, 15) absolute errors."""
    return np.abs(np.asarray(predicted_flexion) - np.asarray(truth_flexion))


def summarise_flexion(errors: np.ndarray, poses: np.ndarray, blend: np.ndarray) -> dict:
    """Mean absolute flexion error (degrees) over held frames (not blending), overall, per pose, per finger joint
    group (proximal/intermediate/distal) and the share of hand-frames with a prediction. errors (F, 2, 15);
    poses (F, 2) str; blend (F, 2) bool."""
    held = ~np.asarray(blend)
    have = np.all(np.isfinite(errors), axis=-1) & held
    out = {"hand_frames": int(held.sum()), "detected": float(have.sum() / max(held.sum(), 1)),
           "mean_deg": _mean(errors[have])}
    out["per_pose"] = {str(p): {"mean_deg": _mean(errors[have & (poses == p)]),
                                "detected": float((have & (poses == p)).sum() / max((held & (poses == p)).sum(), 1))}
                       for p in sorted(set(poses[held].tolist()))}
    names = hand_skeleton().names
    out["per_level"] = {lvl: _mean(errors[have][:, [i for i, n in enumerate(names) if n.endswith(lvl)]])
                        for lvl in ("Proximal", "Intermediate", "Distal")}
    return out


def _mean(x: np.ndarray) -> float | None:
    x = np.asarray(x, dtype=np.float64)
    return float(np.nanmean(x)) if x.size and np.isfinite(x).any() else None


def hand_swaps(true_wrists: np.ndarray, predicted_wrists: np.ndarray) -> int:
    """Frames (F,) where a predicted hand sits nearer the other true wrist than its own: true_wrists (F, 2, 2 or 3)
    (left, right), predicted_wrists (F, 2, 2 or 3) by the predictor's side label, NaN where it gave none."""
    t, p = np.asarray(true_wrists, dtype=np.float64), np.asarray(predicted_wrists, dtype=np.float64)
    own = np.linalg.norm(p - t, axis=-1)
    other = np.linalg.norm(p - t[:, ::-1], axis=-1)
    swapped = np.isfinite(own) & (other < own)
    return int(np.any(swapped, axis=1).sum())


def blink_events(closed: np.ndarray) -> np.ndarray:
    """(F,) bool eyes-closed -> frames of each closed run's middle."""
    c = np.concatenate([[False], np.asarray(closed, dtype=bool), [False]])
    starts, ends = np.flatnonzero(~c[:-1] & c[1:]), np.flatnonzero(c[:-1] & ~c[1:])
    return ((starts + ends - 1) // 2).astype(int)


def blink_f1(truth_frames: np.ndarray, predicted_frames: np.ndarray, tolerance: int = 1) -> dict:
    """Precision, recall and F1 of predicted blink events against the truth's, matched one-to-one within
    +-tolerance frames (greedy, nearest first)."""
    t, p = list(np.asarray(truth_frames, dtype=int)), list(np.asarray(predicted_frames, dtype=int))
    pairs = sorted((abs(a - b), i, j) for i, a in enumerate(t) for j, b in enumerate(p) if abs(a - b) <= tolerance)
    used_t, used_p = set(), set()
    for _, i, j in pairs:
        if i not in used_t and j not in used_p:
            used_t.add(i)
            used_p.add(j)
    tp = len(used_t)
    precision = tp / len(p) if p else 0.0
    recall = tp / len(t) if t else 0.0
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {"tp": tp, "truth": len(t), "predicted": len(p), "precision": precision, "recall": recall, "f1": f1}


def jaw_correlation(truth_jaw: np.ndarray, predicted_jaw: np.ndarray) -> float | None:
    """Pearson r between the truth's jaw-open (F,) and a predicted jaw-open signal (F,) over frames where both are
    finite."""
    t, p = np.asarray(truth_jaw, dtype=np.float64), np.asarray(predicted_jaw, dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(p)
    if ok.sum() < 3 or np.std(t[ok]) == 0 or np.std(p[ok]) == 0:
        return None
    return float(np.corrcoef(t[ok], p[ok])[0, 1])


# --- the MediaPipe baseline ------------------------------------------------------------------------------------------

def _frames(video: Path):
    import cv2

    cap = cv2.VideoCapture(str(video))
    while True:
        ok, img = cap.read()
        if not ok:
            break
        yield cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    cap.release()


def mediapipe_hands(video: Path, truth: dict, crop: bool = False) -> dict:
    """MediaPipe Hands (static image mode) on every frame, matched to the true hands by the nearest true wrist in
    the image. Full frame (2 hands), or with `crop` an oracle crop per true hand (a square 2.5 times the hand's
    projected extent around its true points, scaled to 256 px; what a crop-from-pose pipeline could reach at
    best). Returns flexion (F, 2, 15) from its world landmarks (NaN where not found), wrists_by_label (F, 2, 2)
    pixels by its own label turned to the person's side (the video is not mirrored: MediaPipe's 'Left' is the
    person's right) and found (F,) hands per frame."""
    import cv2
    import mediapipe as mp

    uv = truth["image_points"]
    F = len(uv)
    flex = np.full((F, 2, 15), np.nan)
    by_label = np.full((F, 2, 2), np.nan)
    found = np.zeros(F, dtype=int)
    with mp.solutions.hands.Hands(static_image_mode=True, max_num_hands=1 if crop else 2, model_complexity=1,
                                  min_detection_confidence=0.5) as hands:
        for f, rgb in enumerate(_frames(video)):
            if f >= F:
                break
            views = [(rgb, np.zeros(2), 1.0)]
            if crop:
                views = []
                for h in range(2):
                    c = 0.5 * (uv[f, h].min(0) + uv[f, h].max(0))
                    half = max(1.25 * np.max(uv[f, h].max(0) - uv[f, h].min(0)), 32.0)
                    x0, y0 = (c - half).astype(int)
                    side = int(2 * half)
                    pad = np.pad(rgb, ((side, side), (side, side), (0, 0)), mode="edge")
                    patch = pad[y0 + side:y0 + 2 * side, x0 + side:x0 + 2 * side]
                    views.append((cv2.resize(patch, (256, 256), interpolation=cv2.INTER_AREA),
                                  np.array([x0, y0], dtype=np.float64), side / 256.0))
            for img, origin, scale in views:
                res = hands.process(np.ascontiguousarray(img))
                if not res.multi_hand_landmarks:
                    continue
                size = np.array([img.shape[1], img.shape[0]], dtype=np.float64)
                for lm, world, handed in zip(res.multi_hand_landmarks, res.multi_hand_world_landmarks,
                                             res.multi_handedness):
                    found[f] += 1
                    px = np.array([[p.x, p.y] for p in lm.landmark]) * size * scale + origin
                    w3 = np.array([[p.x, p.y, p.z] for p in world.landmark])
                    side_ = int(np.argmin(np.linalg.norm(uv[f, :, 0] - px[0], axis=-1)))
                    flex[f, side_] = landmark_flexion(w3)
                    label = 1 if handed.classification[0].label == "Left" else 0
                    by_label[f, label] = px[0]
    return {"flexion": flex, "wrists_by_label": by_label, "found": found}


def mediapipe_face(video: Path, frames: int) -> dict:
    """MediaPipe Face Mesh (static image mode) per frame: eye aperture (F, 2) left, right (lid gap over eye
    width) and mouth aperture (F,) (inner-lip gap over face height); NaN where no face."""
    import mediapipe as mp

    eyes = np.full((frames, 2), np.nan)
    mouth = np.full(frames, np.nan)
    # person's left eye: 263 outer, 362 inner, 386 upper, 374 lower; right eye: 33, 133, 159, 145
    eye_ids = ((263, 362, 386, 374), (33, 133, 159, 145))
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                         min_detection_confidence=0.5) as mesh:
        for f, rgb in enumerate(_frames(video)):
            if f >= frames:
                break
            res = mesh.process(rgb)
            if not res.multi_face_landmarks:
                continue
            h, w = rgb.shape[:2]
            p = np.array([[q.x * w, q.y * h] for q in res.multi_face_landmarks[0].landmark])
            for s, (o, i, u, d) in enumerate(eye_ids):
                eyes[f, s] = np.linalg.norm(p[u] - p[d]) / np.linalg.norm(p[o] - p[i])
            mouth[f] = np.linalg.norm(p[13] - p[14]) / np.linalg.norm(p[10] - p[152])
    return {"eyes": eyes, "mouth": mouth}


def blinks_from_aperture(eyes: np.ndarray, ratio: float = 0.5) -> np.ndarray:
    """(F, 2) eye apertures -> blink event frames: both eyes below `ratio` times their median aperture."""
    med = np.nanmedian(eyes, axis=0)
    closed = np.all(eyes < ratio * med, axis=1)
    return blink_events(closed)


def load(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def baseline(data: Path = DATA) -> dict:
    """Score MediaPipe Hands and Face Mesh on every rendered clip in `data`."""
    out: dict = {"face": {}}
    for crop in (False, True):
        key = "hands_crop" if crop else "hands"
        out[key] = {}
        all_err, all_pose, all_blend = [], [], []
        for npz in sorted(data.glob("hands_*.npz")):
            truth = load(npz)
            pred = mediapipe_hands(npz.with_suffix(".mp4"), truth, crop)
            err = flexion_error(truth["flexion_deg"], pred["flexion"])
            s = summarise_flexion(err, truth["pose"], truth["blend"])
            s["swaps"] = hand_swaps(truth["image_points"][:, :, 0], pred["wrists_by_label"])
            s["frames_with_0_1_2_hands"] = np.bincount(np.minimum(pred["found"], 2), minlength=3).tolist()
            s["distance_m"] = float(truth["distance_m"])
            out[key][npz.stem] = s
            all_err.append(err)
            all_pose.append(truth["pose"])
            all_blend.append(truth["blend"])
        if all_err:
            out[key]["all"] = summarise_flexion(np.concatenate(all_err), np.concatenate(all_pose),
                                                np.concatenate(all_blend))
    for npz in sorted(data.glob("face_*.npz")):
        truth = load(npz)
        pred = mediapipe_face(npz.with_suffix(".mp4"), len(truth["jaw_open"]))
        found = np.isfinite(pred["mouth"])
        out["face"][npz.stem] = {
            "frames": len(found), "face_found": float(found.mean()),
            "blink": blink_f1(truth["blink_frames"], blinks_from_aperture(pred["eyes"])),
            "jaw_r": jaw_correlation(truth["jaw_open"], pred["mouth"])}
    return out


# --- Mimic ------------------------------------------------------------------------------------------------------------

def mimic_run(video: Path, hands: bool, face: bool) -> tuple:
    """Mimic's pipeline (core.pipeline.run, the tcn lifter, detection cached) on `video` with fingers and/or face,
    and the hands-and-face landmarks it used (the cache's): (Motion, HandFaceDetections)."""
    from core.detect2d import detect
    from core.hands_face2d import detect_hands_face
    from core.pipeline import ConvertOptions, run

    motion = run(video, ConvertOptions(hands=hands, face=face))
    parts = detect_hands_face(video, detect(video), hands=hands, face=face)
    return motion, parts


def mimic(data: Path = DATA) -> dict:
    """Score Mimic's fingers (hand_rotations -> points -> bends) and face (the blink and jawOpen channels) on every
    rendered clip in `data`, as `baseline` scores MediaPipe."""
    out: dict = {"hands": {}, "face": {}}
    all_err, all_pose, all_blend = [], [], []
    for npz in sorted(data.glob("hands_*.npz")):
        truth = load(npz)
        motion, parts = mimic_run(npz.with_suffix(".mp4"), hands=True, face=False)
        F = min(motion.num_frames, len(truth["pose"]))
        flex = landmark_flexion(hand_points_from_rotations(motion.hand_rotations[:F]))
        flex[motion.hand_confidence[:F] <= 0] = np.nan  # no hand seen (held or straight): no prediction
        err = flexion_error(truth["flexion_deg"][:F], flex)
        s = summarise_flexion(err, truth["pose"][:F], truth["blend"][:F])
        s["swaps"] = hand_swaps(truth["image_points"][:F, :, 0], parts.hands_image[:F, :, 0, :2])
        s["distance_m"] = float(truth["distance_m"])
        out["hands"][npz.stem] = s
        all_err.append(err)
        all_pose.append(truth["pose"][:F])
        all_blend.append(truth["blend"][:F])
    if all_err:
        out["hands"]["all"] = summarise_flexion(np.concatenate(all_err), np.concatenate(all_pose),
                                                np.concatenate(all_blend))
    for npz in sorted(data.glob("face_*.npz")):
        truth = load(npz)
        motion, _ = mimic_run(npz.with_suffix(".mp4"), hands=False, face=True)
        if motion.expressions is None:
            out["face"][npz.stem] = {"face_found": 0.0}
            continue
        names = list(motion.expression_names)
        F = min(motion.num_frames, len(truth["jaw_open"]))
        blink = motion.expressions[:F, names.index("blink")]
        out["face"][npz.stem] = {
            "frames": F, "blink": blink_f1(truth["blink_frames"], blink_events(blink > 0.5)),
            "jaw_r": jaw_correlation(truth["jaw_open"][:F], motion.expressions[:F, names.index("jawOpen")]),
            "aa_r": jaw_correlation(truth["jaw_open"][:F], motion.expressions[:F, names.index("aa")])}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--only", choices=("mimic", "baseline"), default=None, help="score one side only")
    a = p.parse_args()
    if not any(a.data.glob("*.npz")):
        sys.exit(f"error: no rendered clips in {a.data}; run bench/render_hands_face.py first.")
    res = {}
    if a.only != "mimic":
        res["mediapipe"] = baseline(a.data)
    if a.only != "baseline":
        res["mimic"] = mimic(a.data)
    text = json.dumps(res, indent=1)
    print(text)
    if a.json:
        from core.common.atomic import atomic_path

        with atomic_path(a.json) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
