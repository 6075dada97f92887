"""Unity presets in real Blender (addon/exporters: unity_fbx, unity_bvh, glb; the checker addon/unity.py): the Unity
Humanoid FBX passes the checker and carries the motion; the checker fails, naming the problem, on FBX files that break
a requirement; the Unity BVH preset's layout; a GLB re-imported by Blender's glTF importer carries the motion."""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
import pytest
from test_retarget import (CHECK_FRAMES, MAX_ANGLE_DEG, angle_deg, awkward_armature, build_armature,
                           mpfb2_armature, reset_blender, source_world)

from addon import exporters, retarget, rigmap, unity
from addon.errors import ExportError
from addon.exporters import fbx
from addon.exporters.staging import on_unity_rig
from core.bvh import read_bvh
from core.common.motionfile import Motion, load_motion, save_motion

LIMBS = [("LeftUpperArm", "LeftLowerArm"), ("LeftLowerArm", "LeftHand"), ("RightUpperArm", "RightLowerArm"),
         ("RightLowerArm", "RightHand"), ("LeftUpperLeg", "LeftLowerLeg"), ("LeftLowerLeg", "LeftFoot"),
         ("RightUpperLeg", "RightLowerLeg"), ("RightLowerLeg", "RightFoot"), ("Hips", "Spine"), ("Neck", "Head")]


@pytest.fixture(scope="module")
def motion(tmp_path_factory: pytest.TempPathFactory) -> Motion:
    from test_retarget import known_motion

    path = tmp_path_factory.mktemp("motion") / "walk.npz"
    save_motion(known_motion(), path)
    return load_motion(path)


def animated(convention_or_rig: str, motion: Motion, mpfb2: Path | None = None) -> bpy.types.Object:
    """A user's character (awkward convention rig, or an MPFB2 rig) with the known motion retargeted onto it."""
    reset_blender()
    if mpfb2 is not None:
        obj = mpfb2_armature(mpfb2 / f"rig.{convention_or_rig}.json")
    else:
        obj, _ = awkward_armature(convention_or_rig, seed=4, fbx_like=convention_or_rig == "mixamo")
    retarget.retarget_motion(motion, obj, "Walk")
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, motion.num_frames
    return obj


def import_fbx(path: Path) -> bpy.types.Object:
    before = set(bpy.data.objects)
    bpy.ops.import_scene.fbx(filepath=str(path), anim_offset=0.0)  # FBX time t -> frame t * fps, as exported
    return next(o for o in bpy.data.objects if o not in before and o.type == "ARMATURE")


def check_directions(obj: bpy.types.Object, motion: Motion, first_frame: int) -> float:
    """Worst angle (degrees) between the limbs of Unity-named armature `obj` and the source motion."""
    src_pos, _, _ = source_world(motion)
    index = {n: i for i, n in enumerate(motion.names)}
    worst = 0.0
    for f in CHECK_FRAMES:
        bpy.context.scene.frame_set(first_frame + f)
        mw = obj.matrix_world
        head = {pb.name: np.array(mw @ pb.head) for pb in obj.pose.bones}
        for a, b in LIMBS:
            err = angle_deg(head[b] - head[a], src_pos[f, index[b]] - src_pos[f, index[a]])
            worst = max(worst, err)
    return worst


@pytest.mark.parametrize("rig", ["mmd", "mixamo", "default"])
def test_unity_fbx_preset_passes_the_checker_and_carries_the_motion(motion: Motion, mpfb2_rigs: Path,
                                                                   tmp_path: Path, rig: str) -> None:
    obj = animated(rig, motion, mpfb2_rigs if rig == "default" else None)
    objects, actions = set(bpy.data.objects), set(bpy.data.actions)
    path = exporters.get("unity_fbx").export(bpy.context, obj, tmp_path / "hero.fbx")
    assert set(bpy.data.objects) == objects and set(bpy.data.actions) == actions
    assert obj.animation_data.action.name == "Walk"
    assert unity.check_unity_fbx(path) == []
    unity.assert_unity_fbx(path)
    assert set(bpy.data.objects) == objects  # the checker removes what it imported
    imported = import_fbx(path)
    assert unity_bones({b.name for b in imported.data.bones}, has_fingers=rig == "default")
    assert imported.data.bones["Hips"].parent is None
    assert check_directions(imported, motion, 1) < MAX_ANGLE_DEG
    check_feet_on_floor(imported, motion, ankle_height(obj), toes_on_floor=rig == "default")


def unity_bones(names: set[str], has_fingers: bool) -> bool:
    """The Unity-named skeleton is Mimic's body, plus the 30 finger bones when the character has them (the MPFB2
    default rig; the synthetic test characters have none)."""
    human = rigmap.load_humanoid()
    return names == set(human.names) | (set(human.fingers) if has_fingers else set())


