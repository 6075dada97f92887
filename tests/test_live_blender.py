"""Live mode in real Blender (bpy 5.0.1) with the extension enabled: one live frame poses a character exactly as
offline retargeting poses that frame (Mixamo- and VRM-named rigs with awkward rests), Record keys one key per
received frame, Stop ends the core subprocess, and the timer's tick never waits for the core. With Face on (--face)
the stream's expression weights set the character's shape keys and Record keys them.

The core is a fake one (a small script printing the live contract's JSON lines) started as the "Python" of the
add-on's preferences, so it goes through the same path as the real `python -m core live`; where core/live.py exists,
one test also runs the real core on a clip.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import stat
import sys
import time
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
import addon_utils  # noqa: E402  (Blender's module, importable once bpy is)

from conftest import LayoutRecorder, enabled_extension  # noqa: E402
from core.common.hands import expression_names  # noqa: E402
from core.common.motionfile import Motion  # noqa: E402
from core.common.skeleton import humanoid  # noqa: E402
from test_retarget import awkward_armature, known_motion  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REPO_MODULE = "mimic_live_tests"
ADDON = f"bl_ext.{REPO_MODULE}.mimic"
MAX_ANGLE_DEG = 1.0
MAX_POSITION_M = 1e-3
FIGURES: dict[str, float] = {}  # printed at the end of the module (pytest -s)

FAKE_CORE = r'''
"""A stand-in for `python -m core live`: the live contract's JSON lines, poses from $MIMIC_FAKE_POSES."""
import json, math, os, sys, time

def emit(obj):
    print(json.dumps(obj), flush=True)

data = json.load(open(os.environ["MIMIC_FAKE_POSES"]))
count = int(os.environ.get("MIMIC_FAKE_FRAMES", "0"))  # 0 = until killed
interval = float(os.environ.get("MIMIC_FAKE_INTERVAL", "0"))
emit({"protocol": 1, "mimic": "0.1.0"})
if os.environ.get("MIMIC_FAKE_JUNK"):
    print("a library's stray output", flush=True)
    emit({"pose": {"frame": -1, "root": [0, 1, 0], "rotations": data["frames"][0]["rotations"]}})  # before the header
time.sleep(float(os.environ.get("MIMIC_FAKE_DELAY", "0")))
face = bool(os.environ.get("MIMIC_FAKE_FACE"))  # --face's expressions: names in the header, weights per pose
header = {"joints": data["joints"], "fps": data["fps"], "argv": sys.argv[1:]}
emit({"live": dict(header, expressions=data["expression_names"]) if face else header})
if os.environ.get("MIMIC_FAKE_OFFSETS"):  # the bone lengths "measured" after the first frames
    emit({"skeleton": {"offsets": data["offsets"]}})
if os.environ.get("MIMIC_FAKE_JUNK"):
    emit({"pose": {"frame": -1, "root": [0, 1, 0], "rotations": [[1, 0, 0, 0]]}})  # too few joints
    emit({"pose": {"frame": -1, "root": [0, math.nan, 0], "rotations": data["frames"][0]["rotations"]}})
i = 0
while count == 0 or i < count:
    f = data["frames"][i % len(data["frames"])]
    pose = {"frame": i, "time": i / data["fps"], "latency_ms": 12.5, "root": f["root"], "rotations": f["rotations"]}
    if face:
        pose["expressions"] = data["faces"][i % len(data["faces"])]  # null: no face in this frame
    emit({"pose": pose})
    i += 1
    time.sleep(interval)
if os.environ.get("MIMIC_FAKE_ERROR"):
    emit({"error": {"type": "CameraUnavailable", "message": os.environ["MIMIC_FAKE_ERROR"], "exit_code": 16}})
    sys.exit(16)
