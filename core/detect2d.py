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
from core.person import ALL, HIPS, MAX_PEOPLE, PeopleTracker, PersonRule, PersonTracker, parse_person
from core.progress import NullReporter, Reporter
from core.video import VideoInfo, check_range, frames_of, probe

CACHE_FORMAT = 2  # bump when the cached arrays or their meaning change (2: several people, identity by look)
#: "all": a followed person seen in fewer frames than this × the clip's frame rate (and in under half the frames)
#: is dropped as a false detection.
MIN_PERSON_S = 0.2


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
    if rule == ALL:
        raise ValueError("detect follows one person; detect_people finds every person")
    info = probe(path)
    start, end = check_range(info, start_s, end_s)
    total = max(1, round((end - start) * info.fps))
    settings = _settings(start, end, rule, allow_partial)
    cache_file = _cache_file(path, settings, cache_dir) if use_cache else None
    if cache_file is not None:
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


def detect_people(
    path: Path | str,
    start_s: float | None = None,
    end_s: float | None = None,
    reporter: Reporter = NullReporter(),
    cache_dir: Path | str | Literal[False] | None = None,
    use_cache: bool = True,
    allow_partial: bool = False,
    max_people: int = MAX_PEOPLE,
) -> list[Detections]:
    """MediaPipe Pose landmarks of every person in view (up to max_people, core.person.PeopleTracker), one
    Detections per person over the same frames, persons ordered by when they were first seen, then left to right.

    Each person's Detections is NaN (present False) in the frames they are not seen; info["person"] is "all" and
    info["person_id"] the person's place in the list. Cached like `detect`; raises what `detect` raises.
    """
    path = Path(path)
    info = probe(path)
    start, end = check_range(info, start_s, end_s)
    total = max(1, round((end - start) * info.fps))
    settings = _settings(start, end, ALL, allow_partial, max_people=int(max_people))
    cache_file = _cache_file(path, settings, cache_dir) if use_cache else None
    if cache_file is not None:
        cached = _load_people(cache_file, info, settings)
        if cached is not None:
            reporter.stage("detect", cached[0].num_frames)
            reporter.update(cached[0].num_frames)
            return cached

    reporter.stage("detect", total)
    tracker = PeopleTracker(make_pose, fps=info.fps, max_people=max_people)
    times, found, candidates, warnings = _decode_and_track(info, start, end, tracker, reporter, allow_partial)
    people = len(tracker.tracks)
    frames = len(times)
    image_arr = np.full((people, frames, rigs.num_landmarks(), 3), np.nan, np.float32)
    world_arr = np.full_like(image_arr, np.nan)
    for n, in_frame in enumerate(found):
        for k, f in enumerate(in_frame):
            if f is not None:
                image_arr[k, n], world_arr[k, n] = f.image, f.world
    present = ~np.isnan(image_arr[:, :, 0, 0])
    keep = present.sum(axis=1) >= min(MIN_PERSON_S * info.fps, 0.5 * frames)
    first = np.argmax(present, axis=1)
    hip_x = np.nanmean(image_arr[np.arange(people), first][:, list(HIPS), 0], axis=1) if people else np.zeros(0)
    order = [k for k in sorted(range(people), key=lambda k: (first[k], hip_x[k])) if keep[k]]
    dets = [_detections(info, times, image_arr[k], world_arr[k], start, end,
                        {**settings, "person_id": i, "candidates": [candidates[k]], "decode_warnings": warnings})
            for i, k in enumerate(order)]
    if not dets:
        raise _nobody(info, start, end)
    if cache_file is not None:
        _save_people(cache_file, dets)
    return dets


def _decode_and_track(info: VideoInfo, start: float, end: float, tracker: PersonTracker | PeopleTracker,
                      reporter: Reporter, allow_partial: bool, close: bool = True
                      ) -> tuple[list[float], list[Any], list[dict[str, Any]], list[str]]:
    """Decode the range and run `tracker` on every frame: the hot loop. Returns the frames' times, the tracker's
    results per frame (Found | None, or a list of them), its candidates and the decoder's warnings. close: free
    the tracker at the end (False: the caller carries on with it)."""
    times: list[float] = []
    results: list[Any] = []
    warnings: list[str] = []
    try:
        with contextlib.closing(frames_of(info, start, end, allow_partial, warnings.append)) as frames:
            for n, frame in enumerate(frames, 1):
                results.append(tracker.process(frame.rgb))
                times.append(frame.time_s)
                reporter.update(n)
    finally:
        if close:
            tracker.close()
    if not times:
        raise BadRange(
            f"{info.path.name} has no frames between {start:g} s and {end:g} s.", "Choose a longer time range."
        )
    return times, results, tracker.candidates, warnings


