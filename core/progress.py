"""Progress reporting: a tqdm bar on a terminal, or the JSON-lines protocol that the Blender add-on reads.

JSON-lines protocol (version PROTOCOL_VERSION), one object per line on stdout, flushed:
  {"protocol": 1, "mimic": "0.1.0"}                          first line
  {"stage": "detect", "frame": 120, "total": 900}             progress (stage names: see STAGES)
  {"warning": "..."}                                          something the user should know
  {"done": true, "output": "/abs/path.bvh", "frames": 900}    success, last line
  {"error": {"type": "NoPersonFound", "message": "...", "exit_code": 7}}   failure, last line
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any, Protocol

from core import __version__

PROTOCOL_VERSION = 1
#: detect includes decoding the video; hands_face (a second pass over it), fingers and face only with --hands/--face
STAGES = ("detect", "hands_face", "lift", "filter", "solve", "fingers", "face", "write")


class Reporter(Protocol):
    """What every pipeline stage calls to report progress."""

    def stage(self, name: str, total: int) -> None: ...
    def update(self, frame: int) -> None: ...
    def warn(self, message: str) -> None: ...
    def done(self, **result: Any) -> None: ...
    def error(self, payload: dict[str, Any]) -> None: ...


class NullReporter:
    """Reports nothing: library use and tests."""

    def stage(self, name: str, total: int) -> None: pass
    def update(self, frame: int) -> None: pass
    def warn(self, message: str) -> None: pass
    def done(self, **result: Any) -> None: pass
    def error(self, payload: dict[str, Any]) -> None: pass


class ScaledReporter:
    """A reporter whose frame numbers are shown times `scale`: work split between processes, where this one does a
    part and reports it as the whole (the other part reports nothing)."""

    def __init__(self, reporter: Reporter, scale: float) -> None:
        self._reporter, self._scale = reporter, scale

    def update(self, frame: int) -> None:
        self._reporter.update(int(frame * self._scale))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reporter, name)


class JsonReporter:
    """JSON lines on a stream; progress lines are throttled to at most `rate` per second."""

    def __init__(self, stream: IO[str] | None = None, rate: float = 20.0) -> None:
        self.stream = stream or sys.stdout
        self.min_interval = 1.0 / rate
        self._stage = ""
        self._total = 0
        self._last = 0.0
        self._emit({"protocol": PROTOCOL_VERSION, "mimic": __version__})

    def _emit(self, obj: dict[str, Any]) -> None:
        self.stream.write(json.dumps(obj) + "\n")
        self.stream.flush()

    def stage(self, name: str, total: int) -> None:
        self._stage, self._total, self._last = name, total, time.monotonic()
        self._emit({"stage": name, "frame": 0, "total": total})

    def update(self, frame: int) -> None:
        now = time.monotonic()
        if frame >= self._total or now - self._last >= self.min_interval:
            self._last = now
            self._emit({"stage": self._stage, "frame": frame, "total": self._total})

    def warn(self, message: str) -> None:
        self._emit({"warning": message})

    def done(self, **result: Any) -> None:
        self._emit({"done": True, **result})

    def error(self, payload: dict[str, Any]) -> None:
        self._emit({"error": payload})


class TqdmReporter:
    """A tqdm bar per stage on stderr: stage, frame n/N, fps, ETA."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._bar: Any = None

    def stage(self, name: str, total: int) -> None:
        self._close()
        # delay: stages that finish at once (all but detection, usually) leave no bar behind
        self._bar = self._tqdm(total=total, desc=f"{name:>7}", unit="frame", dynamic_ncols=True, leave=True,
                               delay=0.5)

    def update(self, frame: int) -> None:
        if self._bar is not None:
            self._bar.update(frame - self._bar.n)

    def warn(self, message: str) -> None:
        self._tqdm.write(f"warning: {message}", file=sys.stderr)

    def done(self, **result: Any) -> None:
        self._close()
        print(f"wrote {result.get('output')}", file=sys.stderr)

    def error(self, payload: dict[str, Any]) -> None:
        self._close()  # the CLI prints the message itself, once

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
