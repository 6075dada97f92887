"""2D keypoints per frame with MediaPipe Pose, cached on disk by video content and settings."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core.common import rigs
from core.common.atomic import atomic_path
from core.common.errors import BadRange, MimicError, NoPersonFound
from core.detections import Detections
from core.person import PersonRule, PersonTracker, parse_person
from core.progress import NullReporter, Reporter
from core.video import VideoInfo, check_range, frames_of, probe

CACHE_FORMAT = 1  # bump when the cached arrays or their meaning change


@dataclass(frozen=True)
class PoseSettings:
    """MediaPipe Pose (legacy solution) settings; all of them change the result, so all are in the cache key."""

    model_complexity: int = 1
    smooth_landmarks: bool = True
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5


POSE = PoseSettings()


def make_pose(static: bool, settings: PoseSettings = POSE) -> Any:
    """A MediaPipe legacy Pose graph: tracking mode (static=False) or one detection per image (static=True)."""
    import mediapipe as mp

    return mp.solutions.pose.Pose(
        static_image_mode=static,
        model_complexity=settings.model_complexity,
        smooth_landmarks=settings.smooth_landmarks,
        enable_segmentation=False,
        min_detection_confidence=settings.min_detection_confidence,
        min_tracking_confidence=settings.min_tracking_confidence,
    )


def detect(
    path: Path | str,
    start_s: float | None = None,
    end_s: float | None = None,
    person: PersonRule | str = "largest",
    reporter: Reporter = NullReporter(),
    cache_dir: Path | str | Literal[False] | None = None,
    use_cache: bool = True,
    allow_partial: bool = False,
) -> Detections:
    """MediaPipe Pose landmarks of one person for every frame of `path` with start_s <= time < end_s.

    person: "largest", "left", "right" or N (the N-th person from the left, 0-based), chosen among the people
    in the first frame where anyone is found, then tracked. Results are cached under `cache_dir` (default
    $MIMIC_CACHE_DIR or ~/.cache/mimic, subfolder detect/) unless use_cache is False or cache_dir is False.
    A damaged clip raises DamagedVideo; with allow_partial the part that decodes is used and the decoder's
    warnings are kept in info["decode_warnings"] (and so in the cache). Raises InputNotFound, NotAVideo, EmptyClip,
    BadRange, NoPersonFound, DamagedVideo; KeyboardInterrupt and Interrupted pass through.
    """
    path = Path(path)
    rule = parse_person(person)
    info = probe(path)
    start, end = check_range(info, start_s, end_s)
    total = max(1, round((end - start) * info.fps))
    settings = {
        "start_s": start,
        "end_s": end,
        "person": rule,
        "pose": dataclasses.asdict(POSE),
        "mediapipe": _mediapipe_version(),
        "cache_format": CACHE_FORMAT,
        "allow_partial": allow_partial,
    }
    cache_file = None
    if use_cache and cache_dir is not False:
        key = hashlib.sha256(json.dumps({"video": file_sha256(path), **settings}, sort_keys=True).encode()).hexdigest()
        cache_file = cache_root(cache_dir) / "detect" / f"{key}.npz"
        cached = _load(cache_file, info, settings)
        if cached is not None:
            reporter.stage("detect", cached.num_frames)
            reporter.update(cached.num_frames)
            return cached

    reporter.stage("detect", total)
    det = _run(info, start, end, rule, reporter, settings, allow_partial)
    if cache_file is not None:
        _save(cache_file, det)
    return det


def _run(info: VideoInfo, start: float, end: float, rule: PersonRule, reporter: Reporter, settings: dict[str, Any],
         allow_partial: bool = False) -> Detections:
    """Decode and detect every frame of the range: the hot loop."""
    times: list[float] = []
    image: list[np.ndarray] = []
    world: list[np.ndarray] = []
    missing = np.full((rigs.num_landmarks(), 3), np.nan)
    warnings: list[str] = []
    tracker = PersonTracker(rule, make_pose, fps=info.fps)
    try:
        with contextlib.closing(frames_of(info, start, end, allow_partial, warnings.append)) as frames:
            for n, frame in enumerate(frames, 1):
                found = tracker.process(frame.rgb)
                times.append(frame.time_s)
                if found is None:
                    image.append(missing)
                    world.append(missing)
                else:
                    image.append(found.image)
                    world.append(found.world)
                reporter.update(n)
    finally:
        tracker.close()
    if not times:
        raise BadRange(
            f"{info.path.name} has no frames between {start:g} s and {end:g} s.", "Choose a longer time range."
        )
    image_arr = np.stack(image).astype(np.float32)
    world_arr = np.stack(world).astype(np.float32)
    present = ~np.isnan(image_arr[:, 0, 0])
    image_arr[~present, :, 2] = 0.0
    if not present.any():
        where = "" if start == 0 and end >= info.duration_s else f" between {start:g} s and {end:g} s"
        raise NoPersonFound(
            f"No person was found in {info.path.name}{where}.",
            "Film the whole body, well lit, with the person clearly in view, or choose another time range.",
        )
    return Detections(
        times=np.asarray(times, dtype=np.float64),
        image=image_arr,
        world=world_arr,
        present=present,
        width=info.width,
        height=info.height,
        fps=info.fps,
        info={"video": _video_json(info), **settings, "candidates": tracker.candidates, "decode_warnings": warnings},
    )


def cache_root(cache_dir: Path | str | None = None) -> Path:
    """Where Mimic caches results: `cache_dir`, else $MIMIC_CACHE_DIR, else ~/.cache/mimic."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("MIMIC_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "mimic"


