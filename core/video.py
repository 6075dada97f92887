"""Video decoding with OpenCV: upright RGB frames with their real timestamps, decoded in a background thread."""

from __future__ import annotations

import contextlib
import math
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.common.errors import BadRange, DamagedVideo, EmptyClip, InputNotFound, NotAVideo

QUEUE_FRAMES = 8  # decoded frames buffered ahead of the consumer (bounded: 8 × a 4K frame ≈ 200 MB at most)
SEEK_PREROLL_S = 1.0  # seek this far before start_s, then skip forward by timestamp (exact for variable frame rate)
TIME_EPS_S = 1e-3  # timestamps are rounded to the container's time base; compare range ends with this slack
#: A clip that stops decoding more than this before the end its container promises is damaged: so many frames,
#: or this share of the range, whichever is more (container durations of healthy files are off by a frame or two).
SHORTFALL_FRAMES, SHORTFALL_SHARE = 3, 0.02
#: Below this many frames per second a clip cannot be motion-captured; a container reporting less (e.g. 1 fps, the
#: decoder's guess when every frame duration is 0) has damaged timing, or is a time-lapse.
MIN_FPS = 5.0
_PARTIAL_FIX = "Re-export or re-copy the file, or pass --allow-partial to convert the part that decodes."
_FIX_FORMAT = "Convert it to MP4 (H.264), e.g. `ffmpeg -i in.mov -c:v libx264 out.mp4`, or pick another file."


@dataclass(frozen=True)
class VideoInfo:
    """What a video is. width, height: pixels of the upright frame (after rotation). fps: the container's
    average frame rate. duration_s: frame_count / fps. rotation_deg: clockwise display rotation from the
    container's metadata (phones), already applied to decoded frames."""

    path: Path
    width: int
    height: int
    fps: float
    frame_count: int
    duration_s: float
    rotation_deg: int


@dataclass
class Frame:
    """One decoded frame. index: 0-based frame number in the video. time_s: its presentation timestamp,
    seconds from the video's start. rgb: (H, W, 3) uint8, upright."""

    index: int
    time_s: float
    rgb: np.ndarray


def _open(path: Path) -> cv2.VideoCapture:
    """An opened capture with rotation metadata applied (opencv-python 4.11 leaves it off by default)."""
    if path.is_dir():
        raise NotAVideo(f"{path} is a folder, not a video.", "Give one video file (batch converts whole folders).")
    if not path.is_file():
        raise InputNotFound(f"Video {path} does not exist.", "Check the path and the file name.")
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        if _is_empty_mp4(path):
            raise EmptyClip(f"{path} is a video file with no frames in it.", "Record or export the clip again.")
        raise NotAVideo(f"{path} is not a video that can be read.", _FIX_FORMAT)
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    return cap


def _is_empty_mp4(path: Path) -> bool:
    """True for an MP4/MOV container whose media data is empty (a recording stopped at once), which FFmpeg
    refuses to open at all; we walk its top-level boxes to tell it apart from a file that is not a video."""
    with open(path, "rb") as fh:
        data = fh.read(1 << 16)
    if data[4:8] != b"ftyp":
        return False
    pos, media = 0, 0
    while pos + 8 <= len(data):
        size, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        if size < 8:
            return False
        if kind == b"mdat":
            media += size - 8
        pos += size
    return media == 0


def probe(path: Path | str) -> VideoInfo:
    """Size, frame rate, length and rotation of the video at `path`; decodes its first frame to be sure it reads."""
    path = Path(path)
    cap = _open(path)
    try:
        fps = cap.get(cv2.CAP_PROP_FPS)
        frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        rotation = int(round(cap.get(cv2.CAP_PROP_ORIENTATION_META))) % 360
        ok, first = cap.read()
        if not ok or first is None:
            if frame_count <= 0:
                raise EmptyClip(f"{path} has no frames.", "Record or export the clip again.")
            raise NotAVideo(f"{path} has {frame_count} frames but none could be decoded.", _FIX_FORMAT)
        if not math.isfinite(fps) or fps <= 0:
            fps = 30.0
        if fps < MIN_FPS:
            raise DamagedVideo(f"{path} reports {fps:g} frames per second: its frame timing is damaged, or it is "
                               f"too slow for motion capture (Mimic needs at least {MIN_FPS:g}).",
                               "Re-mux the file, e.g. `ffmpeg -i in.mp4 -c copy out.mp4`, or record at 24 fps or more.")
        if frame_count <= 0:  # containers without a frame count: count by decoding
            frame_count = 1
            while cap.grab():
                frame_count += 1
        height, width = first.shape[:2]
    finally:
        cap.release()
    return VideoInfo(path, int(width), int(height), float(fps), frame_count, frame_count / fps, rotation)


def check_range(info: VideoInfo, start_s: float | None, end_s: float | None) -> tuple[float, float]:
    """The time range [start, end) in seconds that `start_s`/`end_s` select; end is clamped to the video's end."""
    start = 0.0 if start_s is None else float(start_s)
    end = info.duration_s if end_s is None else min(float(end_s), info.duration_s)
    if not math.isfinite(start) or start < 0:
        raise BadRange(f"Start {start_s} s is not a time in the video.", "Use a start of 0 s or more.")
    if start >= info.duration_s:
        raise BadRange(
            f"Start {start:g} s is at or past the end of {info.path.name} ({info.duration_s:.2f} s).",
            f"Use a start below {info.duration_s:.2f} s.",
        )
    if end_s is not None and float(end_s) <= start:
        raise BadRange(f"End {end_s} s is not after start {start:g} s.", "Use an end later than the start.")
    return start, end


