"""Hands' and face's landmarks of the followed person: a second pass over the video, MediaPipe Hands and FaceMesh run
on crops placed by the body's pose landmarks, cached on disk like core.detect2d.

Each hand is searched for in a square crop around the body's wrist (sized from the forearm and the hand's pose
landmarks, shifted toward the fingers, resampled to `crop_px`): palm detection on a hand-sized crop finds far more
hands than on the whole frame. The hand kept for a side is the one whose wrist is nearest the body's wrist of that
side, and nearer to it than to the other wrist (MediaPipe's handedness label flips with the palm, so it is not
used). The face is searched for in a crop around the head's pose landmarks (nose, eyes, ears, mouth).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from core.common import rigs
from core.common.atomic import atomic_path
from core.common.errors import MimicError
from core.detect2d import _mediapipe_version, cache_root, file_sha256
from core.detections import Detections
from core.hands_face_split import run_split
from core.person import FACE_SEEN
from core.progress import NullReporter, Reporter
from core.video import check_range, frames_of, probe

CACHE_FORMAT = 1  # bump when the cached arrays or their meaning change
HAND_LANDMARKS, FACE_LANDMARKS = 21, 478
SIDES = ("left", "right")  # axis 1 of the hands' arrays: the person's own left and right
#: threads running the graphs (left hand, right hand, face) at once; results do not depend on it
WORKERS = 3


def _by_side(*names: str) -> np.ndarray:
    """(2, len(names)) pose landmark indices of `names` ("wrist" -> left_wrist, right_wrist)."""
    return np.array([[rigs.landmark_index(f"{side}_{n}") for n in names] for side in SIDES])


ELBOW, WRIST = _by_side("elbow")[:, 0], _by_side("wrist")[:, 0]
FINGERS = _by_side("pinky", "index", "thumb")  # (2, 3): the pose's knuckle and thumb landmarks per side
HEAD = np.arange(11)  # pose landmarks 0..10: nose, eyes, ears, mouth


@dataclass(frozen=True)
class HandFaceSettings:
    """How the crops are placed and MediaPipe is run; all of it changes the result, so all of it is in the cache key.

    tracking: MediaPipe's tracking mode (one graph per hand and one for the face, fed smoothly moving crops) instead
    of a fresh detection on every crop. Hand crop: side = hand_crop_scale × the hand's length, estimated as
    max(forearm_share × elbow-wrist, wrist to the farthest pose finger landmark), centred hand_shift × that length
    beyond the wrist toward the fingers. A hand is skipped when its wrist's visibility is below min_visibility or its
    length is under min_hand_px; a hand found farther than max_offset × the crop's side from the body's wrist is
    rejected. Face crop: face_crop_scale × the largest distance between head landmarks; skipped when the nose's
    visibility is below FACE_SEEN or that distance is under min_face_px. smoothing_frames: half-width of the moving
    average over the crops' centres and sizes."""

    tracking: bool = True
    crop_px: int = 256
    hand_crop_scale: float = 3.0
    forearm_share: float = 0.6
    hand_shift: float = 0.3
    min_visibility: float = 0.5
    min_hand_px: float = 24.0
    max_offset: float = 0.5
    hand_model_complexity: int = 1
    face_crop_scale: float = 2.5
    min_face_px: float = 16.0
    smoothing_frames: int = 1
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5


SETTINGS = HandFaceSettings()


@dataclass
class HandFaceDetections:
    """The hands' and face's landmarks for the F frames of a body `Detections` (same times).

    hands_image: (F, 2, 21, 3) float32 x, y full-frame pixels, z MediaPipe's depth relative to the wrist in the same
    pixel scale; axis 1 = the person's (left, right) hand; NaN where not found. hands_world: (F, 2, 21, 3) float32
    MediaPipe's hand world landmarks, metres, hand-centred, camera axes (x right, y down); NaN where not found.
    hand_score: (F, 2) float32 0..1 MediaPipe's score of the hand, 0 where not found. face_image: (F, 478, 3) float32
    FaceMesh landmarks (irises included) in pixels (z like x), NaN where not found, None when the face was not asked.
    face_present: (F,) bool. info: JSON-able settings, counts of frames tried, skipped and found, timing.
    """

    hands_image: np.ndarray
    hands_world: np.ndarray
    hand_score: np.ndarray
    face_image: np.ndarray | None
    face_present: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.hand_score.shape[0])

    @property
    def hand_present(self) -> np.ndarray:
        """(F, 2) bool: the hand was found."""
        return ~np.isnan(self.hands_image[:, :, 0, 0])


