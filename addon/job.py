"""Run the Mimic core as a subprocess and follow its JSON-lines progress (protocol: core/progress.py).

Plain Python, no bpy: the modal operator polls a `CoreJob` on a timer, `execute` and the batch wait on it, and
tests drive it directly. Blender's Python never imports the core's heavy packages; the core runs in an external
interpreter (see interpreter.py) with the extension root as its working directory.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CoreCancelled, CoreError

#: The core's stages in order (core.progress.STAGES) with their share of the overall progress bar: detection
#: (decoding + MediaPipe) is nearly all of a conversion's time; the rest takes well under a second.
STAGE_WEIGHTS = {"detect": 0.9, "lift": 0.04, "filter": 0.02, "solve": 0.02, "write": 0.02}
#: With --hands or --face, the second pass over the video (hands_face) takes about as long as detection.
STAGE_WEIGHTS_HANDS_FACE = {"detect": 0.45, "hands_face": 0.45, "lift": 0.04, "filter": 0.02, "solve": 0.02,
                            "fingers": 0.0, "face": 0.0, "write": 0.02}


def stage_weights(argv: list[str]) -> dict[str, float]:
    """The progress bar's share per stage for a core run with these arguments."""
    return STAGE_WEIGHTS_HANDS_FACE if {"--hands", "--face"} & set(argv) else STAGE_WEIGHTS
PROTOCOL_VERSION = 1
USAGE_ERROR = 2  # argparse's exit code: the core was given an option it refuses


@dataclass(frozen=True)
class CoreOptions:
    """The core CLI's options. start_s/end_s: seconds (None = clip start/end). person: "largest", "left", "right"
    or an index counted from the left. cutoff_hz: smoothing low-pass cutoff, 0 = off. lifter: None = default.
    use_hands / use_face: capture fingers / facial expressions too (each a second pass over the video).
    foot_lock: "auto", "grounding" or "off" (core.foot_lock). solve: "clip" or "frame" (core.clip_solve)."""

    start_s: float | None = None
    end_s: float | None = None
    person: str = "largest"
    cutoff_hz: float = 6.0
    lifter: str | None = None
    overwrite: bool = True
    use_hands: bool = False
    use_face: bool = False
    foot_lock: str = "auto"
    solve: str = "clip"

    def to_args(self) -> list[str]:
        args: list[str] = []
        if self.start_s is not None:
            args += ["--start", f"{self.start_s:g}"]
        if self.end_s is not None:
            args += ["--end", f"{self.end_s:g}"]
        args += ["--person", str(self.person), "--cutoff", f"{self.cutoff_hz:g}"]
        if self.lifter:
            args += ["--lifter", self.lifter]
        if self.overwrite:
            args.append("--overwrite")
        args += ["--hands"] * self.use_hands + ["--face"] * self.use_face
        args += ["--foot-lock", self.foot_lock, "--solve", self.solve]
        return args


@dataclass
class JobState:
    """What the core has reported so far. fraction: overall 0..1 (by `weights`, see stage_weights); stages: every
    stage entered, in order (a poll may apply several lines at once)."""

    stage: str = "starting"
    frame: int = 0
    total: int = 0
    fraction: float = 0.0
    warnings: list[str] = field(default_factory=list)
    stages: list[tuple[str, int]] = field(default_factory=list)
    done: dict[str, object] | None = None
    error: dict[str, object] | None = None
    returncode: int | None = None
    weights: dict[str, float] = field(default_factory=lambda: STAGE_WEIGHTS)

    @property
    def label(self) -> str:
        if self.total:
            return f"{self.stage} {self.frame}/{self.total}"
        return self.stage


#: Jobs still running; stopped when this process exits, since they run in their own process group.
_LIVE: weakref.WeakSet[CoreJob] = weakref.WeakSet()


@atexit.register
def cancel_all() -> None:
    """Stop every running core subprocess (Blender quitting, the add-on being disabled)."""
    for job in list(_LIVE):
        job.cancel()


def core_command(python: str | Path, video: str | Path, output: str | Path, options: CoreOptions) -> list[str]:
    """The argv that converts `video` into `output` (.npz or .bvh) with JSON-lines progress."""
    return [str(python), "-m", "core", str(video), "-o", str(output), "--progress", "json", "--watch-stdin",
            *options.to_args()]


