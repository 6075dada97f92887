"""Facial expression weights and the head's rotation from MediaPipe Face Mesh landmarks, per clip, in numpy.

Each frame's landmarks are fitted to MediaPipe's canonical face (rigs/face_canonical.json: the vertices of MediaPipe's
canonical_face_model.obj, Apache-2.0, copied as data since the mediapipe wheel does not ship them) by a similarity
Procrustes on the landmarks expressions do not move (nose, forehead, cheeks, temples), which gives the head's rotation
and lets every measure be taken on the pose-normalised face (rotation, scale and position removed), so turning the head
is not blinking. Measures are ratios over D, the distance between the outer eye corners (33, 263). Sides are the
PERSON's own: "Left" = the person's left eye/brow/mouth corner, on the image's right for a person facing the camera
(MediaPipe's "left eye" 362/263/386/374 and iris 473..477).

Per-clip calibration (the neutral is a robust statistic of the clip itself, over the frames with a face):
  eye openness r = mean lid gaps (160/144, 159/145, 158/153 right; 385/380, 386/374, 387/373 left) / eye width
    (33-133, 362-263), relative to its 70th percentile (= open). closure c = (1 - r) / (1 - EYE_CLOSED_RATIO),
    clipped to 0..1: r = 1 -> 0, r <= 0.25 -> 1.
  eyeBlinkLeft/Right: closure (running median of 3 frames: one-frame spikes dropped, steps kept) with hysteresis:
    closed from c >= 0.6 until c <= 0.35, weight 1 while closed, else c. Not low-passed: blinks keep sharp edges.
  blink = min(left, right) (both eyes), blinkLeft/Right = that eye's closure minus blink (VRM adds blink and
    blinkLeft, so a full blink is not applied twice).
  eyeWideLeft/Right: (r - 1.08) / 0.3.
  jawOpen: inner lip gap (13-14) / D above its 5th percentile (= closed), / 0.35 (0.35 D ~ 3.2 cm = fully open).
  mouth width w = 61-291 / D relative to its median w0: wide = (w/w0 - 1) / 0.12, narrow = (1 - 0.06 jawOpen - w/w0)
    / 0.15 (an opening jaw narrows the mouth a little by itself). mouthPucker = narrow.
  mouthSmileLeft/Right: mouth corner (291 left, 61 right) raised above the lips' centre, minus its median over the
    frames with the mouth closed (jawOpen < 0.1, when at least a tenth of the clip), ramp 0.01..0.06 D;
    the centre is the upper lip (13) plus a quarter of the lip gap, as the corners follow an opening jaw only in part
    (a plain midpoint reads jaw opening as a smile). happy = their mean.
  brows: 3D distance of the inner (107, 66, 105 / 336, 296, 334) and outer (70, 63, 46 / 300, 293, 276) brow points
    from the nose tip (1) (not over the eye corners, which sink when the lids close), minus its median: browInnerUp =
    mean of both inner raises, browOuterUp per side, ramp 0.02..0.10 D, both times how open the lids are (Face Mesh's
    brows ride up as the eyes close); browDown per side = lowering of inner+outer, ramp 0.015..0.06 D.
  surprised = brows up (mean of inner and outer) x (0.5 + 0.5 max(eyeWide, jawOpen)): no brows, no surprise.
  gaze: iris centre (468 right, 473 left) from the eye corners' midpoint over eye width, both eyes averaged, minus the
    median, scaled by how open the lids are: lookLeft/Right = horizontal / 0.18 toward the person's left/right,
    lookUp/Down = vertical / 0.10.
  vowels, from opening o = jawOpen, wide and narrow (round) above: aa = big(o) (1 - narrow), oh = max(big, mid)(o)
    narrow, ou = narrow (1 - clip(o / 0.35)), ih = small(o) wide, ee = mid(o) wide; big = ramp 0.3..0.7,
    mid = triangle 0.1/0.35/0.65, small = triangle 0.02/0.15/0.35.
All weights are clipped to 0..1. Frames without a face are filled from their neighbours (core.filters.fill_gaps) and
every channel but the blinks is low-passed (core.filters.smooth). confidence: 0 without a face, else 1 while the
rigid fit's residual is at most the clip's median, falling to 0 at three times it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from core.common import rigs, rotations
from core.common.errors import BadRigData
from core.common.hands import expression_names
from core.filters import fill_gaps, hysteresis, smooth

MESH_LANDMARKS, FACE_LANDMARKS = 468, 478
FLIP = np.array([1.0, -1.0, -1.0])  # canonical (x person's left, y up, z to the viewer) -> camera (y down, z away)
EYE_LIDS = {"right": [(160, 144), (159, 145), (158, 153)], "left": [(385, 380), (386, 374), (387, 373)]}
EYE_CORNERS = {"right": (33, 133), "left": (362, 263)}
IRIS = {"right": 468, "left": 473}
BROW_INNER = {"right": [107, 66, 105], "left": [336, 296, 334]}
BROW_OUTER = {"right": [70, 63, 46], "left": [300, 293, 276]}
MOUTH_CORNER = {"right": 61, "left": 291}
LIP_UPPER, LIP_LOWER, NOSE_TIP = 13, 14, 1
SIDES = ("left", "right")  # the person's own

OPEN_PERCENTILE, JAW_CLOSED_PERCENTILE = 70.0, 5.0
EYE_CLOSED_RATIO = 0.25
BLINK_ENTER, BLINK_EXIT = 0.6, 0.35
EYE_WIDE = (1.08, 0.3)
JAW_RANGE = 0.35
CORNER_SHARE, JAW_NARROWING = 0.25, 0.06
WIDE_RANGE, NARROW_RANGE = 0.12, 0.15
SMILE, BROW_UP, BROW_DOWN = (0.01, 0.06), (0.02, 0.10), (0.015, 0.06)  # (dead zone, full) in D
GAZE_X_RANGE, GAZE_Y_RANGE = 0.18, 0.10
SMOOTH_HZ, MAX_GAP_S = 8.0, 0.5
BLINKS = ("blink", "blinkLeft", "blinkRight", "eyeBlinkLeft", "eyeBlinkRight")


@dataclass
class FaceSolve:
    """A clip's face: expressions (F, E) 0..1 named `names`, confidence (F,) 0..1, head_rotations (F, 4) w-x-y-z
    (the head in camera axes x right, y down, z away, relative to a frontal face), eyes_closed (F, 2) bool (the
    blink state, person's left then right) and normalised (F, 478, 3) the pose-normalised landmarks (canonical cm,
    camera axes, NaN where no face)."""

    names: tuple[str, ...]
    expressions: np.ndarray
    confidence: np.ndarray
    head_rotations: np.ndarray
    eyes_closed: np.ndarray
    normalised: np.ndarray


@lru_cache(maxsize=1)
def canonical_face() -> np.ndarray:
    """(468, 3) MediaPipe's canonical face in camera axes (x right = person's left, y down, z away), cm."""
    vertices = np.asarray(rigs.load("face_canonical").get("vertices", []), dtype=np.float64)
    if vertices.shape != (MESH_LANDMARKS, 3) or not np.all(np.isfinite(vertices)):
        raise BadRigData(f"{rigs.RIGS_DIR / 'face_canonical.json'} does not hold 468 finite vertices.",
                         "Reinstall Mimic.")
    return vertices * FLIP


@lru_cache(maxsize=1)
def rigid_landmarks() -> np.ndarray:
    """Indices of the landmarks expressions hardly move (above the upper lip, outside the eyes' and brows' box)."""
    x, y = np.abs(canonical_face()[:, 0]), -canonical_face()[:, 1]
    eyes_brows = (x > 1.2) & (x < 5.6) & (y > 1.2) & (y < 5.0)
    return np.flatnonzero((y > -1.0) & ~eyes_brows)


def fit_head(face_image: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Similarity fit of the canonical face to each frame's rigid landmarks: face_image (F, >=468, 3) pixels.

    Returns rotations (F, 3, 3) (camera = scale * R @ canonical + t), scale (F,) pixels per cm, t (F, 3) pixels and
    the fit's RMS residual (F,) cm; identity / NaN on frames not `present`."""
    rig = rigid_landmarks()
    model = canonical_face()[rig]
    pts = np.asarray(face_image, dtype=np.float64)[:, rig]
    ok = np.asarray(present, bool) & np.all(np.isfinite(pts), axis=(1, 2))
    pts = np.where(ok[:, None, None], pts, model)
    ca, cb = pts.mean(axis=1), model.mean(axis=0)
    a, b = pts - ca[:, None], model - cb
    h = np.einsum("nj,fnk->fjk", b, a)  # sum of b a^T
    u, sv, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(np.einsum("fji,fkj->fik", vt, u)))
    fix = np.stack([np.ones_like(d), np.ones_like(d), d], axis=-1)
    rot = np.einsum("fji,fj,fkj->fik", vt, fix, u)  # V diag(1, 1, d) U^T
    scale = np.sum(sv * fix, axis=-1) / np.sum(b * b)
    t = ca - scale[:, None] * np.einsum("fij,j->fi", rot, cb)
    fitted = scale[:, None, None] * np.einsum("fij,nj->fni", rot, model) + t[:, None]
    rms = np.sqrt(np.mean(np.sum((fitted - pts) ** 2, axis=-1), axis=-1)) / scale
    rot[~ok], scale[~ok], t[~ok], rms[~ok] = np.eye(3), np.nan, np.nan, np.nan
    return rot, scale, t, rms