def detect_hands_face(
    path: Path | str,
    det: Detections,
    hands: bool = True,
    face: bool = True,
    reporter: Reporter = NullReporter(),
    cache_dir: Path | str | Literal[False] | None = None,
    use_cache: bool = True,
    settings: HandFaceSettings = SETTINGS,
) -> HandFaceDetections:
    """Hands' (if `hands`) and face's (if `face`) landmarks of the person `det` follows in the video at `path`, for
    det's frames (frames where det.present is False stay NaN). Decodes only the span of frames where the person is
    seen. Cached under cache_dir/hands_face like core.detect2d.detect (cache_dir False: no cache)."""
    path = Path(path)
    key = _settings(det, hands, face, settings)
    cache_file = _cache_file(path, key, det, cache_dir) if use_cache else None
    if cache_file is not None:
        cached = _load(cache_file, det, key)
        if cached is not None:
            reporter.stage("hands_face", det.num_frames)
            reporter.update(det.num_frames)
            return cached
    reporter.stage("hands_face", det.num_frames)
    result = run_split(path, det, hands, face, settings, reporter, _run)
    result.info.update(key)
    if cache_file is not None:
        _save(cache_file, result)
    return result


def hand_crops(det: Detections, settings: HandFaceSettings = SETTINGS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Square crops around the person's hands: centres (F, 2, 2) pixels, sides (F, 2) pixels and hand lengths (F, 2)
    pixels (NaN where the wrist is unseen); axis 1 = (left, right)."""
    image = det.image[:, :, :2].astype(np.float64)
    wrist, elbow = image[:, WRIST], image[:, ELBOW]
    fingers = image[:, FINGERS]  # (F, 2, 3, 2)
    span = np.linalg.norm(fingers - wrist[:, :, None], axis=-1).max(axis=-1)
    length = np.fmax(settings.forearm_share * np.linalg.norm(wrist - elbow, axis=-1), span)
    toward = fingers.mean(axis=2) - wrist
    fallback = wrist - elbow
    toward = np.where(np.linalg.norm(toward, axis=-1, keepdims=True) > 1e-6, toward, fallback)
    unit = toward / np.maximum(np.linalg.norm(toward, axis=-1, keepdims=True), 1e-6)
    centre = wrist + settings.hand_shift * length[..., None] * unit
    side = settings.hand_crop_scale * length
    return _smooth(centre, settings.smoothing_frames), _smooth(side, settings.smoothing_frames), length


def head_boxes(image: np.ndarray, settings: HandFaceSettings = SETTINGS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Square crops around the head of pose landmarks image (F, 33, >=2) pixels: centres (F, 2), sides (F,) and the
    head's extent (F,), pixels, unsmoothed."""
    head = np.asarray(image)[:, HEAD, :2].astype(np.float64)
    extent = np.linalg.norm(head[:, :, None] - head[:, None], axis=-1).max(axis=(1, 2))
    return head.mean(axis=1), settings.face_crop_scale * extent, extent


def face_to_try(image: np.ndarray, extent: np.ndarray, settings: HandFaceSettings = SETTINGS) -> np.ndarray:
    """(F,) bool: the face is worth a search (the nose seen, the head at least min_face_px across)."""
    return (np.asarray(image)[:, 0, 2] >= FACE_SEEN) & (extent >= settings.min_face_px)


def face_crops(det: Detections, settings: HandFaceSettings = SETTINGS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Square crops around the person's head: centres (F, 2), sides (F,) and the head's extent (F,), pixels."""
    centre, side, extent = head_boxes(det.image, settings)
    return _smooth(centre, settings.smoothing_frames), _smooth(side, settings.smoothing_frames), extent


def _smooth(values: np.ndarray, half: int) -> np.ndarray:
    """Centred moving average over frames (axis 0) of 2 × half + 1 frames, ignoring NaN; NaN stays NaN."""
    if half <= 0 or len(values) < 2:
        return values
    finite = np.isfinite(values)
    pad = [(half + 1, half)] + [(0, 0)] * (values.ndim - 1)
    total, count = (np.cumsum(np.pad(a, pad), axis=0) for a in (np.where(finite, values, 0), finite))
    window = 2 * half + 1
    mean = (total[window:] - total[:-window]) / np.maximum(count[window:] - count[:-window], 1)
    return np.where(finite, mean, np.nan)


def crop(rgb: np.ndarray, centre: np.ndarray, side: float, size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The square of about `side` pixels centred on `centre` (x, y), black outside the frame, resampled to
    size × size; with its top-left corner (x, y) and its exact side in pixels (for `_to_frame`)."""
    side_px = max(2, int(round(side)))
    x0, y0 = (np.round(centre - side_px / 2)).astype(int)
    height, width = rgb.shape[:2]
    part = rgb[max(0, y0):max(0, min(height, y0 + side_px)), max(0, x0):max(0, min(width, x0 + side_px))]
    if part.size == 0:
        return np.zeros((size, size, 3), np.uint8), np.array([x0, y0], np.float64), side_px
    top, left = max(0, -y0), max(0, -x0)
    part = cv2.copyMakeBorder(part, top, side_px - top - part.shape[0], left, side_px - left - part.shape[1],
                              cv2.BORDER_CONSTANT, value=(0, 0, 0))
    interpolation = cv2.INTER_AREA if side_px > size else cv2.INTER_LINEAR
    return cv2.resize(part, (size, size), interpolation=interpolation), np.array([x0, y0], np.float64), side_px


def _to_frame(landmarks: Any, corner: np.ndarray, side: int) -> np.ndarray:
    """(N, 3) MediaPipe normalised landmarks of a crop in full-frame pixels (z scaled like x)."""
    xyz = np.array([(p.x, p.y, p.z) for p in landmarks.landmark], np.float64)
    xyz *= side
    xyz[:, :2] += corner
    return xyz


class _HandFinder:
    """MediaPipe Hands on one side's crops (one graph per side, so both sides can run at once); keeps the hand
    nearest the body's wrist of that side."""

    def __init__(self, side: int, settings: HandFaceSettings) -> None:
        import mediapipe as mp

        self.side, self.settings = side, settings
        self.graph = mp.solutions.hands.Hands(
            static_image_mode=not settings.tracking, max_num_hands=1 if settings.tracking else 2,
            model_complexity=settings.hand_model_complexity,
            min_detection_confidence=settings.min_detection_confidence,
            min_tracking_confidence=settings.min_tracking_confidence)

    def find(self, rgb: np.ndarray, centre: np.ndarray, size: float, wrists: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, float] | None:
        """(21, 3) pixels, (21, 3) metres and score of this side's hand, or None. wrists: (2, 2) the body's."""
        image, corner, side_px = crop(rgb, centre, size, self.settings.crop_px)
        out = self.graph.process(image)
        best, best_d = None, math.inf
        for k, marks in enumerate(out.multi_hand_landmarks or ()):
            xyz = _to_frame(marks, corner, side_px)
            d = float(np.linalg.norm(xyz[0, :2] - wrists[self.side]))
            other = float(np.linalg.norm(xyz[0, :2] - wrists[1 - self.side]))
            if d < best_d and d <= self.settings.max_offset * size and not other < d:
                best, best_d = (k, xyz), d
        if best is None:
            if self.settings.tracking and out.multi_hand_landmarks:  # tracking the other hand: make it let go
                self.graph.process(np.zeros_like(image))
            return None
        k, xyz = best
        world = np.array([(p.x, p.y, p.z) for p in out.multi_hand_world_landmarks[k].landmark], np.float64)
        return xyz, world, float(out.multi_handedness[k].classification[0].score)

    def close(self) -> None:
        self.graph.close()


class FaceFinder:
    """MediaPipe FaceMesh (one face, irises refined) on the head's crops."""

    def __init__(self, settings: HandFaceSettings) -> None:
        import mediapipe as mp

        self.settings = settings
        self.graph = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=not settings.tracking, max_num_faces=1, refine_landmarks=True,
            min_detection_confidence=settings.min_detection_confidence,
            min_tracking_confidence=settings.min_tracking_confidence)

    def find(self, rgb: np.ndarray, centre: np.ndarray, size: float) -> np.ndarray | None:
        """(478, 3) face landmarks in pixels, or None."""
        image, corner, side_px = crop(rgb, centre, size, self.settings.crop_px)
        out = self.graph.process(image)
        return _to_frame(out.multi_face_landmarks[0], corner, side_px) if out.multi_face_landmarks else None

    def close(self) -> None:
        self.graph.close()


def _run(path: Path, det: Detections, hands: bool, face: bool, settings: HandFaceSettings,
         reporter: Reporter) -> HandFaceDetections:
    """Decode the frames where the person is seen and run the hand and face graphs on their crops."""
    frames = det.num_frames
    hands_image = np.full((frames, 2, HAND_LANDMARKS, 3), np.nan, np.float32)
    hands_world = np.full_like(hands_image, np.nan)
    hand_score = np.zeros((frames, 2), np.float32)
    face_image = np.full((frames, FACE_LANDMARKS, 3), np.nan, np.float32) if face else None
    present = det.present & np.isfinite(det.image[:, 0, 0])
    vis = det.image[:, :, 2]
    hand_centre, hand_side, hand_len = hand_crops(det, settings)
    seen = (vis[:, WRIST] >= settings.min_visibility) & np.isfinite(hand_side)
    big = hand_len >= settings.min_hand_px
    try_hand = present[:, None] & seen & big & hands
    face_centre, face_side, extent = face_crops(det, settings)
    face_seen = (vis[:, 0] >= FACE_SEEN) & np.isfinite(face_side)
    try_face = present & np.isfinite(face_side) & face_to_try(det.image, extent, settings) & face
    info: dict[str, Any] = {
        "frames": frames, "frames_with_person": int(present.sum()),
        "hands_tried": try_hand.sum(axis=0).tolist(),
        "hands_skipped_low_visibility": (present[:, None] & ~seen).sum(axis=0).tolist() if hands else [0, 0],
        "hands_skipped_small": (present[:, None] & seen & ~big).sum(axis=0).tolist() if hands else [0, 0],
        "face_tried": int(try_face.sum()),
        "face_skipped_unseen": int((present & ~face_seen).sum()) if face else 0,
        "face_skipped_small": int((present & face_seen & (extent < settings.min_face_px)).sum()) if face else 0,
    }
    to_do = try_hand.any(axis=1) | try_face
    work = np.flatnonzero(to_do)
    started = time.perf_counter()
    decoded = 0
    if len(work):
        info_v = probe(path)
        step = 1.0 / det.fps
        start, end = check_range(info_v, max(0.0, det.times[work[0]] - step / 2), det.times[work[-1]] + step / 2)
        finders = [_HandFinder(side, settings) if try_hand[:, side].any() else None for side in (0, 1)]
        mesh = FaceFinder(settings) if try_face.any() else None
        warnings: list[str] = []
        pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="mimic-hands-face")
        try:
            with contextlib.closing(frames_of(info_v, start, end, True, warnings.append)) as stream:
                for frame in stream:
                    decoded += 1
                    # det's frames within half a frame of this one (times ascend: a binary search, not a scan)
                    lo = np.searchsorted(det.times, frame.time_s - step / 2 - 1e-6, side="left")
                    hi = np.searchsorted(det.times, frame.time_s + step / 2 + 1e-6, side="right")
                    near = np.arange(lo, hi)
                    near = near[to_do[near]]
                    if not len(near):
                        continue
                    n, wrists = near[0], det.image[near[0], WRIST, :2]
                    hand_jobs = [pool.submit(finder.find, frame.rgb, hand_centre[n, side], hand_side[n, side], wrists)
                                 if finder is not None and try_hand[n, side] else None
                                 for side, finder in enumerate(finders)]
                    face_job = pool.submit(mesh.find, frame.rgb, face_centre[n], face_side[n]) \
                        if mesh is not None and try_face[n] else None
                    for side, job in enumerate(hand_jobs):
                        found = job.result() if job is not None else None
                        if found is not None:
                            hands_image[near, side], hands_world[near, side], hand_score[near, side] = found
                    found_face = face_job.result() if face_job is not None else None
                    if found_face is not None:
                        face_image[near] = found_face
                    reporter.update(int(near[-1]) + 1)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            for graph in (*finders, mesh):
                if graph is not None:
                    graph.close()
        info["decode_warnings"] = warnings
    reporter.update(frames)
    seconds = time.perf_counter() - started
    face_present = ~np.isnan(face_image[:, 0, 0]) if face_image is not None else np.zeros(frames, bool)
    hand_found = ~np.isnan(hands_image[:, :, 0, 0])
    info.update(hands_found=hand_found.sum(axis=0).tolist(), face_found=int(face_present.sum()),
                frames_decoded=decoded, seconds=round(seconds, 3), fps=round(len(work) / max(seconds, 1e-9), 2))
    return HandFaceDetections(hands_image, hands_world, hand_score, face_image, face_present, info)