def iter_frames(path: Path | str, start_s: float | None = None, end_s: float | None = None) -> Iterator[Frame]:
    """Frames with start_s <= time_s < end_s, decoded ahead in a background thread (bounded queue).

    Validates the file and the range before returning (raises InputNotFound, NotAVideo, EmptyClip, BadRange).
    Close the iterator (or exhaust it) to stop the decoder thread; `contextlib.closing` makes that certain.
    """
    info = probe(path)
    start, end = check_range(info, start_s, end_s)
    return frames_of(info, start, end)


def frames_of(info: VideoInfo, start: float, end: float, allow_partial: bool = False,
              on_warning: Callable[[str], None] | None = None) -> Iterator[Frame]:
    """iter_frames for a video already probed and a range already checked (check_range).

    A clip that stops decoding well before its container's end, or whose timestamps never advance, raises
    DamagedVideo once the decodable frames have been yielded; with allow_partial the shortfall goes to
    `on_warning` instead. Repeated or backward timestamps are reported to `on_warning` (resampling drops them)."""
    out: queue.Queue[object] = queue.Queue(maxsize=QUEUE_FRAMES)
    stop = threading.Event()
    thread = threading.Thread(
        target=_decode, args=(info, start, end, out, stop, allow_partial), name=f"mimic-decode-{info.path.name}",
        daemon=True,
    )
    thread.start()
    try:
        while True:
            item = out.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, str):
                if on_warning is not None:
                    on_warning(item)
                continue
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):  # unblock a producer waiting on a full queue
            while True:
                out.get_nowait()
        thread.join(timeout=5.0)


_END = object()


def _check_decoded(info: VideoInfo, start: float, end: float, reached_end: bool, last: float, decoded: int,
                   stalled: int, allow_partial: bool, put: Callable[[object], bool]) -> None:
    """After decoding: raise DamagedVideo (or, with allow_partial, put a warning) when the frames stopped well short
    of the range's end or their timestamps never advanced; warn about repeated or backward timestamps."""
    if decoded > 1 and stalled == decoded - 1:
        raise DamagedVideo(f"{info.path}: the timestamps of its {decoded} frames do not advance (all at "
                           f"{last:.2f} s).", "Re-mux the file, e.g. `ffmpeg -i in.mp4 -c copy out.mp4`.")
    if stalled:
        put(f"{info.path.name}: {stalled} frames repeat or go back in time; they were left out")
    promised = min(end, info.duration_s)
    slack = max(SHORTFALL_FRAMES / info.fps, SHORTFALL_SHARE * (promised - start))
    if reached_end or (decoded and last >= promised - slack):
        return
    got = f"decoding stopped at {last:.2f} s" if decoded else "no frame of the range decoded"
    message = (f"{info.path.name} is damaged or truncated: its container promises frames up to {promised:.2f} s "
               f"but {got} ({decoded} of about {round((promised - start) * info.fps)} frames)")
    if not allow_partial:
        raise DamagedVideo(message + ".", _PARTIAL_FIX)
    put(message + "; converting the part that decodes (--allow-partial)")


def _decode(info: VideoInfo, start: float, end: float, out: queue.Queue[object], stop: threading.Event,
            allow_partial: bool = False) -> None:
    """Decoder thread: puts Frames and warnings (str), then _END, or the exception that stopped it. cv2 releases the
    GIL while decoding."""

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    cap: cv2.VideoCapture | None = None
    try:
        cap = _open(info.path)
        if start > SEEK_PREROLL_S:
            cap.set(cv2.CAP_PROP_POS_MSEC, (start - SEEK_PREROLL_S) * 1000.0)
        reached_end, last, decoded, stalled = False, -math.inf, 0, 0
        while not stop.is_set() and cap.grab():
            time_s = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if not math.isfinite(time_s):
                time_s = last if decoded else 0.0
            if time_s < start - TIME_EPS_S:
                continue
            if time_s >= end - TIME_EPS_S:
                reached_end = True
                break
            ok, bgr = cap.retrieve()
            if not ok:
                if not allow_partial:
                    raise DamagedVideo(f"{info.path} could not be decoded at {time_s:.2f} s.", _PARTIAL_FIX)
                put(f"{info.path.name} could not be decoded from {time_s:.2f} s on: converted up to there")
                break
            stalled += decoded > 0 and time_s <= last
            last, decoded = max(last, time_s), decoded + 1
            index = int(cap.get(cv2.CAP_PROP_POS_FRAMES)) - 1
            if not put(Frame(index, time_s, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))):
                return
        if stop.is_set():
            return
        _check_decoded(info, start, end, reached_end, last, decoded, stalled, allow_partial, put)
        put(_END)
    except BaseException as exc:  # hand every failure to the consumer, which re-raises it
        put(exc)
    finally:
        if cap is not None:
            cap.release()
