"""The hands-and-face pass (core.hands_face2d) over a long clip in two processes: a child process takes the second
half of the frames while this one takes the first, and the halves are joined frame by frame.

Why: MediaPipe's graphs hold Python's GIL, so threads cannot share the work, and the pass costs about as much as
body detection. Unlike body tracking, nothing carries over from one frame to the next but MediaPipe's own smoothing
inside a crop (the crops come from the body's landmarks, known for every frame), so the halves join exactly where
they meet. If the child fails in any way, this process does the second half itself, as one process would have.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from core import child_process
from core.detections import Detections
from core.progress import NullReporter, Reporter, ScaledReporter

MIN_SPAN_S = 8.0  # shorter spans run in one process (a child's start-up, ~2 s, would not pay)
CHILD_START_S = 2.0  # the child's start-up (Python, MediaPipe, graphs): this process takes that much more
ROOT = Path(__file__).resolve().parent.parent  # where `python -m core.hands_face_split` runs
ARRAYS = ("hands_image", "hands_world", "hand_score", "face_present")


def split_frame(det: Detections, work: np.ndarray) -> int | None:
    """The first frame of the child's half of the frames to process (`work`, indices), None to use one process."""
    if len(work) < 2 or (os.cpu_count() or 1) < 2 or os.environ.get("MIMIC_HANDS_FACE_PROCESSES") == "1":
        return None
    span = (det.times[work[-1]] - det.times[work[0]])
    if span < MIN_SPAN_S:
        return None
    share = 0.5 + 0.5 * CHILD_START_S / span  # both halves should end together
    return int(work[min(len(work) - 1, int(round(share * len(work))))])


def run_split(path: Path, det: Detections, hands: bool, face: bool, settings: Any, reporter: Reporter,
              run: Any) -> Any:
    """`run(path, det, hands, face, settings, reporter)` (core.hands_face2d._run) over det's frames, the second
    half in a child process where split_frame says so."""
    work = np.flatnonzero(det.present)
    split = split_frame(det, work)
    if split is None:
        return run(path, det, hands, face, settings, reporter)
    first, second = _only(det, 0, split), _only(det, split, det.num_frames)
    options = {"hands": hands, "face": face, "settings": dataclasses.asdict(settings)}
    child = child_process.start("core.hands_face_split", [str(path), json.dumps(options)], ROOT, stdin=True)
    try:
        assert child.stdin is not None
        message = _det_bytes(second)
        try:
            child.stdin.write(len(message).to_bytes(8, "little") + message)
            child.stdin.flush()  # stdin stays open: the child stops when it closes (this process gone)
            started = True
        except OSError:  # the child is already gone
            started = False
        mine = run(path, first, hands, face, settings, ScaledReporter(reporter, det.num_frames / max(split, 1)))
        theirs = _receive(child, second.num_frames) if started else None
        processes = 2
        if theirs is None:
            theirs, processes = run(path, second, hands, face, settings, NullReporter()), 1
        return _join(mine, theirs, split, processes)
    finally:
        child_process.end(child)


def _only(det: Detections, lo: int, hi: int) -> Detections:
    """det with the person marked present only in frames lo..hi-1 (the others are not processed)."""
    keep = np.zeros(det.num_frames, bool)
    keep[lo:hi] = True
    return replace(det, present=det.present & keep)


def _det_bytes(det: Detections) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, times=det.times, image=det.image, world=det.world, present=det.present,
             meta_json=json.dumps({"width": det.width, "height": det.height, "fps": det.fps}))
    return buffer.getvalue()


def _read_det(data: bytes) -> Detections:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta_json"]))
        return Detections(times=npz["times"], image=npz["image"], world=npz["world"], present=npz["present"],
                          width=int(meta["width"]), height=int(meta["height"]), fps=float(meta["fps"]), info={})


def _receive(child: subprocess.Popen[bytes], frames: int) -> Any:
    """The child's HandFaceDetections; None if it failed or sent something malformed."""
    from core.hands_face2d import HandFaceDetections

    got = child_process.receive(child, (*ARRAYS, "face_image", "meta_json"))
    if got is None or not all(name in got for name in (*ARRAYS, "meta_json")):
        return None
    if got["hands_image"].shape[:1] != (frames,):
        return None
    try:
        info = json.loads(str(got.pop("meta_json")))
    except ValueError:
        return None
    return HandFaceDetections(face_image=got.pop("face_image", None), info=info, **got)


def _join(first: Any, second: Any, split: int, processes: int) -> Any:
    """The first half's frames before `split`, the second's from it on; counts in info added up; info["processes"]:
    how many processes did the work (1 when the child failed)."""
    out = replace(first)
    for name in (*ARRAYS, "face_image"):
        a, b = getattr(first, name), getattr(second, name)
        if a is not None and b is not None:
            joined = a.copy()
            joined[split:] = b[split:]
            setattr(out, name, joined)
    info = dict(first.info)
    for key, value in second.info.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("frames", "fps"):
            info[key] = info.get(key, 0) + value if key != "seconds" else max(info.get(key, 0), value)
        elif isinstance(value, list) and all(isinstance(v, int) for v in value) and key in info:
            info[key] = [x + y for x, y in zip(info[key], value)]
    info["frames_with_person"] = first.info.get("frames_with_person", 0) + second.info.get("frames_with_person", 0)
    info["processes"] = processes
    out.info = info
    return out


def main(argv: list[str]) -> int:
    """The child: `python -m core.hands_face_split VIDEO OPTIONS_JSON`, the body's Detections as a length-prefixed
    .npz on stdin; writes the result as an .npz on stdout; exit 1 (nothing written) on any failure. It stops when
    stdin closes."""
    from core.common.signals import interrupt_when_stdin_closes
    from core.hands_face2d import HandFaceSettings, _run

    try:
        path, options = Path(argv[0]), json.loads(argv[1])
        det = _read_det(_read_message(sys.stdin.buffer))
        interrupt_when_stdin_closes()
        result = _run(path, det, bool(options["hands"]), bool(options["face"]),
                      HandFaceSettings(**options["settings"]), NullReporter())
        arrays = {name: getattr(result, name) for name in ARRAYS}
        if result.face_image is not None:
            arrays["face_image"] = result.face_image
        child_process.send(sys.stdout.buffer, meta_json=json.dumps(result.info, default=str), **arrays)
    except BaseException:  # noqa: BLE001 - the parent does this half itself
        return 1
    return 0


def _read_message(stream: Any) -> bytes:
    """One length-prefixed message (8 bytes little-endian, then the bytes) from a stream that stays open."""
    size = int.from_bytes(stream.read(8), "little")
    data = stream.read(size)
    if len(data) != size:
        raise EOFError("the parent closed the pipe before the whole message")
    return data


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(code)