def normalise(face_image: np.ndarray, rot: np.ndarray, scale: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(F, N, 3) landmarks with the head's pose removed: R^T (x - t) / scale, canonical cm in camera axes."""
    x = np.asarray(face_image, dtype=np.float64) - t[:, None]
    return np.einsum("fji,fnj->fni", rot, x) / scale[:, None, None]


def _dist(p: np.ndarray, i: int, j: int) -> np.ndarray:
    return np.linalg.norm(p[:, i] - p[:, j], axis=-1)


def _finite_mean(x: np.ndarray) -> np.ndarray:
    """Mean over axis 1 of the finite values of x (F, K); NaN where none is."""
    ok = np.isfinite(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, x, 0.0).sum(axis=1) / ok.sum(axis=1)


def measures(p: np.ndarray) -> dict[str, np.ndarray]:
    """Raw scale-free measures per frame from pose-normalised landmarks p (F, 478, 3), (F,) or (F, 2) [left, right]."""
    d = _dist(p, 33, 263)
    out: dict[str, np.ndarray] = {}
    eye, gaze_x, gaze_y, brow_in, brow_out, smile = [], [], [], [], [], []
    centre = p[:, LIP_UPPER] + CORNER_SHARE * (p[:, LIP_LOWER] - p[:, LIP_UPPER])
    for side in SIDES:
        a, b = EYE_CORNERS[side]
        width = _dist(p, a, b)
        eye.append(np.mean([_dist(p, i, j) for i, j in EYE_LIDS[side]], axis=0) / width)
        mid = 0.5 * (p[:, a] + p[:, b])
        iris = p[:, IRIS[side]] - mid if p.shape[1] > IRIS[side] else np.full_like(mid, np.nan)
        gaze_x.append(iris[:, 0] / width)
        gaze_y.append(iris[:, 1] / width)
        brow_in.append(np.linalg.norm(p[:, BROW_INNER[side]] - p[:, NOSE_TIP, None], axis=-1).mean(axis=1) / d)
        brow_out.append(np.linalg.norm(p[:, BROW_OUTER[side]] - p[:, NOSE_TIP, None], axis=-1).mean(axis=1) / d)
        smile.append((centre[:, 1] - p[:, MOUTH_CORNER[side], 1]) / d)
    out["eye"] = np.stack(eye, axis=1)
    out["gaze_x"], out["gaze_y"] = _finite_mean(np.stack(gaze_x, axis=1)), _finite_mean(np.stack(gaze_y, axis=1))
    out["brow_inner"] = np.stack(brow_in, axis=1)
    out["brow_outer"] = np.stack(brow_out, axis=1)
    out["smile"] = np.stack(smile, axis=1)
    out["jaw"] = (p[:, LIP_LOWER, 1] - p[:, LIP_UPPER, 1]) / d
    out["width"] = _dist(p, MOUTH_CORNER["right"], MOUTH_CORNER["left"]) / d
    return out


def _median3(x: np.ndarray) -> np.ndarray:
    """Running median of 3 frames along axis 0: drops one-frame spikes, keeps steps sharp (edges repeated)."""
    padded = np.concatenate([x[:1], x, x[-1:]])
    return np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0)


