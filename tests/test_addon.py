"""The Blender extension in real Blender (bpy 5.0.1): registration, the import operator on a real clip with the real
core subprocess, every registered export format through the one export operator, exports re-imported by Blender's own
importers, and failures that leave the scene as it was. The extension zip is tests/test_package.py's."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
import addon_utils  # noqa: E402  (Blender's module, importable once bpy is)

from core.bvh import read_bvh  # noqa: E402
from core.common.motionfile import load_motion  # noqa: E402
import conftest  # noqa: E402
from conftest import blank_video  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REPO_MODULE = "mimic_tests"
ADDON = f"bl_ext.{REPO_MODULE}.mimic"
CLIP_RANGE = (2.0, 2.7)  # seconds of the walking clip with people in view: 21 frames at 30 fps, quick to detect
#: Mimic axes (Y up, faces +Z) -> Blender world (Z up, faces -Y): (x, y, z) -> (x, -z, y).
MIMIC_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
TOLERANCE_M = 1e-3


def _raise(exc: BaseException) -> None:
    raise exc


def enable_extension(repo_dir: Path):
    """Start from an empty file and enable the repo as a real extension (a local repository holding it)."""
    return conftest.enable_extension(repo_dir, REPO_MODULE)


def disable_extension() -> None:
    conftest.disable_extension(REPO_MODULE)


@pytest.fixture(scope="module")
def ext(tmp_path_factory: pytest.TempPathFactory):
    """The enabled extension's root module (bl_ext.mimic_tests.mimic); disabled again after this module."""
    module = enable_extension(tmp_path_factory.mktemp("extensions"))
    assert module is not None
    yield module
    disable_extension()


def submodule(ext, name: str):
    """A module of the enabled extension's add-on, e.g. submodule(ext, "conversion")."""
    return importlib.import_module(f"{ext.__name__}.addon.{name}")


def ext_load_motion(ext, path: Path):
    """The motion file at `path`, read by the enabled extension's own copy of the numpy layer."""
    return importlib.import_module(f"{ext.__name__}.core.common.motionfile").load_motion(path)


def counts() -> dict[str, int]:
    return {"objects": len(bpy.data.objects), "armatures": len(bpy.data.armatures), "actions": len(bpy.data.actions),
            "meshes": len(bpy.data.meshes), "collections": len(bpy.data.collections)}


def world_joints(obj: bpy.types.Object, names: list[str], frame: int) -> np.ndarray:
    """(J, 3) world positions of the named bones' heads in the evaluated pose at `frame`, metres."""
    bpy.context.scene.frame_set(frame)
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    matrix = np.array(evaluated.matrix_world)
    heads = np.array([np.array(evaluated.pose.bones[n].head) for n in names])
    return heads @ matrix[:3, :3].T + matrix[:3, 3]


def fk_blender(motion, frames: list[int]) -> np.ndarray:
    """(len(frames), J, 3) the motion file's forward kinematics, in Blender world axes."""
    positions = motion.positions()[frames]
    return positions @ MIMIC_TO_BLENDER.T


# --- registration ----------------------------------------------------------------------------------------------

def test_register_unregister_register_leaves_nothing_behind(ext) -> None:
    package = ext.addon
    classes = package._classes()
    names = {c.__name__ for c in classes}
    assert {"MIMIC_PT_main", "MIMIC_PG_settings", "MIMIC_OT_import_video", "MIMIC_OT_export",
            "MIMIC_OT_check_core", "MIMIC_PG_retarget"} <= names
    assert all(c.is_registered for c in classes)
    assert "mimic" in bpy.types.Scene.bl_rna.properties
    assert isinstance(bpy.context.scene.mimic.retarget, ext.addon.retarget_ui.MIMIC_PG_retarget)
    assert len(package._cli_handles) == 1
    assert _op_exists("mimic.import_video") and _op_exists("mimic.export")

    disable_extension()
    assert not any(c.is_registered for c in classes)
    assert "mimic" not in bpy.types.Scene.bl_rna.properties
    assert not hasattr(bpy.types.Scene, "mimic")
    assert not _op_exists("mimic.import_video") and not _op_exists("mimic.export")
    assert package._cli_handles == []
    assert ADDON not in bpy.context.preferences.addons

    module = addon_utils.enable(ADDON, default_set=True, handle_error=_raise)
    classes = module.addon._classes()
    assert all(c.is_registered for c in classes)
    assert bpy.context.scene.mimic.cutoff_hz == pytest.approx(6.0)
    assert len(module.addon._cli_handles) == 1


