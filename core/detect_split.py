"""One person's detection split across two processes: the second half of a long range is tracked by a child
process while this one tracks the first, then the halves are joined where they overlap.

Why: MediaPipe Pose runs on one core (~26 ms a 1080p frame on the development machine) and holds Python's GIL,
so threads cannot share the work; decoding, lifting and solving are cheap beside it. Two processes nearly halve
detection on two cores. The child starts OVERLAP_S before the split, so that its graph has settled (MediaPipe's
tracking smooths over frames) and the two tracks can be compared there: if they follow the same person (both see
the person, or neither, on SAME_PRESENCE of the overlap's frames, and body landmarks are within SAME_PERSON of the
person's size on most frames both see) the child's frames from the split on are used; if not (another person was
chosen, or a small or half-hidden person is seen on other frames), if either process found several people when it
chose whom to follow (the child then stops at once), or if the child failed in any way, this
process tracks the second half itself, as one process would have. The result is then what one process gives, up
to MediaPipe's smoothing over the overlap.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from core import child_process
from core.person import BODY, PersonRule, PersonTracker
from core.progress import NullReporter, Reporter, ScaledReporter
from core.video import VideoInfo, probe

MIN_RANGE_S = 10.0  # shorter ranges are detected in one process (a child's start-up, ~1.5 s, would not pay)
OVERLAP_S = 1.0  # the child starts this long before the split
CHILD_START_FRAMES = 75  # frames this process detects while the child starts (~2 s: Python, MediaPipe, first frames)
SAME_PERSON = 0.1  # × the person's size: mean body-landmark distance under which two tracks are one person
AGREE_SHARE = 0.8  # share of the overlap's frames (seen by both) that must agree
SAME_PRESENCE = 0.95  # share of the overlap's frames where both see the person or neither does
ROOT = Path(__file__).resolve().parent.parent  # where `python -m core.detect_split` runs

Track = tuple[list[float], np.ndarray, np.ndarray]  # times (F,), image (F, 33, 3), world (F, 33, 3); NaN: not seen


def split_point(info: VideoInfo, start: float, end: float) -> float | None:
    """Where to split the range [start, end) seconds between two processes; None to use one."""
    if (os.cpu_count() or 1) < 2 or end - start < MIN_RANGE_S or os.environ.get("MIMIC_DETECT_PROCESSES") == "1":
        return None
    # Both halves should end together: the child also tracks the overlap and first has to start up.
    return (start + end + OVERLAP_S + CHILD_START_FRAMES / info.fps) / 2.0


def track_range(info: VideoInfo, start: float, end: float, rule: PersonRule, reporter: Reporter,
                allow_partial: bool, track: Callable[..., tuple[Track, list[dict[str, Any]], list[str]]]
                ) -> tuple[Track, list[dict[str, Any]], list[str]]:
    """`track(info, start, end, tracker, reporter, allow_partial, close=True)` (detect2d.track_one: the hot loop,
    returning the track, the tracker's candidates and the decoder's warnings) over [start, end), split in two
    processes where split_point says."""
    from core.detect2d import make_pose

    split = split_point(info, start, end)
    if split is None:
        return track(info, start, end, PersonTracker(rule, make_pose, fps=info.fps), reporter, allow_partial)
    child = child_process.start("core.detect_split", [str(info.path), repr(split - OVERLAP_S), repr(end), str(rule),
                                                      "1" if allow_partial else "0", str(os.getpid())], ROOT)
    tracker = None
    try:
        tracker = PersonTracker(rule, make_pose, fps=info.fps)  # after the child's start: it has further to go
        share = (end - start) / (split - start)  # this half's frames, shown as the whole range's progress
        watch = _AlonePerson(ScaledReporter(reporter, share), tracker, child)
        first, candidates, warnings = track(info, start, split, tracker, watch, allow_partial, close=False)
        second = _receive(child) if watch.alone else None
        if second is None or not _same_person(first, second[0], split):  # this tracker carries on, as one would
            second = track(info, split, end, tracker, NullReporter(), allow_partial, close=False)
        reporter.update(round((end - start) * info.fps))
        return _join(first, second[0], split), candidates, warnings + second[2]
    finally:
        if tracker is not None:
            tracker.close()
        child_process.end(child)


class _AlonePerson:
    """The reporter, watching the tracker: once it has chosen whom to follow among several people, the child (which
    would choose again, at the split, maybe someone else) is stopped and this process tracks the whole range."""

    def __init__(self, reporter: Any, tracker: PersonTracker, child: subprocess.Popen[bytes]) -> None:
        self._reporter, self._tracker, self._child = reporter, tracker, child
        self.alone = True

    def update(self, frame: int) -> None:
        if self.alone and len(self._tracker.candidates) > 1:
            self.alone = False
            self._child.kill()
        self._reporter.update(frame)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reporter, name)


def _receive(child: subprocess.Popen[bytes]) -> tuple[Track, list[dict[str, Any]], list[str]] | None:
    """The child's track and warnings (it has no candidates: this process chose the person); None if it failed."""
    got = child_process.receive(child, ("times", "image", "world", "warnings"))
    if got is None or len(got) < 4:
        return None
    times, image, world = got["times"], got["image"], got["world"]
    if not (image.ndim == 3 and image.shape == world.shape == (len(times), image.shape[1], 3) and len(times)):
        return None
    return (times.tolist(), image, world), [], [str(w) for w in got["warnings"]]