def _ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def _tri(x: np.ndarray, lo: float, peak: float, hi: float) -> np.ndarray:
    return np.clip(np.minimum((x - lo) / (peak - lo), (hi - x) / (hi - peak)), 0.0, 1.0)


def _filled(x: np.ndarray, present: np.ndarray, fps: float) -> np.ndarray:
    """x (F,) or (F, K) with frames not `present` (or NaN) filled from their neighbours; 0 where never seen."""
    flat = x.reshape(len(x), -1)
    out, _ = fill_gaps(flat[..., None], present[:, None] & np.isfinite(flat), fps, MAX_GAP_S)
    return np.nan_to_num(out[..., 0]).reshape(x.shape)


def _neutral(x: np.ndarray, present: np.ndarray, q: float) -> np.ndarray:
    """The q-th percentile of x over the frames with a face (0 where none)."""
    seen = x[present]
    if not len(seen) or not np.any(np.isfinite(seen)):
        return np.zeros(x.shape[1:])
    return np.nan_to_num(np.nanpercentile(seen, q, axis=0))


@dataclass(frozen=True)
class FaceNeutral:
    """A face at rest, the statistics each measure is read against (the measures' units, module docstring): eye
    (2,) open lids (OPEN_PERCENTILE), jaw closed (JAW_CLOSED_PERCENTILE), mouth width, smile (2,) with the mouth
    closed, brow_inner (2,), brow_outer (2,), gaze_x, gaze_y (medians)."""

    eye: np.ndarray
    jaw: float
    width: float
    smile: np.ndarray
    brow_inner: np.ndarray
    brow_outer: np.ndarray
    gaze_x: float
    gaze_y: float