def _op_exists(idname: str) -> bool:
    category, name = idname.split(".")
    try:
        getattr(getattr(bpy.ops, category), name).get_rna_type()
    except (KeyError, AttributeError):
        return False
    return True


def test_addon_never_imports_heavy_packages(tmp_path: Path) -> None:
    """Blender's Python has no torch, mediapipe, cv2 or scipy: enabling the add-on and importing every module of
    it (batch included) must not need them."""
    (tmp_path / "mimic").symlink_to(ROOT, target_is_directory=True)
    code = f"""
import importlib, pkgutil, sys
import bpy
import addon_utils
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.context.preferences.extensions.repos.new(name="t", module="t", custom_directory={str(tmp_path)!r}, source="USER")
mod = addon_utils.enable("bl_ext.t.mimic", default_set=True)
for info in pkgutil.iter_modules(mod.addon.__path__):
    importlib.import_module(mod.addon.__name__ + "." + info.name)
print("HEAVY", sorted(m for m in ("torch", "mediapipe", "cv2", "scipy") if m in sys.modules))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert "HEAVY []" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]


# --- the import operator on a real clip -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def imported(ext, walk_clip: Path, tmp_path_factory: pytest.TempPathFactory):
    """Run the import operator as a script does (its own properties, in background mode: the core subprocess, then
    the scene) once on a short range of the walking clip; keep a copy of the motion file it imported."""
    keep = tmp_path_factory.mktemp("imported")
    conversion_cls = submodule(ext, "conversion").Conversion
    original = conversion_cls.cleanup

    def cleanup_keeping_motion(self) -> None:
        if self.job.output.is_file():
            shutil.copy(self.job.output, keep / "motion.npz")
        original(self)

    assert bpy.app.background and bpy.context.scene.mimic.filepath == ""  # the panel's settings play no part
    conversion_cls.cleanup = cleanup_keeping_motion
    try:
        result = bpy.ops.mimic.import_video(filepath=str(walk_clip), use_range=True, start_s=CLIP_RANGE[0],
                                            end_s=CLIP_RANGE[1])
    finally:
        conversion_cls.cleanup = original
    assert result == {"FINISHED"}
    motion = load_motion(keep / "motion.npz")
    armature = bpy.context.view_layer.objects.active
    return armature, motion


def test_import_builds_armature_and_action_matching_fk(imported) -> None:
    armature, motion = imported
    frames = motion.num_frames
    assert frames == pytest.approx((CLIP_RANGE[1] - CLIP_RANGE[0]) * motion.fps, abs=2)
    assert armature.type == "ARMATURE" and armature.name == "sports2d_walk"
    action = armature.animation_data.action
    assert action.name == "sports2d_walk"
    assert [b.name for b in armature.data.bones] == list(motion.skeleton.names)
    fcurves = [fc for layer in action.layers for strip in layer.strips for bag in strip.channelbags
               for fc in bag.fcurves]
    assert len(fcurves) == 4 * motion.skeleton.num_joints + 3
    assert all(len(fc.keyframe_points) == frames for fc in fcurves)
    assert tuple(action.frame_range) == (1.0, float(frames))
    scene = bpy.context.scene
    assert (scene.frame_start, scene.frame_end) == (1, frames)
    assert scene.render.fps / scene.render.fps_base == pytest.approx(motion.fps)
    # Bones point along themselves, so their rest frames are not world-aligned like Mimic's joints.
    rest = np.array([np.array(b.matrix_local.to_3x3()) for b in armature.data.bones])
    assert np.abs(rest - np.eye(3)).max(axis=(1, 2)).max() > 0.5
    check = [0, frames // 3, frames // 2, frames - 1]
    expected = fk_blender(motion, check)
    for i, f in enumerate(check):
        got = world_joints(armature, list(motion.skeleton.names), f + 1)
        assert np.abs(got - expected[i]).max() < TOLERANCE_M
    # The motion really moves: the check is not passing on a still pose.
    assert np.abs(expected[-1] - expected[0]).max() > 0.05


def test_exported_bvh_reimports_to_same_positions(imported, tmp_path: Path) -> None:
    armature, motion = imported
    names = list(motion.skeleton.names)
    path = tmp_path / "walk.bvh"
    with bpy.context.temp_override(active_object=armature, object=armature):
        assert bpy.ops.mimic.export(filepath=str(path), format="bvh") == {"FINISHED"}
    text = path.read_text()
    assert "CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation" in text
    assert text.count("CHANNELS 6") == 1 and text.count("CHANNELS 3 Zrotation Xrotation Yrotation") == len(names) - 1
    data = read_bvh(path)
    assert data.num_frames == motion.num_frames and data.fps == pytest.approx(motion.fps, rel=1e-4)
    rest = data.positions()[0]
    assert rest[names.index("Head"), 1] > rest[names.index("Hips"), 1] + 0.3  # Y up
    np.testing.assert_allclose(data.positions(), motion.positions(), atol=TOLERANCE_M)

    before = set(bpy.data.objects)
    bpy.ops.import_anim.bvh(filepath=str(path), update_scene_fps=False, update_scene_duration=False)
    (bvh_obj,) = [o for o in bpy.data.objects if o not in before]
    check = [0, motion.num_frames // 2, motion.num_frames - 1]
    expected = fk_blender(motion, check)
    for i, f in enumerate(check):
        assert np.abs(world_joints(bvh_obj, names, f + 1) - expected[i]).max() < TOLERANCE_M
    bpy.data.objects.remove(bvh_obj)


def fbx_header(path: Path) -> tuple[dict[bytes, object], dict[bytes, dict[bytes, object]]]:
    """The FBX file's global settings and each Model node's properties by name (first the armature's root node),
    read with Blender's own FBX parser."""
    parse_fbx = importlib.import_module("io_scene_fbx.parse_fbx")
    root, _ = parse_fbx.parse(str(path))

    def child(elem, ident: bytes):
        return next(e for e in elem.elems if e.id == ident)

    def props(elem) -> dict[bytes, object]:
        rows = child(elem, b"Properties70").elems
        return {p.props[0]: (p.props[4] if len(p.props) == 5 else list(p.props[4:])) for p in rows}

    models = {m.props[1].split(b"\x00")[0]: props(m) for m in child(root, b"Objects").elems if m.id == b"Model"}
    return props(child(root, b"GlobalSettings")), models


def test_exported_fbx_reimports_to_same_positions(imported, tmp_path: Path) -> None:
    armature, motion = imported
    names = list(motion.skeleton.names)
    path = tmp_path / "walk.fbx"
    actions = len(bpy.data.actions)
    bpy.context.scene.frame_set(1)
    with bpy.context.temp_override(active_object=armature, object=armature):
        assert bpy.ops.mimic.export(filepath=str(path), format="fbx") == {"FINISHED"}
    settings, models = fbx_header(path)
    assert (settings[b"UpAxis"], settings[b"UpAxisSign"], settings[b"FrontAxis"], settings[b"FrontAxisSign"]) == \
        (1, 1, 2, 1)  # Y up, +Z front: what Unity expects
    assert settings[b"UnitScaleFactor"] == pytest.approx(100.0)  # 1 file unit = 1 m: Unity's scale factor is 1
    root_node = models[armature.name.encode()]
    np.testing.assert_allclose(root_node[b"Lcl Rotation"], 0.0, atol=1e-3)  # no -90 degree root turn
    np.testing.assert_allclose(root_node[b"Lcl Scaling"], 1.0, atol=1e-6)  # no 100x root scale
    # The bones' own transforms, which Unity builds the avatar from, are the rest (T-)pose, not the current frame:
    # the same as an export of the armature held in its rest position.
    assert bpy.context.scene.frame_current == 1 and tuple(armature.animation_data.action.frame_range) == \
        (1.0, float(motion.num_frames))
    armature.data.pose_position = "REST"
    armature.select_set(True)
    reference = tmp_path / "rest.fbx"
    try:
        bpy.ops.export_scene.fbx(filepath=str(reference), use_selection=True, object_types={"ARMATURE"},
                                 add_leaf_bones=False, bake_anim=False, apply_scale_options="FBX_SCALE_UNITS")
    finally:
        armature.data.pose_position = "POSE"
    rest_models = fbx_header(reference)[1]
    for bone in names:
        for prop in (b"Lcl Translation", b"Lcl Rotation"):
            np.testing.assert_allclose(models[bone.encode()].get(prop, [0.0] * 3),  # absent = zero
                                       rest_models[bone.encode()].get(prop, [0.0] * 3), atol=1e-3)
    before = set(bpy.data.objects)
    bpy.ops.import_scene.fbx(filepath=str(path), anim_offset=0.0)
    new = [o for o in bpy.data.objects if o not in before]
    assert [o.type for o in new] == ["ARMATURE"]  # armature only, no meshes, cameras or lights
    fbx_obj = new[0]
    assert [b.name for b in fbx_obj.data.bones] == names  # no leaf bones added
    scale = np.array(fbx_obj.matrix_world.to_scale())
    np.testing.assert_allclose(scale, 1.0, atol=1e-6)  # metres in, metres out: 1:1
    check = [0, motion.num_frames // 2, motion.num_frames - 1]
    expected = fk_blender(motion, check)
    for i, f in enumerate(check):
        assert np.abs(world_joints(fbx_obj, names, f + 1) - expected[i]).max() < TOLERANCE_M
    bpy.data.batch_remove([fbx_obj, fbx_obj.data, fbx_obj.animation_data.action])
    assert len(bpy.data.actions) == actions  # the temporary rest-pose action is gone


def test_every_registered_format_exports_through_the_one_operator(imported, ext, tmp_path: Path) -> None:
    """The export operator offers exactly the registry's formats, and each writes its file (named with the format's
    extension, no temp file left) that reads back as that format; unity_fbx passes the Unity Humanoid checker."""
    armature, motion = imported
    registry = submodule(ext, "exporters").EXPORTERS
    assert {"bvh", "fbx", "glb", "unity_bvh", "unity_fbx"} <= set(registry)
    items = bpy.ops.mimic.export.get_rna_type().properties["format"].enum_items
    assert [item.identifier for item in items] == list(registry)
    magic = {".bvh": b"HIERARCHY", ".fbx": b"Kaydara FBX Binary", ".glb": b"glTF", ".vrma": b"glTF",
             ".vmd": b"Vocaloid Motion Data 0002"}
    objects, actions = set(bpy.data.objects), set(bpy.data.actions)
    bpy.context.scene.frame_set(1)
    # Active through the view layer, as a script or the panel would have it (not a context override: the Unity
    # checker re-imports with Blender's FBX importer, which switches modes on the context's active object).
    bpy.context.view_layer.objects.active = armature
    for exporter in registry.values():
        folder = tmp_path / exporter.id
        folder.mkdir()
        assert bpy.ops.mimic.export(filepath=str(folder / "walk"), format=exporter.id) == {"FINISHED"}
        (written,) = folder.iterdir()
        assert written.name == f"walk{exporter.extension}", exporter.id
        assert written.read_bytes().startswith(magic[exporter.extension]), exporter.id
        if exporter.extension == ".bvh":
            bvh = read_bvh(written)
            assert bvh.num_frames == motion.num_frames and bvh.names[0] == "Hips", exporter.id
        if exporter.check is not None:
            assert exporter.check(written) == [], exporter.id
    assert set(bpy.data.objects) == objects and set(bpy.data.actions) == actions  # temporary rigs removed
    assert armature.animation_data.action.name == "sports2d_walk"


def test_export_failures_are_reported(imported, tmp_path: Path) -> None:
    armature, _ = imported
    with bpy.context.temp_override(active_object=armature, object=armature):
        with pytest.raises(RuntimeError, match="Output folder .*missing does not exist"):
            bpy.ops.mimic.export(filepath=str(tmp_path / "missing" / "walk.bvh"), format="bvh")
    still = bpy.data.objects.new("Still", bpy.data.armatures.new("Still"))
    bpy.context.scene.collection.objects.link(still)
    try:
        with bpy.context.temp_override(active_object=still, object=still):
            with pytest.raises(RuntimeError, match="Still has no action to export"):
                bpy.ops.mimic.export(filepath=str(tmp_path / "still.fbx"), format="unity_fbx")
    finally:
        bpy.data.batch_remove([still, still.data])
    assert list(tmp_path.iterdir()) == []


def test_keep_scene_fps_resamples(imported, ext, tmp_path: Path) -> None:
    """Keep Scene FPS: a 30 fps clip in a 60 fps scene gets 2F - 1 keys and every other frame is a clip frame."""
    _, motion = imported
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 60, 1.0
    data = ext_load_motion(ext, _save_copy(motion, tmp_path / "m.npz"))
    result = submodule(ext, "importer").import_motion(bpy.context, data, "at60", use_scene_fps=True)
    try:
        frames = 2 * motion.num_frames - 1
        assert result.frames == frames and (scene.render.fps, scene.frame_end) == (60, frames)
        check = [0, motion.num_frames // 2, motion.num_frames - 1]
        expected = fk_blender(motion, check)
        for i, f in enumerate(check):
            got = world_joints(result.armature, list(motion.skeleton.names), 2 * f + 1)
            assert np.abs(got - expected[i]).max() < TOLERANCE_M
        between = world_joints(result.armature, list(motion.skeleton.names), 2)
        assert np.abs(between - 0.5 * (expected[0] + fk_blender(motion, [1])[0])).max() < 0.02
    finally:
        bpy.data.batch_remove([result.armature, result.armature.data, result.action])


# --- failures leave the scene as it was -------------------------------------------------------------------------

def test_core_failure_reports_and_leaves_scene_unchanged(imported, ext, tmp_path: Path) -> None:
    scene = bpy.context.scene
    video = blank_video(tmp_path / "nobody.mp4", 12)
    before, timing = counts(), (scene.render.fps, scene.frame_start, scene.frame_end)
    with pytest.raises(RuntimeError, match="(?i)person"):
        bpy.ops.mimic.import_video(filepath=str(video))
    assert counts() == before
    assert (scene.render.fps, scene.frame_start, scene.frame_end) == timing


def test_failure_while_building_removes_everything(imported, ext, monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    """A failure after the armature and action exist (here injected into keying) must remove both and restore
    the scene's frame rate and range."""
    _, motion = imported
    importer = submodule(ext, "importer")
    real_key = importer.key_motion

    def key_then_fail(*args, **kwargs):
        real_key(*args, **kwargs)
        raise RuntimeError("injected failure after keying")

    scene = bpy.context.scene
    scene.render.fps, scene.frame_end = 24, 77
    before = counts()
    data = ext_load_motion(ext, _save_copy(motion, tmp_path / "m.npz"))
    monkeypatch.setattr(importer, "key_motion", key_then_fail)
    with pytest.raises(RuntimeError, match="injected"):
        importer.import_motion(bpy.context, data, "broken")
    assert counts() == before
    assert (scene.render.fps, scene.frame_end) == (24, 77)
    assert "broken" not in bpy.data.actions and "broken" not in bpy.data.armatures


def _save_copy(motion, path: Path) -> Path:
    from core.common.motionfile import save_motion

    save_motion(motion, path)
    return path


def test_target_selected_armature_retargets_or_fails_cleanly(ext, imported, walk_clip: Path) -> None:
    """Target: Selected Armature goes through addon/retarget/; a rig it cannot use leaves everything as it was,
    including the armature's current action."""
    armature, motion = imported
    scene = bpy.context.scene
    options = {"filepath": str(walk_clip), "use_range": True, "start_s": CLIP_RANGE[0], "end_s": CLIP_RANGE[1],
               "target": "SELECTED"}
    stick = bpy.data.objects.new("Stick", bpy.data.armatures.new("Stick"))
    scene.collection.objects.link(stick)
    with bpy.context.temp_override(active_object=stick, object=stick, edit_object=stick):
        bpy.context.view_layer.objects.active = stick
        bpy.ops.object.mode_set(mode="EDIT")
        bone = stick.data.edit_bones.new("Bone")
        bone.tail = (0.0, 0.0, 1.0)
        bpy.ops.object.mode_set(mode="OBJECT")
    previous = armature.animation_data.action
    try:
        before = counts()
        with pytest.raises(RuntimeError, match="not a humanoid rig"):
            bpy.ops.mimic.import_video(**options)
        assert counts() == before and stick.animation_data is None

        bpy.context.view_layer.objects.active = armature
        assert bpy.ops.mimic.import_video(**options) == {"FINISHED"}
        action = armature.animation_data.action
        assert action is not previous and action.name.startswith("sports2d_walk")
        assert counts() == {**before, "actions": before["actions"] + 1}  # a new action, no new armature
        assert tuple(action.frame_range) == (1.0, float(motion.num_frames))
    finally:
        armature.animation_data.action = previous
        bpy.data.batch_remove([stick, stick.data])


def test_target_selected_needs_an_armature(ext, imported, walk_clip: Path) -> None:
    bpy.context.view_layer.objects.active = None
    before = counts()
    with pytest.raises(RuntimeError, match="Select the armature"):
        bpy.ops.mimic.import_video(filepath=str(walk_clip), target="SELECTED")
    assert counts() == before


def test_cancel_mid_run_kills_core_and_leaves_scene_unchanged(ext, imported, balance_clip: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    conversion_mod = submodule(ext, "conversion")
    job_mod = submodule(ext, "job")
    monkeypatch.setenv("MIMIC_CACHE_DIR", str(tmp_path / "cache"))  # no cached detections: the core is mid-run
    before = counts()
    conversion = conversion_mod.Conversion(balance_clip, job_mod.CoreOptions(start_s=0.0, end_s=1.5)).start()
    folder = conversion.folder

    deadline = time.monotonic() + 120
    while conversion.poll() and conversion.job.state.stage not in ("detect", "lift"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert conversion.job.running, "the core finished before it could be cancelled"
    pid = conversion.job._proc.pid
    conversion.cancel()
    assert not conversion.job.running
    assert conversion.job.state.returncode not in (None, 0)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not folder.exists()
    with pytest.raises(submodule(ext, "errors").CoreCancelled):
        conversion.finish(bpy.context)
    assert counts() == before


def test_job_progress_follows_the_core_stages_to_done(ext, balance_clip: Path, tmp_path: Path) -> None:
    """The real core's JSON lines drive the job's state: stages in the core's order, a fraction that never goes
    back, and 1.0 with the output at the end."""
    job_mod = submodule(ext, "job")
    interpreter = submodule(ext, "interpreter")
    job = job_mod.CoreJob(interpreter.find_python(), balance_clip, tmp_path / "m.npz",
                          job_mod.CoreOptions(start_s=0.0, end_s=0.3)).start()
    fractions = []
    deadline = time.monotonic() + 120
    while job.poll():
        fractions.append(job.state.fraction)
        assert time.monotonic() < deadline
        time.sleep(0.02)
    fractions.append(job.state.fraction)
    assert job.result() == (tmp_path / "m.npz")
    assert [stage for stage, _ in job.state.stages] == list(job_mod.STAGE_WEIGHTS)
    assert all(b >= a for a, b in zip(fractions, fractions[1:])) and fractions[-1] == 1.0


def test_check_reports_core_version_or_fix(ext) -> None:
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.python_path = ""
    assert bpy.ops.mimic.check_core() == {"FINISHED"}
    assert prefs.check_message.startswith("mimic 0.1.0")
    prefs.python_path = "/nonexistent/python"
    try:
        with pytest.raises(RuntimeError, match="does not exist"):
            bpy.ops.mimic.check_core()
        assert "venv" in prefs.check_message
    finally:
        prefs.python_path = ""


def test_cli_command_entry_point(ext, tmp_path: Path) -> None:
    """What `blender -c mimic convert ...` calls: same arguments as the batch script, exit code 2 on bad input."""
    batch = submodule(ext, "batch")
    assert batch.cli_main(["convert", "--input", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    assert batch.cli_main(["convert", "--help"]) == 0
    assert batch.cli_main(["convert", "--input", str(tmp_path)]) == 2  # --output missing


def test_panel_settings_become_core_arguments(ext) -> None:
    settings = bpy.context.scene.mimic
    job = submodule(ext, "job")
    keep = (settings.use_range, settings.start_s, settings.end_s, settings.person, settings.person_index,
            settings.cutoff_hz, settings.lifter, settings.solve)
    try:
        settings.use_range, settings.person, settings.cutoff_hz = False, "LEFT", 0.0
        argv = job.core_command("py", "/v.mp4", "/o.npz", settings.core_options())
        assert argv[:8] == ["py", "-m", "core", "/v.mp4", "-o", "/o.npz", "--progress", "json"]
        assert "--start" not in argv and argv[argv.index("--person") + 1] == "left"
        assert argv[argv.index("--cutoff") + 1] == "0" and argv[argv.index("--lifter") + 1] == "tcn"
        assert argv[argv.index("--solve") + 1] == "clip" and argv[argv.index("--foot-lock") + 1] == "auto"
        settings.use_range, settings.start_s, settings.end_s = True, 1.25, 3.5
        settings.person, settings.person_index, settings.cutoff_hz = "INDEX", 2, 4.5
        settings.lifter, settings.solve = "MEDIAPIPE", "FRAME"
        argv = job.core_command("py", "/v.mp4", "/o.npz", settings.core_options())
        assert argv[argv.index("--solve") + 1] == "frame"
        assert argv[argv.index("--start") + 1] == "1.25" and argv[argv.index("--end") + 1] == "3.5"
        assert argv[argv.index("--person") + 1] == "2" and argv[argv.index("--cutoff") + 1] == "4.5"
        assert argv[argv.index("--lifter") + 1] == "mediapipe"
    finally:
        (settings.use_range, settings.start_s, settings.end_s, settings.person, settings.person_index,
         settings.cutoff_hz, settings.lifter, settings.solve) = keep