def ankle_height(obj: bpy.types.Object) -> float:
    """Mean rest ankle height of a character above the lowest point of its feet, metres."""
    bone_map = rigmap.detect(rigmap.armature_bones(obj)).bone_map
    mw = obj.matrix_world
    feet = [obj.data.bones[bone_map[f]] for f in ("LeftFoot", "RightFoot")]
    floor = min(min((mw @ b.head_local).z, (mw @ b.tail_local).z) for f in feet for b in [f, *f.children_recursive])
    return float(np.mean([(mw @ f.head_local).z - floor for f in feet]))


def check_feet_on_floor(obj: bpy.types.Object, motion: Motion, ankle: float, toes_on_floor: bool) -> None:
    """The rest stands on z = 0 (the MPFB2 default rig stands 0.8 m below its origin in Blender) with the ankles as
    high as the character's, and the lower foot is as high above its rest as the source's lower foot, scaled by the
    leg-length ratio, within 1 cm. toes_on_floor: also the toes (a real rig, not one with bones pointing anywhere)."""
    rest = {b.name: (np.array(obj.matrix_world @ b.head_local), np.array(obj.matrix_world @ b.tail_local))
            for b in obj.data.bones}
    assert rest["LeftFoot"][0][2] == pytest.approx(ankle, abs=1e-3)
    assert rest["RightFoot"][0][2] == pytest.approx(ankle, abs=1e-3)
    if toes_on_floor:
        assert -0.02 < min(min(rest[t][0][2], rest[t][1][2]) for t in ("LeftToes", "RightToes")) < 0.02
    src_pos, _, src_rest = source_world(motion)
    index = {n: i for i, n in enumerate(motion.names)}
    leg = lambda p: sum(np.linalg.norm(p[f"{s}{b}"] - p[f"{s}{a}"]) for s in ("Left", "Right")  # noqa: E731
                        for a, b in (("UpperLeg", "LowerLeg"), ("LowerLeg", "Foot")))
    scale = leg({n: h for n, (h, _) in rest.items()}) / leg({n: src_rest[i] for n, i in index.items()})
    for f in CHECK_FRAMES:
        bpy.context.scene.frame_set(1 + f)
        got = min((obj.matrix_world @ obj.pose.bones[foot].head).z - rest[foot][0][2]
                  for foot in ("LeftFoot", "RightFoot"))
        want = min(src_pos[f, index[foot], 2] - src_rest[index[foot], 2] for foot in ("LeftFoot", "RightFoot"))
        assert abs(got - scale * want) < 0.01, (f, got, scale * want)


def _export_raw(obj: bpy.types.Object, path: Path, **changes: object) -> Path:
    """Export `obj` with Blender's FBX exporter and the add-on's options changed by `changes` (bypassing the preset)."""
    for o in bpy.context.view_layer.objects:
        o.select_set(False)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.export_scene.fbx(filepath=str(path), **dict(fbx.OPTIONS, **changes))
    return path


@pytest.mark.parametrize("case, changes, expected", [
    ("leaf", {"add_leaf_bones": True}, "Leaf bones present"),
    ("z_up", {"axis_up": "Z", "axis_forward": "Y"}, "FBX axes: UpAxis is 2, Unity expects 1"),
    ("centimetres", {"apply_scale_options": "FBX_SCALE_NONE", "apply_unit_scale": False, "global_scale": 100.0},
     "FBX unit scale is 1.0, not 100"),
    ("no_animation", {"bake_anim": False}, "No baked animation"),
])
def test_checker_fails_on_fbx_that_breaks_a_requirement(motion: Motion, tmp_path: Path, case: str,
                                                        changes: dict, expected: str) -> None:
    obj = animated("unity", motion)
    with on_unity_rig(bpy.context, obj) as rig:
        path = _export_raw(rig, tmp_path / f"{case}.fbx", **changes)
    problems = unity.check_unity_fbx(path)
    assert any(p.startswith(expected) for p in problems), problems
    with pytest.raises(unity.UnityCheckError, match=f"{case}.fbx is not a valid Unity Humanoid FBX"):
        unity.assert_unity_fbx(path)


def test_checker_fails_on_the_raw_a_pose_rig(motion: Motion, tmp_path: Path) -> None:
    """The user's A-pose MMD rig exported as it is (at its rest): not a T-pose, and a root bone above the hips."""
    obj = animated("mmd", motion)
    obj.data.pose_position = "REST"
    path = _export_raw(obj, tmp_path / "raw.fbx")
    problems = " ".join(unity.check_unity_fbx(path))
    assert "Rest pose is not a T-pose: LeftUpperArm points 40 degrees" in problems
    assert "The hips bone 'センター' is not the root of the armature (its parent is 'root')" in problems


def test_checker_names_missing_bones_of_a_non_humanoid(tmp_path: Path) -> None:
    reset_blender()
    bones = [("Body", None, np.zeros(3), np.array([0.0, 0.0, 1.0]), 0.0),
             ("Tail", "Body", np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.0, 2.0]), 0.0)]
    obj = build_armature("Snake", bones)
    path = _export_raw(obj, tmp_path / "snake.fbx", bake_anim=False)
    problems = unity.check_unity_fbx(path)
    assert any(p.startswith("Missing required Humanoid bones: Hips, Spine, Head, LeftUpperArm") for p in problems)
    assert unity.check_unity_fbx(tmp_path / "nothing.fbx") == [f"{tmp_path / 'nothing.fbx'} does not exist."]