def _settings(det: Detections, hands: bool, face: bool, settings: HandFaceSettings) -> dict[str, Any]:
    """Everything the result depends on besides the video and det's arrays: the cache key, kept in info."""
    body = {k: v for k, v in det.info.items() if k not in ("video", "candidates", "decode_warnings")}
    return {"hands": bool(hands), "face": bool(face), "hands_face": dataclasses.asdict(settings), "body": body,
            "mediapipe": _mediapipe_version(), "hands_face_cache_format": CACHE_FORMAT}


def _det_digest(det: Detections) -> str:
    """sha256 of the body arrays the crops come from (det may be resampled or side-fixed after detection)."""
    digest = hashlib.sha256()
    for array in (det.times.astype(np.float64), det.image.astype(np.float32), det.present.astype(bool)):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _cache_file(path: Path, key: dict[str, Any], det: Detections,
                cache_dir: Path | str | Literal[False] | None) -> Path | None:
    if cache_dir is False:
        return None
    text = json.dumps({"video": file_sha256(path), "det": _det_digest(det), **key}, sort_keys=True, default=str)
    return cache_root(cache_dir) / "hands_face" / f"{hashlib.sha256(text.encode()).hexdigest()}.npz"


def _save(path: Path, result: HandFaceDetections) -> None:
    """Write `result` as an .npz (no pickles) atomically; a cache that cannot be written is skipped silently."""
    arrays = {"hands_image": result.hands_image, "hands_world": result.hands_world, "hand_score": result.hand_score,
              "face_present": result.face_present}
    if result.face_image is not None:
        arrays["face_image"] = result.face_image
    with contextlib.suppress(OSError, MimicError, TypeError, ValueError):
        meta = json.dumps({"info": result.info})
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, meta_json=meta, **arrays)