def neutral_of(m: dict[str, np.ndarray], present: np.ndarray) -> FaceNeutral:
    """The neutral face of measures m (measures(), frames (F,)) over the frames `present` (F,) bool."""
    jaw_closed = float(_neutral(m["jaw"], present, JAW_CLOSED_PERCENTILE))
    mouth_shut = present & (_ramp(m["jaw"] - jaw_closed, 0.0, JAW_RANGE) < 0.1)
    closed_mouth = mouth_shut if np.sum(mouth_shut) >= 0.1 * present.sum() else present
    return FaceNeutral(
        eye=_neutral(m["eye"], present, OPEN_PERCENTILE), jaw=jaw_closed,
        width=float(_neutral(m["width"], present, 50.0)), smile=_neutral(m["smile"], closed_mouth, 50.0),
        brow_inner=_neutral(m["brow_inner"], present, 50.0), brow_outer=_neutral(m["brow_outer"], present, 50.0),
        gaze_x=float(_neutral(m["gaze_x"], present, 50.0)), gaze_y=float(_neutral(m["gaze_y"], present, 50.0)))


def eye_closure(m: dict[str, np.ndarray], neutral: FaceNeutral) -> np.ndarray:
    """(F, 2) how closed each eye is, 0 (as open as the neutral) .. 1 (lids at EYE_CLOSED_RATIO of it or less)."""
    r = m["eye"] / np.maximum(neutral.eye, 1e-9)
    return np.clip((1.0 - r) / (1.0 - EYE_CLOSED_RATIO), 0.0, 1.0)


def weights(m: dict[str, np.ndarray], neutral: FaceNeutral, closure: np.ndarray, closed: np.ndarray) -> np.ndarray:
    """(F, E) expression weights in expression_names() order, before smoothing and clipping, from measures m, the
    neutral face, each eye's closure (F, 2) and blink state closed (F, 2) bool (module docstring)."""
    eye_blink = np.where(closed, 1.0, closure)
    both = eye_blink.min(axis=1)
    r = m["eye"] / np.maximum(neutral.eye, 1e-9)
    wide = _ramp(r, EYE_WIDE[0], EYE_WIDE[0] + EYE_WIDE[1])
    jaw = _ramp(m["jaw"] - neutral.jaw, 0.0, JAW_RANGE)
    w = m["width"] / max(neutral.width, 1e-9)
    spread, narrow = _ramp(w - 1.0, 0.0, WIDE_RANGE), _ramp(1.0 - JAW_NARROWING * jaw - w, 0.0, NARROW_RANGE)
    smile = _ramp(m["smile"] - neutral.smile, *SMILE)
    inner, outer = m["brow_inner"] - neutral.brow_inner, m["brow_outer"] - neutral.brow_outer
    lids_open = 1.0 - closure.max(axis=1)  # the mesh's brows ride up as the lids close; irises behind lids are guesses
    inner_up = lids_open * _ramp(inner.mean(axis=1), *BROW_UP)
    outer_up = lids_open[:, None] * _ramp(outer, *BROW_UP)
    brow_down = _ramp(-(inner + outer) / 2.0, *BROW_DOWN)
    gx, gy = lids_open * (m["gaze_x"] - neutral.gaze_x), lids_open * (m["gaze_y"] - neutral.gaze_y)
    brows_up = 0.5 * (inner_up + outer_up.mean(axis=1))
    big, mid, small = _ramp(jaw, 0.3, 0.7), _tri(jaw, 0.1, 0.35, 0.65), _tri(jaw, 0.02, 0.15, 0.35)
    values = {
        "blink": both, "blinkLeft": eye_blink[:, 0] - both, "blinkRight": eye_blink[:, 1] - both,
        "aa": big * (1.0 - narrow), "ih": small * spread, "ou": narrow * (1.0 - _ramp(jaw, 0.0, 0.35)),
        "ee": mid * spread, "oh": np.maximum(big, mid) * narrow, "happy": smile.mean(axis=1),
        "surprised": brows_up * (0.5 + 0.5 * np.maximum(wide.mean(axis=1), jaw)),
        "lookUp": _ramp(-gy, 0.0, GAZE_Y_RANGE), "lookDown": _ramp(gy, 0.0, GAZE_Y_RANGE),
        "lookLeft": _ramp(gx, 0.0, GAZE_X_RANGE), "lookRight": _ramp(-gx, 0.0, GAZE_X_RANGE),
        "eyeBlinkLeft": eye_blink[:, 0], "eyeBlinkRight": eye_blink[:, 1],
        "eyeWideLeft": wide[:, 0], "eyeWideRight": wide[:, 1], "jawOpen": jaw,
        "mouthSmileLeft": smile[:, 0], "mouthSmileRight": smile[:, 1], "mouthPucker": narrow,
        "browInnerUp": inner_up, "browDownLeft": brow_down[:, 0], "browDownRight": brow_down[:, 1],
        "browOuterUpLeft": outer_up[:, 0], "browOuterUpRight": outer_up[:, 1],
    }
    names = expression_names()
    missing = [n for n in names if n not in values]
    if missing:
        raise BadRigData(f"rigs/expressions.json names expressions Mimic cannot estimate: {missing}.",
                         "Reinstall Mimic.")
    return np.stack([values[n] for n in names], axis=1)