def _same_person(first: Track, second: Track, split: float) -> bool:
    """Whether the two tracks follow one person where they overlap (before `split`)."""
    t1, image1, _ = first
    t2, image2, _ = second
    times1 = {round(t, 6): i for i, t in enumerate(t1)}
    pairs = [(times1[round(t, 6)], j) for j, t in enumerate(t2) if t < split and round(t, 6) in times1]
    if not pairs:
        return False
    a = image1[[i for i, _ in pairs]][:, list(BODY), :2]
    b = image2[[j for _, j in pairs]][:, list(BODY), :2]
    seen1, seen2 = np.all(np.isfinite(a), axis=(1, 2)), np.all(np.isfinite(b), axis=(1, 2))
    seen = seen1 & seen2
    if not seen.any() or np.mean(seen1 == seen2) < SAME_PRESENCE:
        return False
    size = np.ptp(a[seen], axis=1).max(axis=-1)  # the person's extent in pixels, per frame
    distance = np.linalg.norm(a[seen] - b[seen], axis=-1).mean(axis=-1)
    return bool(np.mean(distance < SAME_PERSON * size) >= AGREE_SHARE)


def _join(first: Track, second: Track, split: float) -> Track:
    """The first track, then the second's frames from the split on."""
    t2 = np.asarray(second[0])
    keep = t2 >= split - 1e-6
    return (list(first[0]) + t2[keep].tolist(), np.concatenate([first[1], second[1][keep]]),
            np.concatenate([first[2], second[2][keep]]))


def main(argv: list[str]) -> int:
    """The child: `python -m core.detect_split VIDEO START END RULE ALLOW_PARTIAL PARENT_PID` tracks [START, END)
    and writes times, image, world and warnings as an .npz on stdout; exit 1 (nothing written) on any failure."""
    from core.detect2d import make_pose, track_one
    from core.person import parse_person

    try:
        path, start, end, rule, allow_partial, parent = argv
        info = probe(Path(path))
        tracker = PersonTracker(parse_person(rule), make_pose, fps=info.fps)
        (times, image, world), _, warnings = track_one(
            info, float(start), float(end), tracker, _ParentWatch(int(parent), tracker), allow_partial == "1")
        child_process.send(sys.stdout.buffer, times=np.asarray(times), image=image, world=world,
                           warnings=np.asarray(warnings, dtype=str))
    except BaseException:  # noqa: BLE001 - the parent does this half itself and reports what goes wrong
        return 1
    return 0


class _ParentWatch(NullReporter):
    """Reports nothing; stops the child (SystemExit) when its parent process has gone, or as soon as it sees several
    people when choosing whom to follow (it might choose another than the parent's: the parent then does it all)."""

    def __init__(self, parent: int, tracker: PersonTracker) -> None:
        self._parent, self._tracker = parent, tracker

    def update(self, frame: int) -> None:
        if len(self._tracker.candidates) > 1 or (frame % 30 == 0 and os.getppid() != self._parent):
            raise SystemExit(1)


if __name__ == "__main__":
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main(sys.argv[1:]))