def test_unity_bvh_preset(motion: Motion, tmp_path: Path) -> None:
    obj = animated("rigify", motion)
    path = exporters.get("unity_bvh").export(bpy.context, obj, tmp_path / "walk.bvh")
    bvh = read_bvh(path)
    assert bvh.names[0] == "Hips" and unity_bones(set(bvh.names), has_fingers=False)
    assert bvh.channels[0] == ["Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation"]
    assert all(c == ["Zrotation", "Xrotation", "Yrotation"] for c in bvh.channels[1:])
    assert bvh.num_frames == motion.num_frames
    off = dict(zip(bvh.names, bvh.offsets))
    # Y up, metres, T-pose rest (arms along +-X, legs down): the awkward rig's legs are 1.15 times the source's.
    assert 0.9 < off["Hips"][1] < 1.3 and off["Head"][1] > 0.05
    assert off["LeftLowerArm"][0] > 0.2 and abs(off["LeftLowerArm"][1]) < 1e-4
    assert off["RightLowerArm"][0] < -0.2 and off["LeftFoot"][1] < -0.3 and abs(off["LeftFoot"][0]) < 1e-4
    pos = bvh.positions()
    src_pos, _, _ = source_world(motion)
    index = {n: i for i, n in enumerate(motion.names)}
    bvh_index = {n: i for i, n in enumerate(bvh.names)}
    to_blender = lambda v: np.array([v[0], -v[2], v[1]])  # noqa: E731
    for f in CHECK_FRAMES:
        for a, b in LIMBS:
            got = to_blender(pos[f, bvh_index[b]] - pos[f, bvh_index[a]])
            assert angle_deg(got, src_pos[f, index[b]] - src_pos[f, index[a]]) < MAX_ANGLE_DEG, (f, a, b)


def test_glb_reimports_with_the_motion_and_its_mesh(motion: Motion, tmp_path: Path) -> None:
    """A real .glb (glTF binary magic, one file, no temp file left) that Blender's glTF importer reads back as an
    armature with an action over the clip's frames, the skinned mesh, and the character's pose at every check
    frame within 1 mm; an armature without an action is refused with a message."""
    obj = animated("vrm", motion)
    mesh = bpy.data.meshes.new("Body")
    mesh.from_pydata([(0, 0, 0), (0.1, 0, 0), (0, 0.1, 1.0)], [], [(0, 1, 2)])
    body = bpy.data.objects.new("Body", mesh)
    bpy.context.scene.collection.objects.link(body)
    body.parent = obj
    body.modifiers.new("Armature", "ARMATURE").object = obj
    body.vertex_groups.new(name=obj.data.bones[1].name).add([0, 1, 2], 1.0, "REPLACE")
    want = {}
    for f in CHECK_FRAMES:
        bpy.context.scene.frame_set(1 + f)
        want[f] = {pb.name: np.array(obj.matrix_world @ pb.head) for pb in obj.pose.bones}
    moved = max(np.linalg.norm(want[CHECK_FRAMES[-1]][n] - want[CHECK_FRAMES[0]][n]) for n in want[CHECK_FRAMES[0]])
    assert moved > 0.05  # the check below is not passing on a still pose

    path = exporters.get("glb").export(bpy.context, obj, tmp_path / "hero.glb")
    assert path == tmp_path / "hero.glb" and path.read_bytes()[:4] == b"glTF"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hero.glb"]  # no temp file left behind

    reset_blender()
    assert bpy.ops.import_scene.gltf(filepath=str(path)) == {"FINISHED"}
    (imported,) = [o for o in bpy.data.objects if o.type == "ARMATURE"]
    skinned = [o for o in bpy.data.objects if o.type == "MESH" and o.find_armature() == imported]
    assert [len(o.data.vertices) for o in skinned] == [3]  # the body, deformed by the armature
    assert {b.name for b in imported.data.bones} == set(want[0])
    action = imported.animation_data.action
    assert action is not None
    start, end = action.frame_range
    assert end - start == pytest.approx(motion.num_frames - 1, abs=1)
    for f in CHECK_FRAMES:
        bpy.context.scene.frame_set(int(start) + f)
        got = {pb.name: np.array(imported.matrix_world @ pb.head) for pb in imported.pose.bones}
        assert max(np.linalg.norm(got[n] - want[f][n]) for n in want[f]) < 1e-3, f

    still = bpy.data.objects.new("Still", bpy.data.armatures.new("Still"))
    with pytest.raises(ExportError, match="Still has no action to export"):
        exporters.get("glb").export(bpy.context, still, tmp_path / "still.glb")
    assert not (tmp_path / "still.glb").exists()