class CoreJob:
    """One core subprocess: start(), then poll() until it returns False (or wait()), then result().

    Output lines are read by a thread into a queue, so poll() never blocks Blender's UI.
    """

    def __init__(self, python: str | Path, video: str | Path, output: str | Path, options: CoreOptions = CoreOptions(),
                 root: str | Path | None = None, env: dict[str, str] | None = None) -> None:
        self._setup(core_command(python, Path(video).resolve(), Path(output).resolve(), options), root, env)
        self.output: Path | None = Path(output).resolve()

    @classmethod
    def from_argv(cls, argv: list[str], root: str | Path | None = None,
                  env: dict[str, str] | None = None) -> CoreJob:
        """A job running any core command line speaking the JSON-lines protocol (`python -m core live ...`); it
        writes no output file. Messages that are not progress go to `on_message`."""
        job = cls.__new__(cls)
        job._setup(list(argv), root, env)
        job.output = None
        return job

    def _setup(self, argv: list[str], root: str | Path | None, env: dict[str, str] | None) -> None:
        from .interpreter import EXTENSION_ROOT

        self.argv = argv
        self.root = Path(root) if root is not None else EXTENSION_ROOT
        self.env = env
        #: Called (in poll(), on the caller's thread) with each JSON message that is not progress, e.g. live poses.
        self.on_message: Callable[[dict[str, object]], None] | None = None
        self.state = JobState(weights=stage_weights(argv))
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=20)
        self._cancelled = False
        self._threads: list[threading.Thread] = []

    @property
    def running(self) -> bool:
        return self._proc is not None and self.state.returncode is None

    def start(self) -> CoreJob:
        """Start the subprocess (in its own process group, so cancel() stops all of it)."""
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        # Blender's own Python settings must not leak into the external interpreter.
        for name in ("PYTHONHOME", "PYTHONPATH"):
            env.pop(name, None)
        kwargs: dict[str, object] = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
        else:
            kwargs["start_new_session"] = True
        try:
            # stdin stays an open pipe: when Blender dies without cleaning up, it closes and the core stops.
            self._proc = subprocess.Popen(self.argv, cwd=self.root, env=env, stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          encoding="utf-8", errors="replace", bufsize=1, **kwargs)
        except OSError as exc:
            raise CoreError(f"Cannot start the Mimic core with {self.argv[0]} ({exc.strerror}). Set a working "
                            "Python in Preferences > Add-ons > Mimic and press Check.", "CoreNotStarted") from exc
        _LIVE.add(self)
        self._threads = [threading.Thread(target=self._pump, args=(self._proc.stdout, True), daemon=True),
                         threading.Thread(target=self._pump, args=(self._proc.stderr, False), daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def _pump(self, stream: object, is_stdout: bool) -> None:
        for line in stream:  # type: ignore[attr-defined]
            if is_stdout:
                self._lines.put(line)
            else:
                self._stderr.append(line.rstrip())
        if is_stdout:
            self._lines.put(None)

    def poll(self) -> bool:
        """Apply every line the core has printed so far; True while the job is still running."""
        if self._proc is None:
            raise RuntimeError("CoreJob.poll() before start()")
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self._finish()
                break
            self._apply(line)
        return self.state.returncode is None

    def _apply(self, line: str) -> None:
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            self._stderr.append(line.rstrip())  # stray output from a library: keep it for the error message
            return
        if not isinstance(msg, dict):
            return
        st = self.state
        if "stage" in msg:
            st.stage, st.frame, st.total = str(msg["stage"]), int(msg.get("frame", 0)), int(msg.get("total", 0))
            if not st.stages or st.stages[-1][0] != st.stage:
                st.stages.append((st.stage, st.total))
            within = st.frame / st.total if st.total else 0.0
            if st.stage in st.weights:
                names = list(st.weights)
                before = sum(st.weights[n] for n in names[:names.index(st.stage)])
                st.fraction = max(st.fraction, min(before + within * st.weights[st.stage], 1.0))
        elif "warning" in msg:
            st.warnings.append(str(msg["warning"]))
        elif msg.get("done"):
            st.done, st.fraction = msg, 1.0
        elif "error" in msg:
            st.error = msg["error"] if isinstance(msg["error"], dict) else {"message": str(msg["error"])}
        elif "protocol" in msg and msg["protocol"] != PROTOCOL_VERSION:
            # A new protocol number is an incompatible change: stop rather than misread the core.
            st.error = {"type": "ProtocolMismatch", "exit_code": 1,
                        "message": f"The Mimic core speaks progress protocol {msg['protocol']}; this add-on reads "
                                   f"protocol {PROTOCOL_VERSION}. Install the same Mimic version of core and add-on."}
            self._kill()
        elif self.on_message is not None:
            self.on_message(msg)

    def _finish(self) -> None:
        assert self._proc is not None
        self.state.returncode = self._proc.wait()
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        _LIVE.discard(self)
        for thread in self._threads:
            thread.join(timeout=5.0)

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> Path:
        """Block until the core ends (or `timeout` seconds, then cancel) and return result()."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll():
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                raise CoreError(f"The core took longer than {timeout:g} s and was stopped.", "Timeout")
            time.sleep(interval)
        return self.result()

    def cancel(self) -> None:
        """Stop the subprocess (and its children) now; result() then raises CoreCancelled."""
        self._cancelled = True
        if self._proc is None:
            return
        self._kill()
        while self.poll():
            time.sleep(0.01)

    def _kill(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            if sys.platform == "win32":
                proc.kill()
            else:
                os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()

    def result(self) -> Path:
        """The output file of a finished job; raises CoreCancelled or CoreError with the core's message."""
        st = self.state
        if self._cancelled:
            raise CoreCancelled()
        if st.returncode is None:
            raise RuntimeError("CoreJob.result() before the job ended")
        if st.error is not None:
            raise CoreError(str(st.error.get("message", "The core failed.")), str(st.error.get("type", "CoreError")),
                            int(st.error.get("exit_code", st.returncode or 1)))  # type: ignore[arg-type]
        lines = [line.strip() for line in self._stderr if line.strip()]
        last = lines[-1][-300:] if lines else "no message"  # a traceback's (or argparse's) last line says why
        if st.returncode == USAGE_ERROR:
            raise CoreError(f"The Mimic core refused an option ({last}). Correct that option.", "UsageError",
                            USAGE_ERROR)
        if st.returncode != 0 or st.done is None:
            raise CoreError(f"The Mimic core stopped with exit code {st.returncode} ({last}). "
                            "Press Check in Preferences > Add-ons > Mimic to test its Python.", "CoreCrashed",
                            st.returncode or 1)
        return Path(str(st.done.get("output", self.output)))