def _load(path: Path, det: Detections, key: dict[str, Any]) -> HandFaceDetections | None:
    """The cached result at `path` if it is a valid entry for det and these settings, else None (a bad entry is
    deleted, so the run that recomputes it heals the cache)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            info = dict(json.loads(str(data["meta_json"]))["info"])
            face_image = data["face_image"] if "face_image" in data.files else None
            result = HandFaceDetections(data["hands_image"], data["hands_world"], data["hand_score"], face_image,
                                        data["face_present"], info)
        problem = _cache_problem(result, det, key)
    except Exception as exc:  # noqa: BLE001 - truncated zip, empty file, wrong types, old format: all recomputed
        problem = f"unreadable ({type(exc).__name__})"
    if problem:
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return result


def _cache_problem(result: HandFaceDetections, det: Detections, key: dict[str, Any]) -> str:
    """What is wrong with a cached entry ("" if nothing): shapes, dtypes, NaN layout, value ranges, settings."""
    frames = det.num_frames
    shapes = {"hands_image": (frames, 2, HAND_LANDMARKS, 3), "hands_world": (frames, 2, HAND_LANDMARKS, 3),
              "hand_score": (frames, 2)}
    for name, shape in shapes.items():
        value = getattr(result, name)
        if value.shape != shape or value.dtype != np.float32:
            return f"{name} is {value.dtype} {value.shape}"
    if result.face_present.shape != (frames,) or result.face_present.dtype != bool:
        return "face_present"
    found = result.hand_present
    for name in ("hands_image", "hands_world"):
        value = getattr(result, name)
        if not (np.isfinite(value[found]).all() and np.isnan(value[~found]).all()):
            return f"{name} NaN layout"
    if not (np.all((result.hand_score >= 0) & (result.hand_score <= 1)) and (result.hand_score[~found] == 0).all()):
        return "hand_score"
    if key["face"] != (result.face_image is not None):
        return "face"
    if result.face_image is not None:
        if result.face_image.shape != (frames, FACE_LANDMARKS, 3) or result.face_image.dtype != np.float32:
            return "face_image"
        seen = result.face_present
        if not (np.isfinite(result.face_image[seen]).all() and np.isnan(result.face_image[~seen]).all()):
            return "face_image NaN layout"
    elif result.face_present.any():
        return "face_present"
    if any(result.info.get(k) != v for k, v in json.loads(json.dumps(key, default=str)).items()):
        return "other settings"
    return ""