def soft_channels() -> np.ndarray:
    """(E,) bool: the expressions that are low-passed (all but the blinks, which keep sharp edges)."""
    return np.array([n not in BLINKS for n in expression_names()])


def solve_face(face_image: np.ndarray, face_present: np.ndarray, fps: float) -> FaceSolve:
    """Expressions and head rotation of a clip: face_image (F, 478, 3) Face Mesh landmarks in pixels (z like x, NaN
    where no face), face_present (F,) bool, fps frames per second."""
    face_image = np.asarray(face_image, dtype=np.float64)
    frames = len(face_image)
    names = expression_names()
    if not frames:
        return FaceSolve(names, np.zeros((0, len(names))), np.zeros(0), np.zeros((0, 4)), np.zeros((0, 2), bool),
                         np.zeros((0, FACE_LANDMARKS, 3)))
    rot, scale, t, rms = fit_head(face_image, face_present)
    present = np.asarray(face_present, bool) & np.isfinite(scale)
    p = normalise(face_image, rot, np.where(present, scale, 1.0), np.nan_to_num(t))
    p[~present] = np.nan
    m = {k: _filled(v, present, fps) for k, v in measures(p).items()}
    neutral = neutral_of(m, present)
    closure = _median3(eye_closure(m, neutral))
    closed = hysteresis(closure, BLINK_ENTER, BLINK_EXIT)
    expressions = weights(m, neutral, closure, closed)
    soft = soft_channels()
    expressions[:, soft] = smooth(expressions[:, soft], fps, SMOOTH_HZ)
    expressions = np.clip(np.nan_to_num(expressions), 0.0, 1.0)
    if not present.any():
        expressions[:] = 0.0

    median = np.nanmedian(rms[present]) if present.any() else 1.0
    confidence = np.where(present, np.clip(1.5 - 0.5 * rms / max(median, 0.05), 0.0, 1.0), 0.0)
    confidence = np.nan_to_num(confidence)
    return FaceSolve(names, expressions, confidence, _head_rotations(rot, present, fps), closed & present[:, None], p)


def _head_rotations(rot: np.ndarray, present: np.ndarray, fps: float) -> np.ndarray:
    """(F, 4) w-x-y-z head rotations: gaps filled, low-passed, continuous; identity where never seen."""
    if not present.any():
        return rotations.identity(len(rot))
    q = np.full((len(rot), 4), np.nan)
    q[present] = rotations.make_continuous(rotations.from_matrix(rot[present]))
    filled, _ = fill_gaps(q[:, None], present[:, None], fps, MAX_GAP_S)
    return rotations.normalize(smooth(filled[:, 0], fps, SMOOTH_HZ))