emit({"done": True, "frames": i})
'''


def _raise(exc: BaseException) -> None:
    raise exc


@pytest.fixture(scope="module")
def ext(tmp_path_factory: pytest.TempPathFactory):
    """The extension enabled from an empty file (a local extension repository linking to this checkout)."""
    with enabled_extension(tmp_path_factory.mktemp("extensions"), REPO_MODULE) as module:
        yield module
    if FIGURES:
        print("\nlive figures:", json.dumps({k: round(v, 6) for k, v in FIGURES.items()}))


def submodule(ext, name: str):
    return importlib.import_module(f"{ext.__name__}.addon.{name}")


def clean_scene() -> None:
    """Remove every object, armature, mesh and action (the extension stays enabled, unlike a factory reset)."""
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    for data in (bpy.data.armatures, bpy.data.actions, bpy.data.meshes):
        for item in list(data):
            data.remove(item)
    bpy.context.scene.frame_set(1)


# --- the fake core ------------------------------------------------------------------------------------------------

STREAM_JOINTS = list(reversed(humanoid().names))  # another order than the skeleton's: the header's order counts
SCALE = 0.9  # the fake core's measured bone lengths, relative to the default humanoid's


FACE_CYCLE = 30  # the fake core's expression frames, cycled


def fake_face_rows() -> list:
    """The fake core's per-frame expressions: a blink ramp, jawOpen a sine, aa a cosine, the rest still; null (no
    face) on frame 0 and every 6th from 4; unusable rows (too short, NaN, text) on frames 7, 13 and 19."""
    names = expression_names()
    rows: list = []
    for i in range(FACE_CYCLE):
        w = 0.02 * (np.arange(len(names)) % 5)
        w[names.index("blink")] = (i % 10) / 9
        w[names.index("jawOpen")] = 0.5 + 0.5 * math.sin(0.6 * i)
        w[names.index("aa")] = 0.3 + 0.2 * math.cos(0.4 * i)
        rows.append(None if i == 0 or i % 6 == 4 else w.tolist())
    rows[7], rows[13], rows[19] = [0.5, 0.5], [math.nan] * len(names), "closed"
    return rows


def expected_faces(count: int) -> np.ndarray:
    """(count, E) what the add-on must make of the fake core's rows: frames without a usable face hold the previous
    face frame's weights, 0 before the first."""
    rows = fake_face_rows()
    out = np.zeros((count, len(expression_names())))
    last = out[0]
    for i in range(count):
        row = rows[i % FACE_CYCLE]
        usable = isinstance(row, list) and len(row) == len(last) and np.all(np.isfinite(row))
        last = np.array(row, dtype=np.float64) if usable else last
        out[i] = last
    return out


def stream_frames(motion: Motion, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The motion's frames cycled to `count`: local rotations (count, J, 4) and root (count, 3), skeleton order."""
    idx = np.arange(count) % motion.num_frames
    return motion.rotations[idx], motion.root_positions[idx]


@pytest.fixture(scope="module")
def fake_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An executable that the add-on runs as its core's Python: it runs the fake core with the add-on's arguments."""
    folder = tmp_path_factory.mktemp("fake_core")
    motion = known_motion()
    order = [motion.names.index(n) for n in STREAM_JOINTS]
    frames = [{"root": motion.root_positions[f].tolist(), "rotations": motion.rotations[f][order].tolist()}
              for f in range(motion.num_frames)]
    offsets = (SCALE * motion.offsets[order]).tolist()
    (folder / "poses.json").write_text(json.dumps({"joints": STREAM_JOINTS, "fps": motion.fps, "frames": frames,
                                                   "offsets": offsets, "expression_names": expression_names(),
                                                   "faces": fake_face_rows()}))
    (folder / "fake_core.py").write_text(FAKE_CORE)
    wrapper = folder / "python"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{folder / "fake_core.py"}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper


@pytest.fixture()
def live_setup(ext, fake_python: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A Mixamo-named character, active, and scene.mimic set to play a video through the fake core."""
    clean_scene()
    obj, names = awkward_armature("mixamo", seed=2, fbx_like=True)
    bpy.context.view_layer.objects.active = obj
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not read by the fake core")
    settings = bpy.context.scene.mimic
    settings.live_source, settings.live_video, settings.use_live_record = "VIDEO", str(clip), False
    settings.use_live_face = False
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.python_path = str(fake_python)
    monkeypatch.setenv("MIMIC_FAKE_POSES", str(fake_python.parent / "poses.json"))
    yield obj, names, clip
    run = submodule(ext, "live_ui").active_run()
    if run is not None:
        bpy.ops.mimic.live_stop()
    # Looked up again: a test that disables and enables the add-on frees the preferences fetched above.
    bpy.context.preferences.addons[ADDON].preferences.python_path = ""


def tick_until(run, context, done, timeout: float = 30.0) -> list[float]:
    """Tick `run` as the modal timer would (every 10 ms) until done() or the run ends; returns tick durations (s)."""
    durations = []
    deadline = time.monotonic() + timeout
    while True:
        t0 = time.perf_counter()
        running = run.tick(context)
        durations.append(time.perf_counter() - t0)
        if not running or done():
            return durations
        assert time.monotonic() < deadline, "the fake core did not deliver in time"
        time.sleep(0.01)


# --- posing: one live frame = offline retargeting of that frame ---------------------------------------------------

def bone_world(obj: bpy.types.Object, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """World rotations (B, 3, 3) (scale removed) and head positions (B, 3) of the named pose bones, as evaluated."""
    bpy.context.view_layer.update()
    mw = np.array(obj.matrix_world)
    mats = np.array([mw @ np.array(obj.pose.bones[n].matrix) for n in names])
    rot = mats[:, :3, :3] / np.linalg.norm(mats[:, :3, :3], axis=-2, keepdims=True)
    return rot, mats[:, :3, 3]


def angles_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(B,) angles between rotation matrices a and b (B, 3, 3), degrees."""
    chord = np.linalg.norm(a - b, axis=(-2, -1)) / (2.0 * math.sqrt(2.0))  # = sin(angle / 2); exact near 0
    return np.degrees(2.0 * np.arcsin(np.clip(chord, 0.0, 1.0)))


@pytest.mark.parametrize("convention, pick", [("mixamo", 0), ("vrm", 1)])
def test_one_live_frame_poses_as_offline_retargeting(ext, convention: str, pick: int) -> None:
    live, retarget = submodule(ext, "live"), submodule(ext, "retarget")
    clean_scene()
    obj, names = awkward_armature(convention, pick=pick, seed=40 + pick, fbx_like=convention == "mixamo")
    obj.pose.bones[names["LeftUpperArm"]].rotation_mode = "ZXY"  # Euler and axis-angle bones are set in their mode
    obj.pose.bones[names["Head"]].rotation_mode = "AXIS_ANGLE"
    motion = known_motion()
    bones = list(names.values())
    retarget.retarget_motion(motion, obj, "Offline")
    offline = []
    for f in range(motion.num_frames):
        bpy.context.scene.frame_set(1 + f)
        offline.append(bone_world(obj, bones))
    obj.animation_data.action = None  # nothing animates the character now: only live poses it

    target = live.prepare_target(obj)
    assert target.bone_map == names and not target.constrained
    worst_deg = worst_m = 0.0
    spent = []
    for f in range(motion.num_frames):
        pose = live.LivePose(f, f / motion.fps, 0.0, motion.root_positions[f], motion.rotations[f], 0.0)
        t0 = time.perf_counter()
        live.apply_pose(obj, pose, target=target, fps=motion.fps)
        spent.append(time.perf_counter() - t0)
        rot, heads = bone_world(obj, bones)
        worst_deg = max(worst_deg, float(angles_deg(rot, offline[f][0]).max()))
        worst_m = max(worst_m, float(np.abs(heads - offline[f][1]).max()))
    assert worst_deg < MAX_ANGLE_DEG and worst_m < MAX_POSITION_M, (worst_deg, worst_m)
    assert not np.allclose(offline[0][0], offline[12][0])  # the frames really differ
    FIGURES[f"{convention}_worst_deg"] = worst_deg
    FIGURES[f"{convention}_worst_mm"] = 1000 * worst_m
    FIGURES[f"{convention}_apply_ms_median"] = 1000 * float(np.median(spent[1:]))
    FIGURES[f"{convention}_apply_ms_max"] = 1000 * float(np.max(spent[1:]))

    # Without a prepared target (bone map detected on the spot) the pose is the same.
    live.apply_pose(obj, live.LivePose(0, 0.0, 0.0, motion.root_positions[5], motion.rotations[5], 0.0))
    assert angles_deg(bone_world(obj, bones)[0], offline[5][0]).max() < MAX_ANGLE_DEG


def test_the_streams_skeleton_sets_the_characters_height(ext) -> None:
    """Poses of a smaller person (bone lengths 0.9, hips lower): with the stream's skeleton the character poses as
    offline retargeting of that motion (feet on its floor); with the default skeleton it would sink."""
    live, retarget = submodule(ext, "live"), submodule(ext, "retarget")
    clean_scene()
    obj, names = awkward_armature("vrm", pick=1, seed=44)
    base = known_motion()
    small = Motion(skeleton=base.skeleton.with_offsets(SCALE * base.offsets, SCALE * base.end_sites), fps=base.fps,
                   rotations=base.rotations, root_positions=SCALE * base.root_positions)
    feet = [names["LeftFoot"], names["RightFoot"]]
    retarget.retarget_motion(small, obj, "Offline")
    offline = []
    for f in range(small.num_frames):
        bpy.context.scene.frame_set(1 + f)
        offline.append(bone_world(obj, feet)[1])
    obj.animation_data.action = None
    target = live.prepare_target(obj)
    errors = {}
    for name, source in (("stream", small.skeleton), ("default", None)):
        worst = 0.0
        for f in range(small.num_frames):
            pose = live.LivePose(f, 0.0, 0.0, small.root_positions[f], small.rotations[f], 0.0)
            live.apply_pose(obj, pose, target=target, fps=small.fps, source=source)
            worst = max(worst, float(np.abs(bone_world(obj, feet)[1] - offline[f]).max()))
        errors[name] = worst
    assert errors["stream"] < MAX_POSITION_M and errors["default"] > 0.05, errors
    FIGURES["feet_error_mm_stream_skeleton"] = 1000 * errors["stream"]
    FIGURES["feet_error_mm_default_skeleton"] = 1000 * errors["default"]


# --- the session: parsing, recording, stopping ---------------------------------------------------------------------

def test_session_parses_the_stream_newest_for_posing_all_for_recording(ext, fake_python: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    live = submodule(ext, "live")
    monkeypatch.setenv("MIMIC_FAKE_POSES", str(fake_python.parent / "poses.json"))
    monkeypatch.setenv("MIMIC_FAKE_FRAMES", "30")
    monkeypatch.setenv("MIMIC_FAKE_JUNK", "1")
    monkeypatch.setenv("MIMIC_FAKE_OFFSETS", "1")
    argv = live.live_command(fake_python, live.LiveSource(camera=2))
    assert argv[1:] == ["-m", "core", "live", "--camera", "2", "--no-vmc", "--progress", "json", "--watch-stdin"]
    session = live.LiveSession(argv).start()
    session.start_recording()
    deadline = time.monotonic() + 30
    while session.poll():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert session.error() is None and session.header["argv"] == argv[1:]
    assert session.fps == pytest.approx(24.0)
    assert session.received == 30 and session.skipped == 3  # before the header, too few joints, NaN
    newest = session.take_newest()
    assert newest.frame == 29 and session.take_newest() is None  # older poses are not kept for posing
    take = session.stop_recording()
    assert take.num_frames == 30 and list(take.frames) == list(range(30))
    rotations, root = stream_frames(known_motion(), 30)
    assert np.allclose(take.rotations, rotations) and np.allclose(take.root, root)  # back in skeleton order
    assert take.skeleton is session.skeleton and np.allclose(session.skeleton.offsets, SCALE * humanoid().offsets)
    assert session.expression_names == [] and newest.expressions is None and take.expressions is None  # no --face


def test_record_keys_one_key_per_received_frame(ext, live_setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """Record on: every received frame becomes one key on every mapped bone, from the frame where recording began,
    with the values offline retargeting keys for the same frames; the tick stays short meanwhile."""
    live_ui, retarget = submodule(ext, "live_ui"), submodule(ext, "retarget")
    obj, names, clip = live_setup
    count = 40
    monkeypatch.setenv("MIMIC_FAKE_FRAMES", str(count))
    monkeypatch.setenv("MIMIC_FAKE_INTERVAL", "0.005")  # faster than the ticks: several frames arrive per tick
    scene = bpy.context.scene
    scene.frame_set(10)
    scene.mimic.use_live_record = True
    run = live_ui.start_run(bpy.context)
    ticks = tick_until(run, bpy.context, lambda: False)
    assert run.session.header["argv"] == ["-m", "core", "live", "--video", str(clip), "--no-vmc", "--progress",
                                          "json", "--watch-stdin"]
    messages = run.finish(bpy.context)
    assert run.session.received == count and not any(level == "ERROR" for level, _ in messages), messages
    action = obj.animation_data.action
    assert action.name == f"{obj.name}_live" and run.actions == [action.name]
    curves = {(fc.data_path, fc.array_index): fc for fc in fcurves(action)}
    for bone in names.values():
        rotation = [fc for (path, _), fc in curves.items() if path.startswith(f'pose.bones["{bone}"].rotation')]
        assert len(rotation) == 4, bone
        for fc in rotation:
            keys = np.array([tuple(kp.co) for kp in fc.keyframe_points])
            assert len(keys) == count and np.array_equal(keys[:, 0], np.arange(10, 10 + count)), bone
            assert np.all(np.isfinite(keys))
    assert len(curves[(f'pose.bones["{names["Hips"]}"].location', 0)].keyframe_points) == count

    # The same frames retargeted offline give the same keys.
    rotations, root = stream_frames(known_motion(), count)
    offline = retarget.retarget_motion(Motion(skeleton=humanoid(), fps=24.0, rotations=rotations,
                                              root_positions=root), obj, "Offline")
    for fc in fcurves(offline):
        got = np.array([kp.co[1] for kp in curves[(fc.data_path, fc.array_index)].keyframe_points])
        assert np.allclose(got, [kp.co[1] for kp in fc.keyframe_points], atol=1e-5), fc.data_path
    assert np.median(ticks) < 0.01, ticks  # the solve runs on a worker: the tick only parses and writes
    FIGURES["tick_ms_median_streaming"] = 1000 * float(np.median(ticks))
    FIGURES["tick_ms_max_streaming"] = 1000 * float(np.max(ticks))
    FIGURES["frames_shown_of_received"] = run.applied / count
    scene.mimic.use_live_record = False


def fcurves(action: bpy.types.Action) -> list[bpy.types.FCurve]:
    return [fc for layer in action.layers for strip in layer.strips for bag in strip.channelbags for fc in bag.fcurves]


# --- the face: expressions onto shape keys -------------------------------------------------------------------------

FACE_KEYS = ("blink", "aa", "jawOpen")  # VRM presets and an ARKit name; each driven by the expression of its name
KEY_REST = 0.25  # the shape keys' values before live


def add_face_mesh(arm: bpy.types.Object, keys: tuple[str, ...] = FACE_KEYS) -> bpy.types.Object:
    """A face mesh deformed by the armature (its child, with an Armature modifier) with a basis and shape keys
    `keys`, each moving one vertex, each at KEY_REST."""
    data = bpy.data.meshes.new(f"{arm.name}_Face")
    data.from_pydata([(0, 0, 0), (0.1, 0, 0), (0, 0.1, 0)], [], [(0, 1, 2)])
    mesh = bpy.data.objects.new(data.name, data)
    bpy.context.scene.collection.objects.link(mesh)
    mesh.parent = arm
    mesh.modifiers.new("Armature", "ARMATURE").object = arm
    if keys:
        mesh.shape_key_add(name="Basis")
        for k, name in enumerate(keys):
            block = mesh.shape_key_add(name=name)
            block.data[k % 3].co.z += 0.01
            block.value = KEY_REST
    return mesh


def key_values(mesh: bpy.types.Object, keys: tuple[str, ...] = FACE_KEYS) -> np.ndarray:
    blocks = mesh.data.shape_keys.key_blocks
    return np.array([blocks[k].value for k in keys])


def expected_keys(weights: np.ndarray) -> np.ndarray:
    """(..., len(FACE_KEYS)) the columns of (..., E) weights that drive FACE_KEYS (each key its own expression)."""
    names = expression_names()
    return weights[..., [names.index(k) for k in FACE_KEYS]]


def has_face(frame: int) -> bool:
    """Whether the fake core's frame `frame` carries usable expression weights."""
    row = fake_face_rows()[frame % FACE_CYCLE]
    return isinstance(row, list) and len(row) == len(expression_names()) and bool(np.all(np.isfinite(row)))


def test_session_reads_expressions_and_keeps_poses_with_bad_ones(ext, fake_python: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """--face's stream: the header's names, each pose's weights; a pose without a usable face (null, too short,
    NaN, text) keeps its body with expressions None; a take holds the previous face frame's weights."""
    live = submodule(ext, "live")
    monkeypatch.setenv("MIMIC_FAKE_POSES", str(fake_python.parent / "poses.json"))
    monkeypatch.setenv("MIMIC_FAKE_FRAMES", "40")
    monkeypatch.setenv("MIMIC_FAKE_FACE", "1")
    session = live.LiveSession(live.live_command(fake_python, live.LiveSource(camera=0, use_face=True))).start()
    session.start_recording()
    poses = []
    deadline = time.monotonic() + 30
    while session.poll() or poses[-1:] != [None]:
        poses.append(session.take_newest())
        assert time.monotonic() < deadline
        time.sleep(0.002)
    assert session.error() is None and session.header["argv"][-4:] == ["--face", "--progress", "json",
                                                                      "--watch-stdin"]
    assert session.expression_names == list(expression_names())
    assert session.received == 40 and session.skipped == 0  # no pose dropped for its face
    rows = fake_face_rows()
    for pose in filter(None, poses):
        if has_face(pose.frame):
            assert pose.expressions.shape == (27,) and np.allclose(pose.expressions, rows[pose.frame % FACE_CYCLE])
        else:
            assert pose.expressions is None, pose.frame
    take = session.stop_recording()
    assert take.expression_names == tuple(expression_names()) and take.expressions.shape == (40, 27)
    np.testing.assert_allclose(take.expressions, expected_faces(40))
    assert not take.expressions[0].any() and np.array_equal(take.expressions[4], take.expressions[3])


def test_live_face_sets_the_shape_keys(ext, live_setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """Face on: --face goes to the core, the face mesh's blink, aa and jawOpen follow the stream (the last pose's
    weights once it is shown) while the body is posed; Stop puts the shape keys back."""
    live, live_ui = submodule(ext, "live"), submodule(ext, "live_ui")
    obj, names, clip = live_setup
    mesh = add_face_mesh(obj)
    count = 27  # the last frame (26) has a face
    monkeypatch.setenv("MIMIC_FAKE_FACE", "1")
    monkeypatch.setenv("MIMIC_FAKE_FRAMES", str(count))
    monkeypatch.setenv("MIMIC_FAKE_INTERVAL", "0.005")
    bpy.context.scene.mimic.use_live_face = True
    arm_before = np.array(obj.pose.bones[names["LeftUpperArm"]].matrix_basis)
    run = live_ui.start_run(bpy.context)
    seen = []
    deadline = time.monotonic() + 30
    while run.shown is None or run.shown.frame != count - 1:
        run.tick(bpy.context)
        seen.append((run.shown.frame if run.shown is not None else -1, key_values(mesh)))
        assert time.monotonic() < deadline, "the last pose was not shown in time"
        time.sleep(0.01)
    assert run.session.header["argv"] == ["-m", "core", "live", "--video", str(clip), "--no-vmc", "--face",
                                          "--progress", "json", "--watch-stdin"]
    want = expected_faces(count)
    np.testing.assert_allclose(key_values(mesh), expected_keys(want[-1]), atol=1e-6)
    assert not np.allclose(key_values(mesh), KEY_REST)
    # Every tick showed the weights of the frame shown when it had a face (frames without one hold what was shown).
    checked = [frame for frame, values in seen if frame >= 0 and has_face(frame)
               and np.allclose(values, expected_keys(want[frame]), atol=1e-6)]
    assert len(checked) == len([frame for frame, _ in seen if frame >= 0 and has_face(frame)]) > 0
    assert not np.allclose(np.array(obj.pose.bones[names["LeftUpperArm"]].matrix_basis), arm_before)
    messages = run.finish(bpy.context)
    assert not any(level == "ERROR" or "shape keys" in text for level, text in messages), messages
    np.testing.assert_allclose(key_values(mesh), KEY_REST)  # Stop puts them back with the pose
    np.testing.assert_allclose(np.array(obj.pose.bones[names["LeftUpperArm"]].matrix_basis), arm_before, atol=1e-6)

    # apply_pose on its own: a target prepared with the stream's names sets the shape keys with the body.
    target = live.prepare_target(obj, expressions=expression_names())
    assert [sorted(m.drives) for m in target.face] == [sorted(FACE_KEYS)]
    rotations, root = stream_frames(known_motion(), 1)
    live.apply_pose(obj, live.LivePose(0, 0.0, 0.0, root[0], rotations[0], 0.0, want[5]), target=target)
    np.testing.assert_allclose(key_values(mesh), expected_keys(want[5]), atol=1e-6)
    t0 = time.perf_counter()
    for f in range(100):
        assert live.write_expressions(target, live.LivePose(f, 0.0, 0.0, root[0], rotations[0], 0.0, want[f % count]))
    FIGURES["face_write_ms"] = 10 * (time.perf_counter() - t0)  # per pose, on the main thread


def test_record_keys_the_face_one_key_per_received_frame(ext, live_setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """Record with Face on: one new Key action on the face mesh with one key per received frame on each matched
    shape key, from the frame where recording began, valued as received (frames without a face hold the last)."""
    live_ui = submodule(ext, "live_ui")
    obj, names, _ = live_setup
    mesh = add_face_mesh(obj)
    count = 40
    monkeypatch.setenv("MIMIC_FAKE_FACE", "1")
    monkeypatch.setenv("MIMIC_FAKE_FRAMES", str(count))
    monkeypatch.setenv("MIMIC_FAKE_INTERVAL", "0.005")
    scene = bpy.context.scene
    scene.frame_set(10)
    scene.mimic.use_live_face = scene.mimic.use_live_record = True
    run = live_ui.start_run(bpy.context)
    tick_until(run, bpy.context, lambda: False)
    messages = run.finish(bpy.context)
    assert run.session.received == count and not any(level == "ERROR" for level, _ in messages), messages
    body = obj.animation_data.action
    assert run.actions == [body.name] and body.name == f"{obj.name}_live"
    anim = mesh.data.shape_keys.animation_data
    assert run.face_actions == [anim.action.name] == [f"{body.name}_face_{mesh.name}"]
    assert any(level == "INFO" and text.startswith("Face: 3 shape keys keyed") for level, text in messages)
    curves = {fc.data_path: fc for fc in fcurves(anim.action)}
    assert sorted(curves) == sorted(f'key_blocks["{k}"].value' for k in FACE_KEYS)
    want = expected_keys(expected_faces(count))
    for k, key in enumerate(FACE_KEYS):
        co = np.array([tuple(kp.co) for kp in curves[f'key_blocks["{key}"].value'].keyframe_points])
        assert np.array_equal(co[:, 0], np.arange(10, 10 + count)), key
        np.testing.assert_allclose(co[:, 1], want[:, k], atol=1e-6)
    scene.frame_set(10 + 21)  # the take plays back on the shape keys
    np.testing.assert_allclose(key_values(mesh), want[21], atol=1e-6)
    scene.mimic.use_live_record = False


@pytest.mark.parametrize("keys, notice", [((), "no shape keys for"), (("mouthCustom",), "no shape keys matching")])
def test_face_on_a_character_without_its_shape_keys_streams_the_body(ext, live_setup, monkeypatch: pytest.MonkeyPatch,
                                                                      keys: tuple[str, ...], notice: str) -> None:
    """Face on, a character without shape keys (or none the mapping names): the body is posed and recorded, one
    INFO notice says why the face is not, no error."""
    live_ui = submodule(ext, "live_ui")
    obj, names, _ = live_setup
    if keys:
        add_face_mesh(obj, keys)
    count = 20
    monkeypatch.setenv("MIMIC_FAKE_FACE", "1")
    monkeypatch.setenv("MIMIC_FAKE_FRAMES", str(count))
    monkeypatch.setenv("MIMIC_FAKE_INTERVAL", "0.005")
    bpy.context.scene.mimic.use_live_face = bpy.context.scene.mimic.use_live_record = True
    run = live_ui.start_run(bpy.context)
    tick_until(run, bpy.context, lambda: False)
    messages = run.finish(bpy.context)
    assert run.applied > 0 and run.session.received == count
    assert not any(level == "ERROR" for level, _ in messages), messages
    notices = [(level, text) for level, text in messages if "shape keys" in text]
    assert len(notices) == 1 and notices[0][0] == "INFO" and f"{obj.name} has {notice}" in notices[0][1], messages
    assert run.face_actions == [] and bpy.data.actions.get(f"{obj.name}_live") is not None
    curve = next(fc for fc in fcurves(obj.animation_data.action) if names["LeftUpperArm"] in fc.data_path)
    assert len(curve.keyframe_points) == count
    bpy.context.scene.mimic.use_live_record = False


def test_stop_ends_the_core_and_puts_the_pose_back(ext, live_setup, monkeypatch: pytest.MonkeyPatch) -> None:
    live_ui = submodule(ext, "live_ui")
    obj, names, _ = live_setup
    monkeypatch.setenv("MIMIC_FAKE_FRAMES", "0")  # streams until stopped
    monkeypatch.setenv("MIMIC_FAKE_INTERVAL", str(1 / 30))
    before = {pb.name: np.array(pb.matrix_basis) for pb in obj.pose.bones}
    run = live_ui.start_run(bpy.context)
    live_ui._ACTIVE["run"] = run  # as the operator's invoke does
    tick_until(run, bpy.context, lambda: run.applied >= 5)
    moved = np.array(obj.pose.bones[names["LeftUpperArm"]].matrix_basis)
    assert not np.allclose(moved, before[names["LeftUpperArm"]])
    pid = run.session.pid
    os.kill(pid, 0)  # running
    assert bpy.ops.mimic.live_stop() == {"FINISHED"}
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert live_ui.active_run() is None and not run.session.running
    assert all(np.allclose(np.array(pb.matrix_basis), before[pb.name]) for pb in obj.pose.bones)
    assert obj.animation_data is None or obj.animation_data.action is None  # Record was off: no action


def test_tick_never_waits_for_the_core(ext, live_setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """A core that says nothing for 2 s (a camera opening): each tick returns at once."""
    live_ui = submodule(ext, "live_ui")
    monkeypatch.setenv("MIMIC_FAKE_DELAY", "2")
    monkeypatch.setenv("MIMIC_FAKE_FRAMES", "3")
    run = live_ui.start_run(bpy.context)
    silent = []
    t_end = time.monotonic() + 1.0
    while time.monotonic() < t_end:
        t0 = time.perf_counter()
        assert run.tick(bpy.context)
        silent.append(time.perf_counter() - t0)
        time.sleep(0.01)
    assert run.session.header is None and run.status() == "Starting the Mimic core..."
    # A blocking read would hold a tick for the core's 2 s of silence; a loaded 2-core CI machine can
    # delay a single non-blocking tick by tens of milliseconds (scheduling), so the bound is far from both.
    assert max(silent) < 0.25, max(silent)
    assert float(np.median(silent)) < 0.01, silent
    tick_until(run, bpy.context, lambda: False)
    assert run.session.received == 3
    run.finish(bpy.context)
    FIGURES["tick_ms_max_silent_core"] = 1000 * max(silent)


def test_core_error_ends_live_with_its_message(ext, live_setup, monkeypatch: pytest.MonkeyPatch) -> None:
    live_ui = submodule(ext, "live_ui")
    obj, _, _ = live_setup
    monkeypatch.setenv("MIMIC_FAKE_FRAMES", "2")
    monkeypatch.setenv("MIMIC_FAKE_ERROR", "Camera 0 cannot be opened. Close the other program using it.")
    before = {pb.name: np.array(pb.matrix_basis) for pb in obj.pose.bones}
    run = live_ui.start_run(bpy.context)
    tick_until(run, bpy.context, lambda: False)
    messages = run.finish(bpy.context)
    assert ("ERROR", "Camera 0 cannot be opened. Close the other program using it.") in messages
    assert all(np.allclose(np.array(pb.matrix_basis), before[pb.name]) for pb in obj.pose.bones)


def test_operators_panel_and_refusals(ext, live_setup) -> None:
    live_ui = submodule(ext, "live_ui")
    obj, _, _ = live_setup
    assert bpy.types.MIMIC_PT_live.bl_parent_id == "MIMIC_PT_main"
    assert {"MIMIC_OT_live_start", "MIMIC_OT_live_stop", "MIMIC_PT_live"} <= {c.__name__ for c in
                                                                              ext.addon._classes()}
    with pytest.raises(RuntimeError, match="needs Blender's window"):  # no window in background mode
        bpy.ops.mimic.live_start()
    settings = bpy.context.scene.mimic
    settings.live_video = "/nonexistent/clip.mp4"
    with pytest.raises(live_ui.MimicAddonError, match="No video file at /nonexistent/clip.mp4"):
        live_ui.start_run(bpy.context)
    settings.live_source, settings.live_camera = "CAMERA", 3
    assert live_ui.live_source(settings).to_args() == ["--camera", "3", "--no-vmc"]
    settings.use_live_face = True
    assert live_ui.live_source(settings).to_args() == ["--camera", "3", "--no-vmc", "--face"]
    calls: list = []
    live_ui.MIMIC_PT_live.draw(type("P", (), {"layout": LayoutRecorder(calls)})(), bpy.context)
    assert ("prop", (settings, "use_live_face"), {}) in calls
    prop = type(settings).bl_rna.properties["use_live_face"]
    assert prop.name == "Face" and "6 ms" in prop.description and not prop.default
    settings.use_live_face = False
    bpy.context.view_layer.objects.active = None
    with pytest.raises(live_ui.RetargetError, match="Select your character's armature"):
        live_ui.start_run(bpy.context)
    assert not bpy.ops.mimic.live_stop.poll()


# --- the real core, where it exists --------------------------------------------------------------------------------

def _real_live_core() -> bool:
    """True when `python -m core live` exists: core/live.py, and the CLI knows the command."""
    main = ROOT / "core" / "__main__.py"
    return (ROOT / "core" / "live.py").is_file() and '"live"' in main.read_text(encoding="utf-8")


@pytest.mark.skipif(not _real_live_core(), reason="python -m core live (core/live.py and its CLI) not there yet")
def test_real_core_live_on_a_clip_poses_a_character(ext, live_setup, walk_clip: Path) -> None:
    """`python -m core live --video` on the walking clip for about 2 s of poses, Record on: the character moves,
    Stop ends the core, the take has one key per received pose."""
    live_ui = submodule(ext, "live_ui")
    obj, names, _ = live_setup
    bpy.context.preferences.addons[ADDON].preferences.python_path = ""  # the repository's .venv: the real core
    settings = bpy.context.scene.mimic
    settings.live_video, settings.use_live_record = str(walk_clip), True
    before = np.array(obj.pose.bones[names["LeftUpperLeg"]].matrix_basis)
    run = live_ui.start_run(bpy.context)
    live_ui._ACTIVE["run"] = run
    first: list[float] = []

    def two_seconds_of_poses() -> bool:
        if run.applied and not first:
            first.append(time.monotonic())
        return bool(first) and time.monotonic() - first[0] > 2.0

    ticks = tick_until(run, bpy.context, two_seconds_of_poses, timeout=180)
    assert run.session.error() is None, run.session.error()
    assert run.applied > 0 and run.session.header["joints"] == list(humanoid().names)
    posed = np.array(obj.pose.bones[names["LeftUpperLeg"]].matrix_basis)
    assert np.all(np.isfinite(posed)) and not np.allclose(posed, before)
    pid = run.session.pid
    assert bpy.ops.mimic.live_stop() == {"FINISHED"}
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    received = run.session.received
    action = obj.animation_data.action
    keys = {len(fc.keyframe_points) for fc in fcurves(action) if names["LeftUpperLeg"] in fc.data_path}
    assert keys == {received}
    settings.use_live_record = False
    FIGURES["real_core_poses_received"] = received
    FIGURES["real_core_poses_shown"] = run.applied
    FIGURES["real_core_tick_ms_max"] = 1000 * max(ticks)
    FIGURES["real_core_latency_ms_last"] = run.latency_ms


def test_disabling_the_addon_mid_live_ends_the_core(ext, live_setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """Last in this module: the add-on is disabled and enabled again."""
    live_ui, job = submodule(ext, "live_ui"), submodule(ext, "job")
    plain = job.CoreJob("py", "/v.mp4", "/o.npz")  # the conversion's job is built as before
    assert plain.argv[:5] == ["py", "-m", "core", "/v.mp4", "-o"] and plain.output == Path("/o.npz")
    monkeypatch.setenv("MIMIC_FAKE_FRAMES", "0")
    monkeypatch.setenv("MIMIC_FAKE_INTERVAL", str(1 / 30))
    run = live_ui.start_run(bpy.context)
    live_ui._ACTIVE["run"] = run
    tick_until(run, bpy.context, lambda: run.session.received > 0)
    pid = run.session.pid
    addon_utils.disable(ADDON, default_set=True, handle_error=_raise)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert live_ui.active_run() is None
    assert addon_utils.enable(ADDON, default_set=True, handle_error=_raise) is not None