def _nobody(info: VideoInfo, start: float, end: float) -> NoPersonFound:
    where = "" if start == 0 and end >= info.duration_s else f" between {start:g} s and {end:g} s"
    return NoPersonFound(
        f"No person was found in {info.path.name}{where}.",
        "Film the whole body, well lit, with the person clearly in view, or choose another time range.",
    )


def _detections(info: VideoInfo, times: list[float], image: np.ndarray, world: np.ndarray, start: float, end: float,
                settings: dict[str, Any]) -> Detections:
    """One person's arrays (F, 33, 3) as Detections; visibility 0 where the person is not seen."""
    image = image.astype(np.float32)
    present = ~np.isnan(image[:, 0, 0])
    image[~present, :, 2] = 0.0
    return Detections(times=np.asarray(times, dtype=np.float64), image=image, world=world.astype(np.float32),
                      present=present, width=info.width, height=info.height, fps=info.fps,
                      info={"video": _video_json(info), **settings})


def track_one(info: VideoInfo, start: float, end: float, tracker: PersonTracker, reporter: Reporter,
              allow_partial: bool, close: bool = True
              ) -> tuple[tuple[list[float], np.ndarray, np.ndarray], list[dict[str, Any]], list[str]]:
    """One person over [start, end): (times (F,), image (F, 33, 3), world (F, 33, 3), NaN where not seen), the
    tracker's candidates and the decoder's warnings."""
    missing = np.full((rigs.num_landmarks(), 3), np.nan)
    times, found, candidates, warnings = _decode_and_track(info, start, end, tracker, reporter, allow_partial, close)
    image = np.stack([missing if f is None else f.image for f in found])
    world = np.stack([missing if f is None else f.world for f in found])
    return (times, image, world), candidates, warnings


def _run(info: VideoInfo, start: float, end: float, rule: PersonRule, reporter: Reporter, settings: dict[str, Any],
         allow_partial: bool = False) -> Detections:
    """Decode and detect every frame of the range, following one person (long ranges in two processes:
    core/detect_split.py)."""
    from core.detect_split import track_range

    (times, image, world), candidates, warnings = track_range(info, start, end, rule, reporter, allow_partial,
                                                              track_one)
    det = _detections(info, times, image, world, start, end,
                      {**settings, "candidates": candidates, "decode_warnings": warnings})
    if not det.present.any():
        raise _nobody(info, start, end)
    return det


def _settings(start: float, end: float, person: PersonRule, allow_partial: bool, **extra: Any) -> dict[str, Any]:
    """Everything a detection depends on besides the video: the cache key and what a cached entry must match."""
    return {"start_s": start, "end_s": end, "person": person, **extra, "pose": dataclasses.asdict(POSE),
            "mediapipe": _mediapipe_version(), "cache_format": CACHE_FORMAT, "allow_partial": allow_partial}


def _cache_file(path: Path, settings: dict[str, Any], cache_dir: Path | str | Literal[False] | None) -> Path | None:
    """Where the detections of `path` with `settings` are cached; None when caching is off (cache_dir False)."""
    if cache_dir is False:
        return None
    key = hashlib.sha256(json.dumps({"video": file_sha256(path), **settings}, sort_keys=True).encode()).hexdigest()
    return cache_root(cache_dir) / "detect" / f"{key}.npz"


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


def _save_people(path: Path, dets: list[Detections]) -> None:
    """Every person's detections in one cache entry (arrays stacked on a leading person axis), like `_save`."""
    first = dets[0]
    meta = {"width": first.width, "height": first.height, "fps": first.fps, "people": [d.info for d in dets]}
    with contextlib.suppress(OSError, MimicError):
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, times=first.times, image=np.stack([d.image for d in dets]),
                     world=np.stack([d.world for d in dets]), present=np.stack([d.present for d in dets]),
                     meta_json=json.dumps(meta))


def _load_people(path: Path, info: VideoInfo, settings: dict[str, Any]) -> list[Detections] | None:
    """The cached people at `path` if the entry is valid for these settings, else None (a bad entry is deleted)."""
    if not path.is_file():
        return None
    dets: list[Detections] = []
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta_json"]))
            arrays = {name: data[name] for name in ("times", "image", "world", "present")}
        people = meta["people"]
        if not isinstance(people, list) or not people or any(len(arrays[n]) != len(people)
                                                              for n in ("image", "world", "present")):
            raise ValueError("people")
        for k, person_info in enumerate(people):
            det = Detections(times=arrays["times"], image=arrays["image"][k], world=arrays["world"][k],
                             present=arrays["present"][k], width=int(meta["width"]), height=int(meta["height"]),
                             fps=float(meta["fps"]), info=dict(person_info))
            dets.append(det)
        problem = next((p for p in (_cache_problem(d, settings) for d in dets) if p), "")
    except Exception as exc:  # noqa: BLE001 - as in _load
        problem = f"unreadable ({type(exc).__name__})"
    if problem:
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    for det in dets:
        det.info["video"] = _video_json(info)
    return dets


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
