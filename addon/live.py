"""Live mode: the core streams poses (`python -m core live ... --progress json`) and a character follows them.

`LiveSession` (plain Python + numpy, no bpy) runs the core through job.CoreJob and parses its pose lines: the newest
pose is kept for posing, every pose while recording. `apply_pose` poses a character with one frame through the same
maths as offline retargeting (retarget/solve.py: Mimic local rotations -> world, Blender axes, each target bone
relative to its own rest); `record_action` bakes a recorded take the same way into a new action. The retargeting
package imports bpy, so it is imported inside the functions that pose, never at module level.

Stream (JSON lines on the core's stdout, after the protocol line):
  {"live": {"joints": [humanoid joint names], "fps": 30.0, "expressions": [names]}}        once; expressions: --face
  {"skeleton": {"offsets": [[x, y, z], ...]}}         optional, any time: the bone lengths the core measured
  {"pose": {"frame": i, "time": s, "latency_ms": x, "root": [x, y, z], "rotations": [[w, x, y, z], ...],
            "expressions": [0..1 per name] | null}}                          expressions: --face, null without a face
  {"done": true, ...} or {"error": {...}}                                                     last
Poses are in Mimic's axes (Y up, faces +Z, metres), local rotations of rigs/humanoid.json in the header's order.
Expression weights (rigs/expressions.json's names, in the header's order) set the character's shape keys through
addon/face.py's mapping; a take keys them like an offline import's (face.key_weights).
Offsets (also accepted in the header) are rest offsets in that order; without them the skeleton has the default
proportions of rigs/humanoid.json, which sets the character's height above the floor from the root's height.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .common import Motion, skeleton
from .common import rotations as quat
from .errors import CoreCancelled, CoreError
from .job import CoreJob

if TYPE_CHECKING:
    import bpy

    from .face import FaceReport, MeshMatch
    from .retarget import Baked, TargetRig

DEFAULT_FPS = 30.0  # the stream's rate when the header does not say
RATE_WINDOW = 30  # poses over which the received frame rate is measured


@dataclass(frozen=True)
class LiveSource:
    """Where the live core reads frames: a camera index, or a video file played at its own rate. use_vmc: also
    send VMC (OSC) from the core; Blender itself only needs the JSON lines. use_face: also track the face (--face)."""

    camera: int | None = 0
    video: str | None = None
    use_vmc: bool = False
    use_face: bool = False

    def to_args(self) -> list[str]:
        args = ["--video", str(self.video)] if self.video else ["--camera", str(int(self.camera or 0))]
        return args + ([] if self.use_vmc else ["--no-vmc"]) + (["--face"] if self.use_face else [])


def live_command(python: str | Path, source: LiveSource) -> list[str]:
    """The argv of the live core with JSON lines on stdout; --watch-stdin: it ends when Blender's pipe closes, so a
    camera is never held by a core that outlived Blender."""
    return [str(python), "-m", "core", "live", *source.to_args(), "--progress", "json", "--watch-stdin"]


@dataclass(frozen=True)
class LivePose:
    """One received frame. frame: the core's frame index; time: seconds since the stream started; latency_ms: the
    core's capture-to-send delay; root: (3,) metres, Mimic axes; rotations: (J, 4) w-x-y-z local rotations in the
    order of Mimic's humanoid (rigs/humanoid.json; joints the stream lacks are identity); received: monotonic s;
    expressions: (E,) weights 0..1 in the order of LiveSession.expression_names, None without a face (or unusable)."""

    frame: int
    time: float
    latency_ms: float
    root: np.ndarray
    rotations: np.ndarray
    received: float
    expressions: np.ndarray | None = None


@dataclass(frozen=True)
class Take:
    """The poses received while recording, stacked. rotations: (F, J, 4); root: (F, 3); frames: (F,) the core's
    frame indices; times: (F,) seconds; fps: the stream's rate; skeleton: the one the poses belong to;
    expressions: (F, E) weights 0..1 named by expression_names (a frame without a face holds the previous face
    frame's, 0 before the first), None when the stream has no expressions."""

    rotations: np.ndarray
    root: np.ndarray
    frames: np.ndarray
    times: np.ndarray
    fps: float
    skeleton: skeleton.Skeleton
    expressions: np.ndarray | None = None
    expression_names: tuple[str, ...] = ()

    @property
    def num_frames(self) -> int:
        return int(self.rotations.shape[0])


class LiveSession:
    """One live core subprocess: start(), then poll() on a timer (never blocks), take_newest() to pose, stop().

    argv: the command (`live_command(...)`); its JSON lines are read by CoreJob's thread, parsed in poll()."""

    def __init__(self, argv: list[str], root: str | Path | None = None, env: dict[str, str] | None = None) -> None:
        self.skeleton = skeleton.humanoid()
        self.job = CoreJob.from_argv(argv, root, env)
        self.job.on_message = self._on_message
        self.header: dict[str, Any] | None = None
        self.expression_names: list[str] = []  # the header's expression channels (with --face)
        self.fps = DEFAULT_FPS
        self.received = 0  # poses received
        self.skipped = 0  # lines that could not be used (malformed, non-finite, before the header)
        self._order: np.ndarray | None = None  # skeleton joint -> column of the stream's rotations (-1: absent)
        self._newest: LivePose | None = None
        self._arrivals: deque[float] = deque(maxlen=RATE_WINDOW)
        self._take: list[LivePose] | None = None
        self._stopped = False

    # --- the subprocess ---------------------------------------------------------------------------------------------

    def start(self) -> LiveSession:
        self.job.start()
        return self

    @property
    def running(self) -> bool:
        return self.job.running

    @property
    def pid(self) -> int | None:
        proc = self.job._proc
        return proc.pid if proc is not None else None

    def poll(self) -> bool:
        """Parse every line the core has printed so far (non-blocking); True while the core runs."""
        return self.job.poll()

    def stop(self) -> None:
        """End the core subprocess (and its children) now; lines already printed are still parsed."""
        proc = self.job._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._stopped = True
            self.job.cancel()
        else:  # it ended on its own: read what it said last (its error, if any) rather than call it cancelled
            while self.job.poll():
                time.sleep(0.005)

    def error(self) -> CoreError | None:
        """The core's failure once it has ended on its own (its message, or how it crashed); None otherwise."""
        if self._stopped or self.job.state.returncode is None:
            return None
        try:
            self.job.result()
        except CoreCancelled:
            return None
        except CoreError as err:
            return err
        return None

    # --- poses ------------------------------------------------------------------------------------------------------

    def take_newest(self) -> LivePose | None:
        """The newest pose not taken yet (older ones are dropped for posing: the character shows the present)."""
        pose, self._newest = self._newest, None
        return pose

    @property
    def received_fps(self) -> float:
        """Poses per second over the last RATE_WINDOW arrivals (0 before two)."""
        a = self._arrivals
        return (len(a) - 1) / (a[-1] - a[0]) if len(a) > 1 and a[-1] > a[0] else 0.0

    @property
    def recording(self) -> bool:
        return self._take is not None

    @property
    def recorded(self) -> int:
        return len(self._take) if self._take is not None else 0

    def start_recording(self) -> None:
        """Keep every pose received from now on (until stop_recording)."""
        if self._take is None:
            self._take = []

    def stop_recording(self) -> Take | None:
        """The poses received since start_recording, stacked; None when none arrived."""
        poses, self._take = self._take, None
        if not poses:
            return None
        names = tuple(self.expression_names)
        return Take(np.stack([p.rotations for p in poses]), np.stack([p.root for p in poses]),
                    np.array([p.frame for p in poses]), np.array([p.time for p in poses]), self.fps, self.skeleton,
                    held_expressions([p.expressions for p in poses], len(names)) if names else None, names)

    def _on_message(self, msg: dict[str, Any]) -> None:
        if "pose" in msg:
            pose = self._parse_pose(msg["pose"])
            if pose is None:
                self.skipped += 1
                return
            self.received += 1
            self._newest = pose
            self._arrivals.append(pose.received)
            if self._take is not None:
                self._take.append(pose)
        elif "live" in msg and isinstance(msg["live"], dict):
            self._parse_header(msg["live"])
        elif "skeleton" in msg and isinstance(msg["skeleton"], dict):
            self._parse_offsets(msg["skeleton"].get("offsets"))

    def _parse_header(self, header: dict[str, Any]) -> None:
        joints = [str(j) for j in header.get("joints", [])]
        column = {name: i for i, name in enumerate(joints)}
        self.header = header
        self._order = np.array([column.get(name, -1) for name in self.skeleton.names])
        names = header.get("expressions")
        self.expression_names = [str(n) for n in names] if isinstance(names, list) else []
        fps = header.get("fps")
        if isinstance(fps, (int, float)) and np.isfinite(fps) and fps > 0:
            self.fps = float(fps)
        if header.get("offsets") is not None:
            self._parse_offsets(header["offsets"])

    def _parse_offsets(self, data: Any) -> None:
        """Rest offsets (J, 3) metres in the header's joint order: the skeleton later poses belong to."""
        try:
            offsets = np.asarray(data, dtype=np.float64).reshape(-1, 3)
        except (TypeError, ValueError):
            self.skipped += 1
            return
        if self._order is None or offsets.shape[0] <= self._order.max() or not np.all(np.isfinite(offsets)):
            self.skipped += 1
            return
        base = skeleton.humanoid()
        merged = base.offsets.copy()
        have = self._order >= 0
        merged[have] = offsets[self._order[have]]
        self.skeleton = base.with_offsets(merged)

    def _parse_pose(self, data: Any) -> LivePose | None:
        """A pose message as arrays in the skeleton's joint order; None when it cannot be used."""
        if self._order is None or not isinstance(data, dict):
            return None
        try:
            rot = np.asarray(data["rotations"], dtype=np.float64)
            root = np.asarray(data["root"], dtype=np.float64).reshape(3)
            if rot.ndim != 2 or rot.shape[1] != 4 or rot.shape[0] <= self._order.max():
                return None
            out = quat.identity(len(self._order))
            have = self._order >= 0
            out[have] = rot[self._order[have]]
            norm = np.linalg.norm(out, axis=-1, keepdims=True)
            if not (np.all(np.isfinite(out)) and np.all(np.isfinite(root)) and np.all(norm > 1e-6)):
                return None
            return LivePose(int(data.get("frame", self.received)), float(data.get("time", 0.0)),
                            float(data.get("latency_ms", 0.0)), root, out / norm, time.monotonic(),
                            self._parse_expressions(data.get("expressions")))
        except (KeyError, TypeError, ValueError):
            return None

    def _parse_expressions(self, data: Any) -> np.ndarray | None:
        """A pose's expression weights (E,) clipped to 0..1; None without a face or when they cannot be used (the
        pose itself is kept)."""
        if data is None or not self.expression_names:
            return None
        try:
            weights = np.asarray(data, dtype=np.float64)
        except (TypeError, ValueError):
            return None
        if weights.shape != (len(self.expression_names),) or not np.all(np.isfinite(weights)):
            return None
        return np.clip(weights, 0.0, 1.0)


def held_expressions(rows: list[np.ndarray | None], count: int) -> np.ndarray:
    """Per-frame weights (E,) or None (no face) -> (F, E): a frame without a face holds the previous face frame's
    weights, 0 before the first."""
    out = np.zeros((len(rows), count))
    have = np.array([r is not None for r in rows], dtype=bool)
    if have.any():
        out[have] = np.stack([r for r in rows if r is not None])
        last = np.maximum.accumulate(np.where(have, np.arange(len(rows)), -1))  # the latest face frame up to each
        out = np.where((last >= 0)[:, None], out[np.maximum(last, 0)], 0.0)
    return out


# --- posing a character (bpy objects; the retargeting package imported where used) ---------------------------------

@dataclass
class LiveTarget:
    """What posing one character needs, worked out once per session (the same inputs as `retarget_source`).
    bone_map: humanoid joint -> bone; source_map: humanoid joint -> the stream's joint; joint_bones: joint -> the
    bone whose rest marks it; rig: the rest pose (its object matrix is re-read every frame); constrained: the mapped
    bones hang under constrained helpers (solved through Blender's evaluation); settings: control switches (IK_FK);
    face: the character's shape keys the stream's expressions (face_names) drive, None until prepare_face."""

    bone_map: dict[str, str]
    source_map: dict[str, str]
    joint_bones: dict[str, str]
    rig: TargetRig
    constrained: bool
    settings: dict[str, float]
    skeleton: skeleton.Skeleton
    face: list[MeshMatch] | None = None
    face_names: list[str] = field(default_factory=list)


def prepare_target(obj: bpy.types.Object, bone_map: dict[str, str] | None = None,
                   expressions: Sequence[str] = ()) -> LiveTarget:
    """The posing inputs of armature `obj`: bone_map as given, else saved on it, else detected (RetargetError says
    what is missing); with the stream's expression names, its shape keys too (prepare_face)."""
    from . import retarget, rigmap

    bone_map = retarget.resolve_target_map(obj, bone_map)
    sk = skeleton.humanoid()
    source_bones = {n: (sk.names[p] if p >= 0 else None) for n, p in zip(sk.names, sk.parents)}
    source_map = rigmap.resolve_bone_map(source_bones, None, "Mimic's live skeleton")
    bones = rigmap.armature_bones(obj)
    target = LiveTarget(bone_map, source_map, rigmap.joint_bones(bone_map, bones),
                        retarget.target_from_armature(obj), retarget.needs_evaluation(obj, list(bone_map.values())),
                        rigmap.control_settings(bone_map, bones), sk)
    if expressions:
        prepare_face(obj, target, expressions)
    return target


def prepare_face(obj: bpy.types.Object, target: LiveTarget, expressions: Sequence[str]) -> str:
    """Match the shape keys of `obj`'s meshes to the stream's expression names once (face.match_shape_keys with the
    character's mapping) into target.face; returns the notice for a character none of them drive, else ""."""
    from . import face

    mapping = face.mapping_for(obj)
    matches = face.match_shape_keys(face.character_meshes(obj), {e: list(mapping.get(e, ())) for e in expressions})
    target.face = [m for m in matches if m.drives]
    target.face_names = list(expressions)
    return "" if target.face else face.no_match_notice(obj.name, bool(matches))


def write_expressions(target: LiveTarget, pose: LivePose) -> bool:
    """Set the character's matched shape keys to the pose's expression weights now; False when there is nothing to
    set (no face in the frame, or no matched shape keys), leaving them as they were."""
    if pose.expressions is None or not target.face or len(pose.expressions) != len(target.face_names):
        return False
    from . import face

    face.set_weights(target.face, target.face_names, pose.expressions)
    return True


def solve_pose_frames(target: LiveTarget, rotations: np.ndarray, root: np.ndarray, fps: float,
                      world: np.ndarray, source: skeleton.Skeleton | None = None) -> Baked:
    """Offline retargeting's solve (retarget/solve.py) for poses of the stream: rotations (F, J, 4) local, w-x-y-z;
    root (F, 3) metres, Mimic axes; world: (4, 4) the character's object matrix now; source: the stream's skeleton
    (None = the default humanoid) -> the character's basis channels (retarget.Baked), vectorised over frames.
    Plain numpy on arrays: safe on a worker thread."""
    from .retarget import solve, source_from_motion

    sk = source if source is not None else target.skeleton
    motion = Motion(skeleton=sk, fps=fps, rotations=rotations, root_positions=root)
    rig = replace(target.rig, world=np.asarray(world, dtype=np.float64))
    return solve.solve(source_from_motion(motion), rig, target.bone_map, target.source_map, target.joint_bones)


def through_constraints(obj: bpy.types.Object, target: LiveTarget, baked: Baked) -> Baked:
    """`baked` as it must be keyed on a rig whose mapped bones hang under constrained helper bones (a generated
    Rigify rig): solved frame by frame through Blender's evaluation (main thread only); other rigs as they are."""
    from .retarget import needs_evaluation, pose_through_constraints

    if target.constrained and needs_evaluation(obj, list(target.bone_map.values())):
        return pose_through_constraints(obj, baked, target.bone_map, target.settings)
    return baked


def solve_frames(obj: bpy.types.Object, target: LiveTarget, rotations: np.ndarray, root: np.ndarray,
                 fps: float = DEFAULT_FPS, source: skeleton.Skeleton | None = None) -> Baked:
    """solve_pose_frames with the character's object matrix as it is now (it may have been moved since the start),
    then through its constraints where it has them."""
    baked = solve_pose_frames(target, rotations, root, fps, np.array(obj.matrix_world), source)
    return through_constraints(obj, target, baked)


class PoseSolver:
    """Solves the newest pose on one worker thread, so that Blender's main thread only writes the result: submit()
    the newest pose each tick, take() a finished solve (the pose it belongs to and its Baked) when there is one.
    Poses submitted while a solve runs replace each other: only the newest is solved next."""

    def __init__(self, target: LiveTarget, fps: float = DEFAULT_FPS) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.target = target
        self.fps = fps
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mimic-live-solve")
        self._running: tuple[LivePose, Any] | None = None  # (pose, Future)
        self._pending: tuple[LivePose, np.ndarray, skeleton.Skeleton | None] | None = None

    def submit(self, pose: LivePose, world: np.ndarray, source: skeleton.Skeleton | None = None) -> None:
        """Solve `pose` (of skeleton `source`, None = the default) for the object matrix `world` (4, 4) as soon as
        the worker is free."""
        self._pending = (pose, np.array(world, dtype=np.float64), source)
        self._launch()

    def _launch(self) -> None:
        if self._running is None and self._pending is not None:
            (pose, world, source), self._pending = self._pending, None
            future = self._pool.submit(solve_pose_frames, self.target, pose.rotations[None], pose.root[None],
                                       self.fps, world, source)
            self._running = (pose, future)

    def take(self) -> tuple[LivePose, Baked] | None:
        """The last finished solve (never waits); re-raises the worker's exception."""
        if self._running is None or not self._running[1].done():
            return None
        (pose, future), self._running = self._running, None
        self._launch()
        return pose, future.result()

    def close(self) -> None:
        """Stop the worker (a solve in progress finishes; pending ones are dropped)."""
        self._pending = None
        self._pool.shutdown(wait=True, cancel_futures=True)


def _set_rotations(bones: Any, names: list[str], quats: np.ndarray) -> None:
    """Set pose bones' rotations (B, 4) w-x-y-z in each bone's own rotation mode, one conversion per mode."""
    modes = [bones[n].rotation_mode for n in names]
    for mode in set(modes):
        idx = [i for i, m in enumerate(modes) if m == mode]
        q = quats[idx]
        if mode == "QUATERNION":
            values, prop = q, "rotation_quaternion"
        elif mode == "AXIS_ANGLE":
            values, prop = quat.to_axis_angle(q), "rotation_axis_angle"
        else:
            values, prop = quat.to_euler(q[None], mode)[0], "rotation_euler"  # (1, B): no unwrapping across bones
        for i, v in zip(idx, values.tolist()):
            setattr(bones[names[i]], prop, v)


def write_pose(obj: bpy.types.Object, baked: Baked, frame: int = -1) -> None:
    """Set frame `frame` of `baked` on the pose bones directly (what `bake_action` would key): mapped bones'
    rotations, the hips' location, bones between mapped ones at rest, the control switches."""
    bones = obj.pose.bones
    names = list(baked.rotations)
    _set_rotations(bones, names, np.stack([baked.rotations[n][frame] for n in names]))
    bones[baked.hips].location = baked.location[frame].tolist()
    if baked.identity:
        _set_rotations(bones, baked.identity, quat.identity(len(baked.identity)))
        for name in baked.identity:
            bones[name].location = (0.0, 0.0, 0.0)
    for (name, key), value in baked.switches.items():
        bones[name][key] = value


def apply_pose(obj: bpy.types.Object, pose: LivePose, bone_map: dict[str, str] | None = None,
               target: LiveTarget | None = None, fps: float = DEFAULT_FPS,
               source: skeleton.Skeleton | None = None) -> Baked:
    """Pose armature `obj` with one live frame, as offline retargeting would pose that frame. target: the
    prepared inputs (pass it on every frame of a session; None = prepare from bone_map now); source: the stream's
    skeleton (LiveSession.skeleton; None = the default humanoid)."""
    target = target if target is not None else prepare_target(obj, bone_map)
    baked = solve_frames(obj, target, pose.rotations[None], pose.root[None], fps, source)
    write_pose(obj, baked)
    write_expressions(target, pose)
    return baked


def record_action(obj: bpy.types.Object, target: LiveTarget, take: Take, name: str,
                  frame_start: int) -> bpy.types.Action:
    """Bake a recorded take onto `obj` as a new active action: one key per received frame from `frame_start` on,
    solved in one vectorised pass (quaternion signs continuous) and keyed in bulk through fcurves.py."""
    from .retarget import bake_action

    baked = solve_frames(obj, target, take.rotations, take.root, take.fps, take.skeleton)
    return bake_action(obj, baked, name, frame_start)


def record_face(obj: bpy.types.Object, target: LiveTarget, take: Take, name: str,
                frame_start: int) -> FaceReport | None:
    """Key a take's expressions onto `obj`'s matched shape keys (face.key_weights: one new action per mesh's Key,
    `<name>_<mesh>`), one key per received frame from `frame_start` on; None when there is nothing to key."""
    if take.expressions is None or not target.face:
        return None
    from . import face

    return face.key_weights(obj, take.expressions, take.expression_names, frame_start=frame_start, action_name=name)


@dataclass
class PoseSnapshot:
    """Pose bones' basis matrices and custom properties, and the values of the shape keys live sets (keep_face), to
    put a character back as it was before live."""

    basis: dict[str, Any]
    props: dict[tuple[str, str], Any]
    shape_keys: dict[tuple[str, str], float] = field(default_factory=dict)  # (mesh object, shape key) -> value

    @classmethod
    def of(cls, obj: bpy.types.Object, props: dict[str, float]) -> PoseSnapshot:
        """Every pose bone's basis, and the values of the custom properties named in `props` where bones have them."""
        bones = obj.pose.bones
        return cls({pb.name: pb.matrix_basis.copy() for pb in bones},
                   {(pb.name, key): pb[key] for pb in bones for key in props if key in pb})

    def keep_face(self, matches: Sequence[MeshMatch]) -> None:
        """Remember the values of the shape keys in `matches` (before live sets them)."""
        for m in matches:
            for name in m.drives:
                self.shape_keys.setdefault((m.mesh.name, name), float(m.key.key_blocks[name].value))

    def restore(self, obj: bpy.types.Object) -> None:
        import bpy

        for (mesh, name), value in self.shape_keys.items():
            data = getattr(bpy.data.objects.get(mesh), "data", None)
            key = getattr(data, "shape_keys", None)
            if key is not None and name in key.key_blocks:
                key.key_blocks[name].value = value
        bones = obj.pose.bones
        for (name, key), value in self.props.items():
            if name in bones:
                bones[name][key] = value
        for name, basis in self.basis.items():
            if name in bones:
                bones[name].matrix_basis = basis
