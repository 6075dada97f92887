"""Live capture: frames from a camera, or a clip replayed at its own rate, become poses of Mimic's humanoid as they
arrive, sent to VMC receivers (core/vmc.py) and as JSON lines for the Blender add-on.

The path is causal, each pose from the frames up to it:
  frames -> MediaPipe Pose (legacy graph, tracking mode) -> world landmarks in Mimic axes, placed in the scene by
  the pinhole fit of core/lift/mediapipe_world.py -> One-Euro filter (core/one_euro.py) -> ik's solver with the
  skeleton fixed -> local rotations and the root position.
Why MediaPipe's world landmarks and not the learned lifter (the conversion's default): the TCN looks at a window of
frames centred on the one it lifts, so each pose would wait for frames that have not been filmed yet (half its
receptive field), and the conversion's zero-phase smoothing needs the whole clip. MediaPipe's world landmarks are
per frame; the One-Euro filter smooths them with the past only, hard when still and lightly when moving fast.
With --face the main process also runs Face Mesh on a crop around the head the pose found (core.hands_face2d's
placement), and the worker turns it into expression weights frame by frame (core/live_face.py: the same weights as
the conversion's core.face, with a neutral face from the last seconds and a One-Euro filter), sent over VMC as
VRM 0.x blend shapes (rigs/expressions.json's "vmc" names).

Model: `full` (model_complexity 1, the default) is the model the mediapipe wheel ships: ~21 ms a frame on one core
of the development machine, enough for 30 fps. `lite` (0) is faster on paper but MediaPipe downloads it at first
use, which fails offline (WeightsMissing). `heavy` is not offered: too slow for real time on a CPU.

Two processes, because MediaPipe holds Python's GIL while it runs and the solve is ~20 ms of small numpy calls:
in one process they add up to ~45 ms a frame (22 fps). The main process decodes (a thread), paces and runs
MediaPipe; a worker process (`_worker`) filters, solves, sends VMC and prints the pose lines. The worker solves all
the frames waiting for it in one call (the solve's cost hardly depends on the number of frames), so it catches up
instead of falling behind. Frames are dropped, never queued: the newest frame replaces one MediaPipe has not taken
yet, and a replayed clip skips a frame that decoded too late; both count as dropped.

Bone lengths, the camera's tilt and the floor are measured once: from the first frame with a person (so that poses
flow at once), then again over the first CALIBRATION_S seconds with a person (ik.solve on those frames, with its
grounding: feet on Y = 0, the first hips above the origin); after that they stay fixed. The root position is the
Hips joint in that grounded frame, metres, Mimic axes.

JSON lines (with --progress json; the add-on's live mode reads them), after the protocol line:
  {"live": {"joints": [humanoid joint names], "fps": 30.0, "model": "full", "vmc": "127.0.0.1:39539" | null,
            "expressions": [expression names]}}                            expressions: with --face only
  {"skeleton": {"offsets": [[x, y, z], ...]}}   rest offsets (J, 3) metres in the joints' order, before the first
                                                pose and again when the calibration over CALIBRATION_S ends
  {"pose": {"frame": i, "time": s, "latency_ms": x, "root": [x, y, z], "rotations": [[w, x, y, z], ...],
            "expressions": [0..1 per name] | null}}              expressions: with --face only, null without a face
  {"warning": "..."}                                                        at any time
  {"done": true, "frames": n, "fps": f, "dropped": d, "latency_ms": {"median": m, "p95": p},
   "no_person": k, "stopped": null | "SIGINT" | "SIGTERM" | "SIGHUP" | "stdin closed"}      last, or {"error": ...}
frame: the source's frame number (a clip's frame index, a camera's count), so gaps show dropped frames or frames
without a person; time: seconds since the stream's first frame (the clip's timestamps when replaying); latency_ms:
from the moment the frame was read to the moment its pose was sent (VMC; the JSON line when there is no VMC).
Stopping: SIGINT, SIGTERM, SIGHUP and stdin closing (--watch-stdin) end the stream like its end would: the done
line, exit 0 ("stopped" says why). A live stream has no result to lose, and a camera stream ends no other way.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from scipy.spatial.transform import Rotation

from core import ik
from core.common import rotations as quat
from core.common.errors import InputNotFound, Interrupted, WeightsMissing
from core.common.signals import signals_blocked
from core.common.skeleton import Skeleton
from core.lift.mediapipe_world import CameraModel, _fit_translation
from core.one_euro import OneEuro
from core.scipy_rotations import from_wxyz, to_wxyz

MODELS = {"lite": 0, "full": 1}  # --model -> MediaPipe's model_complexity
DEFAULT_MODEL = "full"
CALIBRATION_S = 1.0  # seconds of frames with a person over which bone lengths, tilt and floor are measured
MAX_BATCH = 8  # the worker solves at most this many waiting frames at once; older ones are dropped
READY_TIMEOUT_S = 120.0  # how long the worker may take to start (imports, first solve)
RESULT_TIMEOUT_S = 10.0  # how long the worker may take to finish after the last frame


@dataclass(frozen=True)
class FilterSettings:
    """One-Euro settings. pose_*: the hip-centred landmarks (metres; tuned on sports2d_walk against the
    conversion's 6 Hz zero-phase smoothing: jitter halved, ~2 cm from it). root_*: the landmarks' offset from the
    camera (x, y, depth), whose depth is the noisiest part and is smoothed hardest."""

    pose_min_cutoff_hz: float = 2.0
    pose_beta: float = 10.0
    root_min_cutoff_hz: tuple[float, float, float] = (1.0, 1.0, 0.3)
    root_beta: tuple[float, float, float] = (2.0, 2.0, 0.5)
    d_cutoff_hz: float = 1.0


@dataclass(frozen=True)
class LiveOptions:
    """What `stream` captures and where it sends. camera: a device index, or video: a clip replayed in real time
    (exactly one). vmc: (host, port) or None. seconds: stop after this much stream time (None = until the clip
    ends or a stop). progress: "json", "tqdm" or "none". face: also run MediaPipe Face Mesh on the head and stream
    expression weights (core/live_face.py). watch_stdin is the CLI's business (main thread)."""

    camera: int | None = None
    video: Path | None = None
    vmc: tuple[str, int] | None = None
    seconds: float | None = None
    model: str = DEFAULT_MODEL
    progress: str = "json"
    filters: FilterSettings = field(default_factory=FilterSettings)
    face: bool = False


@dataclass
class LiveResult:
    """How a stream went: poses sent, their rate (poses/s between the first and the last), frames dropped,
    latency (frame read -> pose sent) median and 95th percentile in ms, frames without a person, why it stopped."""

    frames: int = 0
    fps: float = 0.0
    dropped: int = 0
    latency_median_ms: float = float("nan")
    latency_p95_ms: float = float("nan")
    no_person: int = 0
    stopped: str | None = None

    def done_fields(self) -> dict[str, Any]:
        """The fields of the done line."""
        def ms(x: float) -> float | None:
            return round(x, 2) if math.isfinite(x) else None

        return {"frames": self.frames, "fps": round(self.fps, 3), "dropped": self.dropped,
                "latency_ms": {"median": ms(self.latency_median_ms), "p95": ms(self.latency_p95_ms)},
                "no_person": self.no_person, "stopped": self.stopped}

    def summary(self) -> str:
        return (f"live: {self.frames} poses at {self.fps:.1f} fps, {self.dropped} frames dropped, "
                f"{self.no_person} without a person, latency median {self.latency_median_ms:.0f} ms, "
                f"p95 {self.latency_p95_ms:.0f} ms" + (f" (stopped: {self.stopped})" if self.stopped else ""))


def emit(obj: dict[str, Any], stream: IO[str] | None = None) -> bool:
    """Write one JSON line and flush; False if the reader has gone (the stream is closed)."""
    stream = stream or sys.stdout
    try:
        stream.write(json.dumps(obj) + "\n")  # one write of < PIPE_BUF bytes: lines of two processes never mix
        stream.flush()
        return True
    except (OSError, ValueError):  # BrokenPipeError; ValueError: I/O on a closed file
        return False


# ------------------------------------------------------------------------------------------ the per-frame solve

class _FrameSolver(ik._Solver):
    """ik's solver (the very same bone solvers) with the skeleton fixed: the per-clip solve rebuilds the scaled
    skeleton and the landmarks' rest points at every step and measures bone lengths, ~45 ms a call; fixed, a call
    costs ~20 ms, nearly whatever the number of frames."""

    def __init__(self, rig: ik.IkRig, skeleton: Skeleton, rest: dict[str, np.ndarray], keypoints: np.ndarray,
                 confidence: np.ndarray) -> None:
        confident = np.all(np.isfinite(keypoints), axis=-1) & (confidence >= ik.MIN_CONFIDENCE)
        super().__init__(rig, rig.skeleton, keypoints, confidence, confident, symmetric=True)
        self._fixed, self._rest = skeleton, rest

    @property
    def skeleton(self) -> Skeleton:
        return self._fixed

    def rest_point(self, name: str) -> np.ndarray:
        return self._rest[name]


@dataclass(frozen=True)
class Calibration:
    """What is measured once: the skeleton (bone lengths), its scales, the landmarks' rest points at those scales,
    and the turn and shift (keypoints -> level.apply(keypoints) + offset) that level the camera's tilt and put the
    floor at Y = 0 with the first hips above the origin."""

    skeleton: Skeleton
    rest: dict[str, np.ndarray]
    level: Rotation
    offset: np.ndarray

    @classmethod
    def measure(cls, keypoints: np.ndarray, confidence: np.ndarray, fps: float, rig: ik.IkRig) -> Calibration:
        """From keypoints (F, 33, 3) metres (camera-centred, Mimic axes) and confidence (F, 33): ik.solve's own
        measurements (scales, level rotation, ground offset)."""
        motion = ik.solve(keypoints, confidence, fps, rig=rig, ground=True)
        meta = motion.meta["ik"]
        return cls(motion.skeleton, _rest_points(rig, meta["scales"]), from_wxyz(np.asarray(meta["level_wxyz"])),
                   np.asarray(meta["ground_offset"], dtype=np.float64))


def _rest_points(rig: ik.IkRig, scales: dict[str, float]) -> dict[str, np.ndarray]:
    """Every point the bone solvers use -> its rest position (3,) at these scales, metres (ik's own rest_point)."""
    k = len(rig.landmark_names)
    probe = ik._Solver(rig, rig.skeleton, np.zeros((1, k, 3)), np.zeros((1, k)), np.zeros((1, k), bool), True)
    probe.scales = dict(scales)
    return {name: probe.rest_point(name) for j in range(rig.skeleton.num_joints) for name in rig.points_of_bone(j)}


def solve_frames(keypoints: np.ndarray, confidence: np.ndarray, calibration: Calibration,
                 rig: ik.IkRig) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (F, 33, 3) metres, levelled and grounded, and confidence (F, 33) -> local rotations (F, J, 4)
    w-x-y-z and root (Hips) positions (F, 3) metres, with the calibrated skeleton. Frames are independent."""
    solver = _FrameSolver(rig, calibration.skeleton, calibration.rest, keypoints, confidence)
    solver.solve_bones()
    sk = calibration.skeleton
    world = np.stack([to_wxyz(solver.world[j]) for j in range(sk.num_joints)], axis=1)
    parent = np.where(sk.parents[None, :, None] >= 0, world[:, np.maximum(sk.parents, 0)], quat.identity(1, 1))
    return quat.canonical(quat.multiply(quat.inverse(parent), world)), np.nan_to_num(solver.root)


class LiveSolver:
    """The worker's state: landmarks of successive frames -> filtered, placed, solved poses.

    fps: the source's frame rate; width, height: its frame size in pixels (the pinhole fit).
    """

    def __init__(self, fps: float, width: int, height: int, filters: FilterSettings = FilterSettings(),
                 camera: CameraModel = CameraModel(), calibration_s: float = CALIBRATION_S) -> None:
        self.rig = ik.load_ik_rig()
        self.fps, self.camera, self.calibration_s = float(fps), camera, calibration_s
        self.focal = camera.focal_px(width, height)
        self.centre = np.array([width / 2.0, height / 2.0])
        f = filters
        self.pose_filter = OneEuro(f.pose_min_cutoff_hz, f.pose_beta, f.d_cutoff_hz)
        self.root_filter = OneEuro(np.array(f.root_min_cutoff_hz), np.array(f.root_beta), f.d_cutoff_hz)
        self.calibration: Calibration | None = None
        self.calibrated = False  # the final calibration (over calibration_s) is done
        self._buffer: list[tuple[float, np.ndarray, np.ndarray]] = []  # time, keypoints, confidence
        self._last_offset: np.ndarray | None = None  # the last camera offset the pinhole fit found
        self._previous: np.ndarray | None = None  # the last rotations sent (J, 4), for sign continuity

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.rig.skeleton.names

    def reset(self) -> None:
        """Forget every frame seen: filters, calibration, continuity."""
        self.pose_filter.reset()
        self.root_filter.reset()
        self.calibration, self.calibrated, self._buffer = None, False, []
        self._last_offset = self._previous = None

    def step(self, times: np.ndarray, world: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Poses of a few successive frames, all with a person.

        times: (F,) seconds; world: (F, 33, 3) MediaPipe world landmarks in Mimic axes (hip-centred, metres);
        image: (F, 33, 3) pixels x, y and visibility. Returns local rotations (F, J, 4) w-x-y-z and root
        positions (F, 3) metres, Mimic axes, grounded.
        """
        visibility = np.nan_to_num(image[..., 2])
        weight = np.where(visibility >= self.camera.min_visibility, visibility, 0.0)
        offsets = _fit_translation(world, image[..., :2], weight, self.focal, self.centre)  # (F, 3) x, y, -depth
        keypoints = np.empty_like(world)
        for i, t in enumerate(times):  # the filters are recursive: one sample after another (a few, 33 x 3 each)
            if np.all(np.isfinite(offsets[i])) and offsets[i, 2] < 0:
                self._last_offset = offsets[i]
            root = self.root_filter(self._last_offset if self._last_offset is not None else np.zeros(3), t)
            keypoints[i] = self.pose_filter(world[i], t) + root
        self._calibrate(times, keypoints, visibility)
        assert self.calibration is not None
        cal = self.calibration
        flat = cal.level.apply(keypoints.reshape(-1, 3)).reshape(keypoints.shape) + cal.offset
        rotations, root = solve_frames(flat, visibility, cal, self.rig)
        if self._previous is not None:  # the same hemisphere as the frame before, for readers that interpolate
            rotations = quat.make_continuous(np.concatenate([self._previous[None], rotations]))[1:]
        self._previous = rotations[-1]
        return rotations, root

    def _calibrate(self, times: np.ndarray, keypoints: np.ndarray, confidence: np.ndarray) -> None:
        """Measure on the first frame, then once more over the first calibration_s seconds (see the module doc)."""
        if self.calibrated:
            return
        if self.calibration is None:
            self.calibration = Calibration.measure(keypoints[:1], confidence[:1], self.fps, self.rig)
        self._buffer.extend(zip(times, keypoints, confidence))
        if self._buffer[-1][0] - self._buffer[0][0] >= self.calibration_s:
            kp = np.stack([b[1] for b in self._buffer])
            conf = np.stack([b[2] for b in self._buffer])
            self.calibration = Calibration.measure(kp, conf, self.fps, self.rig)
            self.calibrated, self._buffer = True, []


# ------------------------------------------------------------------------------------------------ the worker

@dataclass(frozen=True)
class WorkerConfig:
    """What the worker process needs (picklable)."""

    fps: float
    width: int
    height: int
    vmc: tuple[str, int] | None
    json_lines: bool
    filters: FilterSettings
    face: bool = False


@dataclass
class _Observation:
    """What the main process sends per frame: the source's frame number, when it was read (time.perf_counter(),
    CLOCK_MONOTONIC: the same clock in both processes), its stream time (s), and MediaPipe's world (33, 3) and
    image (33, 3) landmarks, None when no person was found; face: Face Mesh (478, 3) pixels, None without a face
    (or when the face is not asked)."""

    frame: int
    read: float
    time: float
    world: np.ndarray | None
    image: np.ndarray | None
    face: np.ndarray | None = None


def _worker(frames: Any, results: Any, config: WorkerConfig) -> None:
    """The worker process: observations from `frames` until it closes -> poses out; then its statistics on
    `results` ("stats", {...}), or ("error", text). It never sees SIGINT/SIGTERM/SIGHUP (blocked by the parent
    before it started): the main process ends it by closing `frames`, and a main process killed outright closes
    it too."""
    from core.live_face import LiveFace
    from core.vmc import VmcSender, blend_names, frame_bundle

    try:
        solver = LiveSolver(config.fps, config.width, config.height, config.filters)
        names = solver.joint_names
        sender = VmcSender(*config.vmc) if config.vmc else None
        faces = LiveFace() if config.face else None
        vmc_names = blend_names() if faces else {}
        blends = [(k, vmc_names[n]) for k, n in enumerate(faces.names) if n in vmc_names] if faces else []
        _warm_up(solver)
        results.send(("ready",))
    except Exception as exc:  # noqa: BLE001 - reported by the main process as an internal error
        results.send(("error", f"{type(exc).__name__}: {exc}"))
        raise
    latencies: list[float] = []
    first = last = 0.0
    no_person = dropped = 0
    warned = False
    stdout_open = config.json_lines
    sent_calibration: Calibration | None = None
    try:
        while True:
            try:
                batch = [frames.recv()]
                while len(batch) < 4 * MAX_BATCH and frames.poll():
                    batch.append(frames.recv())
            except (EOFError, OSError):
                break  # the main process closed the stream (end or stop), or is gone
            seen = [o for o in batch if o.world is not None]
            no_person += len(batch) - len(seen)
            if len(seen) > MAX_BATCH:
                dropped += len(seen) - MAX_BATCH
                seen = seen[-MAX_BATCH:]
            if not seen:
                continue
            rotations, roots = solver.step(np.array([o.time for o in seen]), np.stack([o.world for o in seen]),
                                           np.stack([o.image for o in seen]))
            offsets = solver.calibration.skeleton.offsets.copy()  # type: ignore[union-attr]
            if stdout_open and solver.calibration is not sent_calibration:  # the bone lengths the poses belong to
                sent_calibration = solver.calibration
                stdout_open = emit({"skeleton": {"offsets": np.round(offsets, 5).tolist()}})
            for obs, rot, root in zip(seen, rotations, roots):
                weights = faces.step(obs.face, obs.time) if faces is not None else None
                if sender is not None:
                    offsets[0] = (0.0, root[1], 0.0)  # the hips' height; the root carries the rest (core/vmc.py)
                    shapes = {name: float(weights[k]) for k, name in blends} if weights is not None else None
                    sender.send(frame_bundle(names, offsets, rot, np.array([root[0], 0.0, root[2]]), obs.time,
                                             shapes))
                    if sender.failed and not warned:
                        warned = True
                        _warn(f"the VMC receiver at {config.vmc[0]}:{config.vmc[1]} refused a frame "  # type: ignore[index]
                              f"({sender.last_error}); still sending", stdout_open)
                now = time.perf_counter()
                latencies.append((now - obs.read) * 1000.0)
                first, last = (first or now), now
                if stdout_open:
                    pose = {"frame": obs.frame, "time": round(obs.time, 4), "latency_ms": round(latencies[-1], 2),
                            "root": np.round(root, 5).tolist(), "rotations": np.round(rot, 6).tolist()}
                    if faces is not None:
                        pose["expressions"] = None if weights is None else np.round(weights, 4).tolist()
                    stdout_open = emit({"pose": pose})
    except Exception as exc:  # noqa: BLE001
        with contextlib.suppress(OSError):
            results.send(("error", f"{type(exc).__name__}: {exc}"))
        raise
    n = len(latencies)
    stats = {"frames": n, "fps": (n - 1) / (last - first) if n > 1 and last > first else 0.0, "dropped": dropped,
             "no_person": no_person,
             "latency_median_ms": float(np.median(latencies)) if n else float("nan"),
             "latency_p95_ms": float(np.percentile(latencies, 95)) if n else float("nan")}
    with contextlib.suppress(OSError):
        results.send(("stats", stats))


def _warm_up(solver: LiveSolver) -> None:
    """One solve of the rest pose, so that the first real frame does not pay for first calls (and the rig is
    known to load); the filters and calibration are reset afterwards."""
    rig = solver.rig
    rest = ik.keypoints_from_pose(quat.identity(1, rig.skeleton.num_joints), rig.skeleton.offsets[None, 0], rig=rig)
    world = rest - rest[:, rig.centre].mean(axis=1, keepdims=True)
    pixels = np.concatenate([solver.centre + world[..., :2] * [1, -1] * solver.focal / 3.0,
                             np.ones((1, world.shape[1], 1))], axis=-1)
    solver.step(np.zeros(1), world, pixels)
    solver.reset()


def _warn(message: str, json_lines: bool) -> None:
    if json_lines:
        emit({"warning": message})
    else:
        print(f"warning: {message}", file=sys.stderr)


# ------------------------------------------------------------------------------------------- the frame source

class _Latest:
    """The newest frame not yet taken: a new one replaces it (counted as dropped). Thread-safe."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: tuple[int, float, float, np.ndarray] | None = None
        self._closed = False
        self.dropped = 0

    def put(self, item: tuple[int, float, float, np.ndarray]) -> None:
        with self._cond:
            self.dropped += self._item is not None
            self._item = item
            self._cond.notify()

    def skip(self) -> None:
        with self._cond:
            self.dropped += 1

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def take(self) -> tuple[int, float, float, np.ndarray] | None:
        """The newest frame (frame number, read time, stream time, RGB), waiting for one; None once the source
        has ended and every frame was taken."""
        with self._cond:
            while self._item is None and not self._closed:
                self._cond.wait(0.1)  # a timeout, so that a signal's handler runs in the main thread
            item, self._item = self._item, None
            return item


class FrameSource:
    """A camera or a clip replayed in real time, read in a thread into a `_Latest` slot.

    fps, width, height: the source's; first: its first frame (H, W, 3) RGB, read at once (to warm MediaPipe up). Raises InputNotFound (no such camera), NotAVideo, EmptyClip, ... at once.
    """

    def __init__(self, camera: int | None, video: Path | None, seconds: float | None,
                 on_warning: Any = None) -> None:
        import cv2

        from core.video import check_range, frames_of, probe

        self.slot = _Latest()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._seconds = seconds
        self._warn = on_warning or (lambda message: None)
        if video is not None:
            self.info = probe(video)
            self._range = check_range(self.info, None, seconds)
            self.fps, self.width, self.height = self.info.fps, self.info.width, self.info.height
            self._cap = None
            with contextlib.closing(frames_of(self.info, *self._range, allow_partial=True)) as frames:
                self.first = next(frames).rgb
            target = self._replay
        else:
            cap = cv2.VideoCapture(int(camera or 0))
            ok, first = cap.read() if cap.isOpened() else (False, None)
            if not ok or first is None:
                cap.release()
                raise InputNotFound(f"Camera {camera} could not be opened.",
                                    "Check that it is connected and not in use by another program, or pick another "
                                    "with --camera N (0 is the first).")
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.fps = float(fps) if math.isfinite(fps) and 0 < fps <= 1000 else 30.0
            self.height, self.width = first.shape[:2]
            self.first = cv2.cvtColor(first, cv2.COLOR_BGR2RGB)
            self._cap = cap
            target = self._camera
        self._thread = threading.Thread(target=self._run, args=(target,), name="mimic-live-source", daemon=True)

    @property
    def dropped(self) -> int:
        return self.slot.dropped

    @property
    def expected_frames(self) -> int | None:
        """Frames a replayed clip will have (None for a camera)."""
        return None if self._cap is not None else round((self._range[1] - self._range[0]) * self.fps)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        if self._cap is not None:
            self._cap.release()

    def _run(self, target: Any) -> None:
        try:
            target()
        except BaseException as exc:  # re-raised by the main thread
            self.error = exc
        finally:
            self.slot.close()

    def _replay(self) -> None:
        """Each frame published when its timestamp comes due on the wall clock; one that decoded more than a
        frame late is skipped (dropped), as a camera would have moved on."""
        from core.video import frames_of

        period = 1.0 / self.fps
        start, end = self._range
        t0 = first = None
        with contextlib.closing(frames_of(self.info, start, end, allow_partial=True, on_warning=self._warn)) as frames:
            for frame in frames:
                if self._stop.is_set():
                    return
                now = time.perf_counter()
                if t0 is None or first is None:
                    t0, first = now, frame.time_s
                due = t0 + (frame.time_s - first)
                if now > due + period:
                    self.slot.skip()
                    continue
                if due > now and self._stop.wait(due - now):
                    return
                self.slot.put((frame.index, time.perf_counter(), frame.time_s - first, frame.rgb))

    def _camera(self) -> None:
        import cv2

        assert self._cap is not None
        t0, n = time.perf_counter(), 0
        while not self._stop.is_set():
            ok, bgr = self._cap.read()
            now = time.perf_counter()
            if not ok or bgr is None:
                self._warn("the camera stopped delivering frames")
                return
            if self._seconds is not None and now - t0 >= self._seconds:
                return
            self.slot.put((n, now, now - t0, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
            n += 1


# ---------------------------------------------------------------------------------------------- the main side

def make_live_pose(model: str) -> Any:
    """MediaPipe Pose in tracking mode with the chosen model; WeightsMissing if it is not installed and cannot be
    fetched (MediaPipe downloads the lite model at first use)."""
    from core.detect2d import PoseSettings, make_pose

    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}: one of {sorted(MODELS)}")
    try:
        with contextlib.redirect_stdout(sys.stderr):  # MediaPipe announces a download on stdout: not our protocol
            return make_pose(False, PoseSettings(model_complexity=MODELS[model]))
    except OSError as exc:
        raise WeightsMissing(f"MediaPipe's {model} pose model is not installed and could not be downloaded "
                             f"({type(exc).__name__}).", "Use --model full (installed with mediapipe), or run once "
                             "with internet access so that MediaPipe fetches it.") from exc


def stop_reason(exc: BaseException) -> str:
    """Why a stop happened, for the done line: the signal's name, or "stdin closed"."""
    if isinstance(exc, Interrupted):
        from core.common.signals import _PARENT_GONE

        return "stdin closed" if _PARENT_GONE.is_set() else signal.Signals(exc.signum).name
    return "SIGINT"  # a plain KeyboardInterrupt: Ctrl-C before our handler was installed


def stream(options: LiveOptions, reporter: Any = None) -> LiveResult:
    """Run a live stream until the clip ends, --seconds pass or a stop (signal, stdin closed); returns its result.

    reporter: the JsonReporter when options.progress == "json" (its protocol line already printed; the header and
    pose lines go to the same stdout), else unused. Raises MimicError subclasses for bad sources or models.
    """
    import multiprocessing

    json_lines = options.progress == "json"
    warn = reporter.warn if json_lines and reporter is not None else (lambda m: print(f"warning: {m}", file=sys.stderr))
    result = LiveResult()
    source = FrameSource(options.camera, options.video, options.seconds, warn)
    config = WorkerConfig(source.fps, source.width, source.height, options.vmc, json_lines, options.filters,
                          options.face)
    ctx = multiprocessing.get_context("spawn")  # never fork a process that runs MediaPipe's threads
    frames_in, frames_out = ctx.Pipe(duplex=False)
    results_in, results_out = ctx.Pipe(duplex=False)
    worker = ctx.Process(target=_worker, args=(frames_in, results_out, config), name="mimic-live-worker",
                         daemon=True)
    pose = bar = mesh = None
    try:
        try:
            with signals_blocked():
                worker.start()
            frames_in.close()
            results_out.close()
            pose = make_live_pose(options.model)
            for _ in range(2):  # MediaPipe's first calls are slow (models prepared): not on the stream's time
                pose.process(source.first)
            pose.reset()
            mesh = _FaceSearch() if options.face else None
            _wait_ready(results_in, worker)
            if json_lines:
                target = f"{options.vmc[0]}:{options.vmc[1]}" if options.vmc else None
                header: dict[str, Any] = {"joints": list(ik.load_ik_rig().skeleton.names), "fps": source.fps,
                                          "model": options.model, "vmc": target}
                if options.face:
                    from core.common.hands import expression_names

                    header["expressions"] = list(expression_names())
                emit({"live": header})
            elif options.progress == "tqdm":
                from tqdm import tqdm

                bar = tqdm(total=source.expected_frames, desc="live", unit="frame", dynamic_ncols=True)
            source.start()
            _pump(source, pose, frames_out, bar, mesh)
        except KeyboardInterrupt as exc:  # Interrupted included: a stop is the stream's normal end
            result.stopped = stop_reason(exc)
        frames_out.close()  # the worker's end of stream
        stats = _collect(results_in, worker)
        if source.error is not None and result.stopped is None:
            raise source.error
    finally:
        source.close()
        if pose is not None:
            pose.close()
        if mesh is not None:
            mesh.close()
        if bar is not None:
            bar.close()
        frames_out.close()
        if worker.is_alive():
            worker.join(timeout=2.0)
        if worker.is_alive():
            worker.kill()
    result.frames, result.fps = int(stats["frames"]), float(stats["fps"])
    result.dropped = source.dropped + int(stats["dropped"])
    result.no_person = int(stats["no_person"])
    result.latency_median_ms, result.latency_p95_ms = stats["latency_median_ms"], stats["latency_p95_ms"]
    return result


def _wait_ready(results: Any, worker: Any) -> None:
    """Wait for the worker's "ready"; an internal error if it failed or died."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not results.poll(0.1):
        if not worker.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the live worker did not start (exit code {worker.exitcode})")
    message = results.recv()
    if message[0] != "ready":
        raise RuntimeError(f"the live worker failed to start: {message[1]}")


class _FaceSearch:
    """Face Mesh (tracking, irises refined) on a crop around the head the pose found, as the conversion's second pass
    places it (core.hands_face2d), one frame at a time."""

    def __init__(self) -> None:
        from core.hands_face2d import SETTINGS, FaceFinder

        self.finder = FaceFinder(SETTINGS)
        blank = np.zeros((SETTINGS.crop_px, SETTINGS.crop_px, 3), np.uint8)
        for _ in range(2):  # the graph's first calls are slow (models prepared): not on the stream's time
            self.finder.graph.process(blank)

    def find(self, rgb: np.ndarray, image: np.ndarray) -> np.ndarray | None:
        """(478, 3) float32 pixels of the face of the person whose pose landmarks are image (33, 3), or None."""
        from core.hands_face2d import face_to_try, head_boxes

        centre, side, extent = head_boxes(image[None])
        if not (np.all(np.isfinite(centre)) and face_to_try(image[None], extent)[0]):
            return None
        found = self.finder.find(rgb, centre[0], float(side[0]))
        return None if found is None else found.astype(np.float32)

    def close(self) -> None:
        self.finder.close()


def _pump(source: FrameSource, pose: Any, frames: Any, bar: Any, mesh: _FaceSearch | None = None) -> None:
    """The main loop: the newest frame -> MediaPipe (pose, and the face when mesh is given) -> the worker, until the
    source ends."""
    from core.person import landmarks

    source_width, source_height = source.width, source.height
    while True:
        item = source.slot.take()
        if item is None:
            return
        index, read, stream_time, rgb = item
        found = landmarks(pose.process(rgb), source_width, source_height)
        face = mesh.find(rgb, found.image) if mesh is not None and found is not None else None
        frames.send(_Observation(index, read, stream_time, None if found is None else found.world.astype(np.float32),
                                 None if found is None else found.image.astype(np.float32), face))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(dropped=source.dropped, refresh=False)


def _collect(results: Any, worker: Any) -> dict[str, Any]:
    """The worker's statistics once it has finished the frames sent to it."""
    deadline = time.monotonic() + RESULT_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if results.poll(0.1):
                message = results.recv()
                if message[0] == "stats":
                    return message[1]
                if message[0] == "ready":  # a stop came before the start was waited for
                    continue
                raise RuntimeError(f"the live worker failed: {message[1]}")
        except (EOFError, OSError):
            break
        if not worker.is_alive() and not results.poll(0):
            break
    raise RuntimeError(f"the live worker ended without its statistics (exit code {worker.exitcode})")