def file_sha256(path: Path) -> str:
    """sha256 of the file's content (hashlib releases the GIL on large chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _mediapipe_version() -> str:
    import mediapipe as mp

    return str(mp.__version__)


def _video_json(info: VideoInfo) -> dict[str, Any]:
    return {**dataclasses.asdict(info), "path": str(info.path)}


def _save(path: Path, det: Detections) -> None:
    """Write `det` as an .npz (no pickles) atomically; a cache that cannot be written is skipped silently."""
    meta = {"width": det.width, "height": det.height, "fps": det.fps, "info": det.info}
    with contextlib.suppress(OSError, MimicError):  # a read-only or full cache folder must not fail the run
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, times=det.times, image=det.image, world=det.world, present=det.present, meta_json=json.dumps(meta))


def _load(path: Path, info: VideoInfo, settings: dict[str, Any]) -> Detections | None:
    """The cached detections at `path` if they are a valid entry for these settings, else None; a damaged or
    foreign entry is deleted, so the run that recomputes it heals the cache."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta_json"]))
            arrays = {name: data[name] for name in ("times", "image", "world", "present")}
        det = Detections(**arrays, width=int(meta["width"]), height=int(meta["height"]), fps=float(meta["fps"]),
                         info=dict(meta["info"]))
        problem = _cache_problem(det, settings)
    except Exception as exc:  # noqa: BLE001 - truncated zip, empty file, wrong types, old format: all recomputed
        problem = f"unreadable ({type(exc).__name__})"
    if problem:
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    det.info["video"] = _video_json(info)  # the same content may sit at another path now
    return det


def _cache_problem(det: Detections, settings: dict[str, Any]) -> str:
    """What is wrong with a cached entry ("" if nothing): shapes, dtypes, lengths, values, settings."""
    frames, k = det.times.shape[0] if det.times.ndim == 1 else -1, rigs.num_landmarks()
    if frames < 1:
        return "no frames"
    for name, shape in (("image", (frames, k, 3)), ("world", (frames, k, 3))):
        value = getattr(det, name)
        if value.shape != shape or value.dtype.kind != "f":
            return f"{name} is {value.dtype} {value.shape}"
    if det.present.shape != (frames,) or det.present.dtype != bool or not det.present.any():
        return "no frame with a person"
    if not np.all(np.isfinite(det.times)) or not np.all(np.isfinite(det.image[det.present, :, :2])):
        return "non-finite times or landmarks"
    if not (np.isfinite(det.fps) and 0 < det.fps <= 1000 and det.width > 0 and det.height > 0):
        return "bad frame rate or size"
    if any(det.info.get(key) != value for key, value in json.loads(json.dumps(settings)).items()):
        return "other settings"
    return ""
