"""Retargeting in real Blender: a known motion onto every convention's armature built with awkward rests (A-pose,
rolled bones, bones pointing along other axes, other proportions, an FBX-like object transform) and onto the real
MPFB2 rigs; limb directions, feet heights, NaNs, and the target's other actions and NLA."""

from __future__ import annotations

import json
import math
from pathlib import Path

import bpy
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from addon import retarget, rigmap
from addon.motionfile import MotionData, read_motion
from core.motion import Motion, save_motion
from core.rotations import to_wxyz
from core.skeleton import humanoid

FRAMES = 24
CHECK_FRAMES = (0, 5, 9, 14, 18, 23)
MAX_ANGLE_DEG = 2.0
MAX_FOOT_ERROR_M = 0.01


def reset_blender() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)


def to_blender(v: np.ndarray) -> np.ndarray:
    """Mimic axes (Y up, faces +Z) -> Blender axes (Z up, faces -Y)."""
    v = np.asarray(v, dtype=np.float64)
    return np.stack([v[..., 0], -v[..., 2], v[..., 1]], axis=-1)


def known_motion() -> Motion:
    """A walk-like motion on the canonical humanoid: travel along +Z with bobbing hips, swinging legs and arms,
    bending knees and elbows, arms lowered from the T-pose, a twisting torso and a nodding head."""
    sk = humanoid()
    t = np.linspace(0.0, 2.0 * np.pi, FRAMES)
    rot = np.zeros((FRAMES, sk.num_joints, 4))
    rot[..., 0] = 1.0

    def put(name: str, euler: np.ndarray) -> None:
        rot[:, sk.index(name)] = to_wxyz(Rotation.from_euler("xyz", euler))

    zeros = np.zeros(FRAMES)
    swing = 0.5 * np.sin(t)
    put("Hips", np.stack([0.05 * np.sin(2 * t), 0.15 * np.sin(t), zeros], 1))
    put("Spine", np.stack([0.1 + zeros, -0.2 * np.sin(t), zeros], 1))
    put("Chest", np.stack([zeros, -0.1 * np.sin(t), 0.05 * np.cos(t)], 1))
    put("Head", np.stack([0.3 * np.sin(2 * t), 0.2 * np.cos(t), zeros], 1))
    put("LeftUpperLeg", np.stack([-swing, zeros, 0.05 + zeros], 1))
    put("RightUpperLeg", np.stack([swing, zeros, -0.05 + zeros], 1))
    put("LeftLowerLeg", np.stack([0.6 * np.clip(np.sin(t + 1.0), 0, None), zeros, zeros], 1))
    put("RightLowerLeg", np.stack([0.6 * np.clip(-np.sin(t + 1.0), 0, None), zeros, zeros], 1))
    put("LeftFoot", np.stack([-0.2 * np.sin(t), zeros, zeros], 1))
    put("LeftToes", np.stack([0.3 * np.clip(np.sin(t), 0, None), zeros, zeros], 1))
    put("LeftShoulder", np.stack([zeros, zeros, 0.1 * np.sin(t)], 1))
    put("LeftUpperArm", np.stack([zeros, 0.6 * np.sin(t), -1.1 + 0.2 * np.cos(t)], 1))
    put("RightUpperArm", np.stack([0.3 * np.sin(t), -0.6 * np.sin(t), 1.1 + zeros], 1))
    put("LeftLowerArm", np.stack([zeros, 0.8 + 0.4 * np.sin(t), zeros], 1))
    put("RightLowerArm", np.stack([0.3 * np.cos(t), -0.9 + zeros, zeros], 1))
    put("LeftHand", np.stack([0.4 * np.sin(t), zeros, 0.3 * np.cos(t)], 1))
    put("RightHand", np.stack([zeros, 0.5 * np.sin(2 * t), zeros], 1))
    root = np.stack([0.1 * np.sin(t), 0.9 + 0.03 * np.cos(2 * t), np.linspace(0.0, 1.5, FRAMES)], 1)
    return Motion(skeleton=sk, fps=24.0, rotations=rot, root_positions=root)


@pytest.fixture(scope="module")
def motion(tmp_path_factory: pytest.TempPathFactory) -> MotionData:
    path = tmp_path_factory.mktemp("motion") / "walk.npz"
    save_motion(known_motion(), path)
    return read_motion(path)


def source_world(motion: MotionData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source joint positions (F, J, 3) and end-site tips (F, J, 3) over frames and at rest (J, 3), Blender axes,
    computed with core's FK (scipy), independently of the code under test."""
    from core.skeleton import Skeleton

    sk = Skeleton(tuple(motion.names), motion.parents, motion.offsets, motion.end_sites)
    pos = sk.forward_kinematics(motion.rotations, motion.root_positions)
    glob = sk.global_rotations(motion.rotations)
    tips = np.stack([pos[:, j] + glob[j].apply(sk.end_sites[j]) for j in range(sk.num_joints)], axis=1)
    return to_blender(pos), to_blender(tips), to_blender(sk.rest_positions())


# --- armatures --------------------------------------------------------------------------------------------------------

def build_armature(name: str, bones: list[tuple[str, str | None, np.ndarray, np.ndarray, float]],
                   matrix_world: np.ndarray | None = None) -> bpy.types.Object:
    """An armature object from (name, parent, head, tail, roll) in armature space, parents listed first."""
    data = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(obj)
    if matrix_world is not None:
        obj.matrix_world = [list(r) for r in matrix_world]
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    for bone_name, parent, head, tail, roll in bones:
        eb = data.edit_bones.new(bone_name)
        eb.head, eb.tail, eb.roll = tuple(head), tuple(tail), roll
        if parent is not None:
            eb.parent = data.edit_bones[parent]
    bpy.ops.object.mode_set(mode="OBJECT")
    return obj


def mpfb2_armature(path: Path) -> bpy.types.Object:
    data = json.loads(path.read_text(encoding="utf-8"))
    raw = data["bones"] if "bones" in data else data
    order: list[str] = []

    def visit(n: str) -> None:
        if n in order:
            return
        if raw[n]["parent"]:
            visit(raw[n]["parent"])
        order.append(n)

    for n in raw:
        visit(n)
    bones = [(n, raw[n]["parent"] or None, np.array(raw[n]["head"]["default_position"]),
              np.array(raw[n]["tail"]["default_position"]), float(raw[n]["roll"])) for n in order]
    return build_armature(path.stem, bones)


def awkward_armature(convention: str, pick: int = 0, *, a_pose_deg: float = 40.0, legs: float = 1.15,
                     arms: float = 0.9, sideways: bool = True, fbx_like: bool = False,
                     seed: int = 0) -> tuple[bpy.types.Object, dict[str, str]]:
    """A convention's humanoid from rigs/ data with awkward rests: A-pose arms, random rolls, bones whose local Y
    points sideways instead of at the child, other leg/arm proportions, a twist bone and a root bone; with
    fbx_like, an armature in Y-up centimetres under an object turned 90 degrees with scale 0.01."""
    human = rigmap.load_humanoid()
    conv = rigmap.load_conventions()[convention]
    names = {j: conv.bones[j][min(pick, len(conv.bones[j]) - 1)] for j in human.names}
    rng = np.random.default_rng(seed)
    offsets = {j: np.array(human.offsets[j]) for j in human.names}
    segment = {"LowerLeg": 1.2, "Foot": 0.8}  # long thighs, short shins: feet stay down only if the hips are corrected
    for j in human.names:
        if "Leg" in j or "Foot" in j:
            offsets[j] = offsets[j] * legs * segment.get(j.removeprefix("Left").removeprefix("Right"), 1.0)
        if "Arm" in j or "Hand" in j:
            offsets[j] = offsets[j] * arms
    pos: dict[str, np.ndarray] = {}
    for j in human.names:
        parent = human.parents[j]
        pos[j] = offsets[j] if parent is None else pos[parent] + offsets[j]
    tips = {j: pos[j] + np.array(human.ends[j]) for j in human.names}
    for side, sign in (("Left", -1.0), ("Right", 1.0)):
        turn = Rotation.from_euler("z", sign * a_pose_deg, degrees=True)
        pivot = pos[f"{side}UpperArm"]
        for j in (f"{side}LowerArm", f"{side}Hand"):
            pos[j] = pivot + turn.apply(pos[j] - pivot)
        tips[f"{side}Hand"] = pos[f"{side}Hand"] + turn.apply(np.array(human.ends[f"{side}Hand"]) * arms)
    pos = {j: to_blender(p) for j, p in pos.items()}
    tips = {j: to_blender(p) for j, p in tips.items()}
    bones: list[tuple[str, str | None, np.ndarray, np.ndarray, float]] = [
        ("root", None, np.zeros(3), np.array([0.0, 0.2, 0.0]), 0.0)]
    for j in human.names:
        parent = human.parents[j]
        aim = human.aim.get(j)
        tip = pos[aim] if aim else tips[j]
        length = max(np.linalg.norm(tip - pos[j]), 0.05)
        if sideways and rng.random() < 0.5:
            side_dir = np.cross(tip - pos[j], rng.normal(size=3))
            tip = pos[j] + side_dir / np.linalg.norm(side_dir) * length
        parent_name = "root" if parent is None else names[parent]
        if j.endswith("LowerArm"):
            parent_name = f"twist_{j}"
            up = human.parents[j]
            mid = 0.5 * (pos[up] + pos[j])
            bones.append((parent_name, names[up], mid, mid + 0.3 * (pos[j] - pos[up]), float(rng.uniform(-3, 3))))
        bones.append((names[j], parent_name, pos[j], tip, float(rng.uniform(-math.pi, math.pi))))
    for j in ("LeftHand", "RightHand"):
        for f in range(2):
            bones.append((f"finger{f}_{j}", names[j], tips[j], tips[j] + np.array([0.0, -0.03, -0.02]), 0.0))
    matrix = None
    if fbx_like:
        to_arm = np.diag([100.0, 100.0, 100.0]) @ Rotation.from_euler("x", -90, degrees=True).as_matrix()
        bones = [(n, p, to_arm @ h, to_arm @ t, r) for n, p, h, t, r in bones]
        matrix = np.eye(4)
        matrix[:3, :3] = Rotation.from_euler("x", 90, degrees=True).as_matrix() * 0.01
    return build_armature(f"{convention}_rig", bones, matrix), names


# --- checks -----------------------------------------------------------------------------------------------------------

def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    return math.degrees(math.acos(float(np.clip(np.dot(a, b), -1.0, 1.0))))


def posed_world(obj: bpy.types.Object, frame: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    bpy.context.scene.frame_set(frame)
    mw = obj.matrix_world
    return {pb.name: (np.array(mw @ pb.head), np.array(mw @ pb.tail)) for pb in obj.pose.bones}


def rest_world(obj: bpy.types.Object) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    mw = obj.matrix_world
    return {b.name: (np.array(mw @ b.head_local), np.array(mw @ b.tail_local)) for b in obj.data.bones}


def check_retarget(obj: bpy.types.Object, motion: MotionData, bone_map: dict[str, str],
                   action: bpy.types.Action) -> dict[str, float]:
    """Assert limb directions, feet heights and finite keys; return the worst figures."""
    human = rigmap.load_humanoid()
    src_pos, src_tips, src_rest = source_world(motion)
    index = {n: i for i, n in enumerate(motion.names)}
    rest = rest_world(obj)
    leg = lambda p, s: (np.linalg.norm(p[f"{s}LowerLeg"] - p[f"{s}UpperLeg"])  # noqa: E731
                        + np.linalg.norm(p[f"{s}Foot"] - p[f"{s}LowerLeg"]))
    t_rest = {j: rest[b][0] for j, b in bone_map.items()}
    s_rest = {j: src_rest[index[j]] for j in bone_map}
    scale = (leg(t_rest, "Left") + leg(t_rest, "Right")) / (leg(s_rest, "Left") + leg(s_rest, "Right"))
    worst_angle = worst_foot = 0.0
    for f in CHECK_FRAMES:
        posed = posed_world(obj, 1 + f)
        for j, bone in bone_map.items():
            aim = human.aim.get(j)
            while aim is not None and aim not in bone_map:
                aim = human.aim.get(aim)
            if aim is not None:
                got = posed[bone_map[aim]][0] - posed[bone][0]
                want = src_pos[f, index[aim]] - src_pos[f, index[j]]
            elif np.linalg.norm(motion.end_sites[index[j]]) > 0:
                got = posed[bone][1] - posed[bone][0]
                want = src_tips[f, index[j]] - src_pos[f, index[j]]
            else:  # the chain goes on in the source but not in the target: its bone's tail points anywhere
                continue
            err = angle_deg(got, want)
            worst_angle = max(worst_angle, err)
            assert err < MAX_ANGLE_DEG, (obj.name, f, j, err)
        heights = {s: src_pos[f, index[f"{s}Foot"], 2] - src_rest[index[f"{s}Foot"], 2] for s in ("Left", "Right")}
        support = min(heights, key=heights.get)
        feet = [support] + [s for s in heights if s != support and heights[s] - heights[support] < 0.002]
        for s in feet:
            got = posed[bone_map[f"{s}Foot"]][0][2] - rest[bone_map[f"{s}Foot"]][0][2]
            err = abs(got - scale * heights[s])
            worst_foot = max(worst_foot, err)
            assert err < MAX_FOOT_ERROR_M, (obj.name, f, s, err)
        hips = posed[bone_map["Hips"]][0]
        travel = scale * (src_pos[f, 0, :2] - src_rest[0, :2])
        assert np.allclose(hips[:2] - rest[bone_map["Hips"]][0][:2], travel, atol=1e-3)
    values = [v for fc in action_fcurves(action) for v in [kp.co[1] for kp in fc.keyframe_points]]
    assert values and np.all(np.isfinite(values))
    return {"angle_deg": worst_angle, "foot_m": worst_foot, "scale": scale}


def action_fcurves(action: bpy.types.Action) -> list[bpy.types.FCurve]:
    return [fc for layer in action.layers for strip in layer.strips for bag in strip.channelbags for fc in bag.fcurves]


def add_other_animation(obj: bpy.types.Object) -> tuple[bpy.types.Action, bpy.types.Action, list[tuple]]:
    """An active 'Idle' action and an 'Wave' action in an NLA strip; returns them and a snapshot of their keys."""
    bone = obj.pose.bones[0]
    anim = obj.animation_data_create()
    wave = bpy.data.actions.new("Wave")
    anim.action = wave
    bone.rotation_mode = "QUATERNION"
    for frame, angle in ((1, 0.0), (10, 0.7)):
        bone.rotation_quaternion = (math.cos(angle / 2), math.sin(angle / 2), 0.0, 0.0)
        bone.keyframe_insert("rotation_quaternion", frame=frame)
    anim.action = None
    track = anim.nla_tracks.new()
    track.name = "WaveTrack"
    track.strips.new("Wave", 1, wave)
    idle = bpy.data.actions.new("Idle")
    anim.action = idle
    bone.location = (0.0, 0.0, 0.1)
    bone.keyframe_insert("location", frame=5)
    bone.location = (0.0, 0.0, 0.0)
    bone.rotation_quaternion = (1.0, 0.0, 0.0, 0.0)
    return idle, wave, snapshot([idle, wave])


def snapshot(actions: list[bpy.types.Action]) -> list[tuple]:
    return [(a.name, fc.data_path, fc.array_index, tuple(tuple(kp.co) for kp in fc.keyframe_points))
            for a in actions for fc in action_fcurves(a)]


# --- tests ------------------------------------------------------------------------------------------------------------

CONVENTIONS = sorted(rigmap.load_conventions())


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_retarget_onto_awkward_rest_of_each_convention(motion: MotionData, convention: str) -> None:
    reset_blender()
    obj, names = awkward_armature(convention, seed=CONVENTIONS.index(convention),
                                  fbx_like=convention in ("mixamo", "unity"))
    detected = rigmap.detect(rigmap.armature_bones(obj))
    assert detected.convention == convention and detected.is_complete
    assert detected.bone_map == names
    assert not retarget.needs_evaluation(obj, list(names.values()))  # the vectorised path
    idle, wave, before = add_other_animation(obj)
    action = retarget.retarget_motion(motion, obj, "Walk")
    assert action.name == "Walk" and obj.animation_data.action == action
    figures = check_retarget(obj, motion, names, action)
    assert figures["scale"] == pytest.approx(1.15, rel=1e-3)
    assert snapshot([idle, wave]) == before
    assert idle.use_fake_user and "Idle" in bpy.data.actions
    tracks = obj.animation_data.nla_tracks
    assert [t.name for t in tracks] == ["WaveTrack"] and tracks[0].strips[0].action == wave


@pytest.mark.parametrize("rig", ["default", "game_engine", "mixamo", "cmu_mb", "human"])
def test_retarget_onto_mpfb2_rigs(motion: MotionData, mpfb2_rigs: Path, rig: str) -> None:
    reset_blender()
    obj = mpfb2_armature(mpfb2_rigs / f"rig.{rig}.json")
    found = rigmap.detect(rigmap.armature_bones(obj))
    assert found.is_complete
    idle, wave, before = add_other_animation(obj)
    action = retarget.retarget_motion(motion, obj, f"Walk_{rig}")
    figures = check_retarget(obj, motion, found.bone_map, action)
    assert 0.5 < figures["scale"] < 1.5
    assert snapshot([idle, wave]) == before and obj.animation_data.nla_tracks[0].strips[0].action == wave


def test_euler_and_axis_angle_bones_are_keyed_in_their_own_mode(motion: MotionData) -> None:
    reset_blender()
    obj, names = awkward_armature("unreal", seed=3)
    obj.pose.bones[names["LeftUpperArm"]].rotation_mode = "ZXY"
    obj.pose.bones[names["RightLowerLeg"]].rotation_mode = "YXZ"
    obj.pose.bones[names["Head"]].rotation_mode = "AXIS_ANGLE"
    action = retarget.retarget_motion(motion, obj, "Walk")
    paths = {fc.data_path for fc in action_fcurves(action)}
    assert f'pose.bones["{names["LeftUpperArm"]}"].rotation_euler' in paths
    assert f'pose.bones["{names["Head"]}"].rotation_axis_angle' in paths
    check_retarget(obj, motion, names, action)


def test_explicit_bone_map_and_its_errors(motion: MotionData) -> None:
    reset_blender()
    obj, names = awkward_armature("mmd", seed=5)
    action = retarget.retarget_motion(motion, obj, "Walk", bone_map=dict(names))
    check_retarget(obj, motion, names, action)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    with pytest.raises(retarget.RetargetError, match="is in Edit Mode"):
        retarget.retarget_motion(motion, obj, "Walk2")
    bpy.ops.object.mode_set(mode="OBJECT")
    broken = dict(names, LeftHand="nope")
    with pytest.raises(retarget.RetargetError, match="'nope', which the armature does not have"):
        retarget.retarget_motion(motion, obj, "Walk2", bone_map=broken)


def test_non_humanoid_target_is_refused_with_the_missing_bones(motion: MotionData) -> None:
    reset_blender()
    bones = [("Bone", None, np.zeros(3), np.array([0.0, 0.0, 1.0]), 0.0),
             ("Tail", "Bone", np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.0, 2.0]), 0.0)]
    obj = build_armature("Snake", bones)
    with pytest.raises(retarget.RetargetError, match=r"Snake is not a humanoid rig .*Hips, Spine, Head"):
        retarget.retarget_motion(motion, obj, "Walk")
    assert "Walk" not in bpy.data.actions


def test_retarget_action_from_an_armature_and_from_bvh(motion: MotionData, tmp_path: Path) -> None:
    """A motion imported earlier (an animated Mimic-skeleton armature) and a BVH file retarget the same way."""
    from core.bvh import write_bvh
    from core.skeleton import Skeleton

    reset_blender()
    sk = Skeleton(tuple(motion.names), motion.parents, motion.offsets, motion.end_sites)
    clip = Motion(skeleton=sk, fps=motion.fps, rotations=motion.rotations, root_positions=motion.root_positions)
    bvh = tmp_path / "walk.bvh"
    write_bvh(bvh, clip)
    target, names = awkward_armature("rigify", seed=11)
    action = retarget.retarget_bvh(str(bvh), target, "FromBvh")
    assert [o.name for o in bpy.data.objects] == [target.name]
    check_retarget(target, motion, names, action)

    bpy.ops.import_anim.bvh(filepath=str(bvh), update_scene_fps=False)
    source = bpy.context.view_layer.objects.active
    target2, names2 = awkward_armature("vrm", pick=1, seed=12)
    action2 = retarget.retarget_action(source, target2, "FromArmature")
    check_retarget(target2, motion, names2, action2)


def test_bone_map_saved_on_the_armature_is_used(motion: MotionData) -> None:
    """Bones no convention knows: auto-detection refuses, a map saved on the object (as the panel does) works."""
    reset_blender()
    obj, names = awkward_armature("unity", seed=7)
    renamed = {}
    for i, (joint, bone) in enumerate(names.items()):
        obj.data.bones[bone].name = f"b{i:02d}"
        renamed[joint] = f"b{i:02d}"
    with pytest.raises(retarget.RetargetError, match="not a humanoid rig"):
        retarget.retarget_motion(motion, obj, "Walk")
    retarget.store_bone_map(obj, renamed)
    assert retarget.stored_bone_map(obj) == renamed
    action = retarget.retarget_motion(motion, obj, "Walk")
    check_retarget(obj, motion, renamed, action)
    retarget.store_bone_map(obj, None)
    assert retarget.stored_bone_map(obj) is None


def test_rig_preset_for_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(retarget.PRESET_DIR_ENV, str(tmp_path))
    bone_map = rigmap.detect(rigmap.armature_bones(awkward_armature("mixamo")[0])).bone_map
    rigmap.save_preset(tmp_path / "hero.json", bone_map, "Hero", rig=("/chars/hero.blend", "HeroRig"))
    rigmap.save_preset(tmp_path / "plain.json", bone_map)
    assert retarget.rig_preset("hero") == ("/chars/hero.blend", "HeroRig")
    assert retarget.rig_preset(str(tmp_path / "hero.json")) == ("/chars/hero.blend", "HeroRig")
    assert rigmap.load_preset(tmp_path / "hero.json") == bone_map
    with pytest.raises(ValueError, match="does not name a .blend and armature"):
        retarget.rig_preset("plain")
    with pytest.raises(ValueError, match="does not exist"):
        retarget.rig_preset("nobody")


# --- the panel's operators, with the extension enabled for real ------------------------------------------------------

UI_REPO = "mimic_retarget_tests"


@pytest.fixture()
def enabled(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """The extension enabled from an empty file (a local extension repository linking to this checkout)."""
    import addon_utils

    def _raise(exc: BaseException) -> None:
        raise exc

    monkeypatch.setenv(retarget.PRESET_DIR_ENV, str(tmp_path_factory.mktemp("presets")))
    reset_blender()
    repo = tmp_path_factory.mktemp("extensions")
    (repo / "mimic").symlink_to(Path(__file__).resolve().parent.parent, target_is_directory=True)
    repos = bpy.context.preferences.extensions.repos
    if UI_REPO not in {r.module for r in repos}:
        repos.new(name=UI_REPO, module=UI_REPO, custom_directory=str(repo), source="USER")
    module = addon_utils.enable(f"bl_ext.{UI_REPO}.mimic", default_set=True, handle_error=_raise)
    assert module is not None
    yield module
    addon_utils.disable(f"bl_ext.{UI_REPO}.mimic", default_set=True, handle_error=_raise)


def test_panel_bone_map_presets_and_retarget_action(enabled, motion: MotionData, tmp_path: Path) -> None:
    from core.bvh import write_bvh
    from core.skeleton import Skeleton

    assert bpy.types.MIMIC_PT_retarget.bl_parent_id == "MIMIC_PT_main"
    settings = bpy.context.scene.mimic.retarget
    target, names = awkward_armature("mmd", seed=21)
    bpy.context.view_layer.objects.active = target
    assert bpy.ops.mimic.detect_bone_map() == {"FINISHED"}
    assert [i.joint for i in settings.bone_map] == list(rigmap.load_humanoid().names)
    assert {i.joint: i.bone for i in settings.bone_map} == names
    assert settings.convention == "MMD (MikuMikuDance)" and settings.armature == target.name
    assert retarget.stored_bone_map(target) == names

    settings.bone_map[rigmap.load_humanoid().names.index("LeftToes")].bone = ""  # an edit in the list is saved
    assert "LeftToes" not in retarget.stored_bone_map(target)
    settings.preset_name = "my mmd"
    assert bpy.ops.mimic.save_bone_map_preset() == {"FINISHED"}
    preset = Path(retarget.preset_dir()) / "my_mmd.json"
    assert rigmap.load_preset(preset) == {j: b for j, b in names.items() if j != "LeftToes"}

    other, _ = awkward_armature("mmd", seed=22)
    bpy.context.view_layer.objects.active = other
    assert bpy.ops.mimic.load_bone_map_preset(filepath=str(preset)) == {"FINISHED"}
    assert settings.armature == other.name and retarget.stored_bone_map(other) == rigmap.load_preset(preset)

    # Retarget Action from a BVH file, then from an animated armature, onto the active armature.
    sk = Skeleton(tuple(motion.names), motion.parents, motion.offsets, motion.end_sites)
    bvh = tmp_path / "walk.bvh"
    write_bvh(bvh, Motion(skeleton=sk, fps=motion.fps, rotations=motion.rotations,
                          root_positions=motion.root_positions))
    bpy.context.view_layer.objects.active = target
    settings.source_kind, settings.bvh_path, settings.action_name = "BVH", str(bvh), ""
    assert bpy.ops.mimic.retarget_action() == {"FINISHED"}
    assert target.animation_data.action.name == "walk"
    check_retarget(target, motion, {j: b for j, b in names.items() if j != "LeftToes"}, target.animation_data.action)

    bpy.context.view_layer.objects.active = other
    settings.source_kind, settings.source, settings.action_name = "ARMATURE", target, "Copied"
    assert bpy.ops.mimic.retarget_action() == {"FINISHED"}
    assert other.animation_data.action.name == "Copied"
    assert (bpy.context.scene.frame_start, bpy.context.scene.frame_end) == (1, FRAMES)

    settings.source = None
    with pytest.raises(RuntimeError, match="The source must be an armature with an action"):
        bpy.ops.mimic.retarget_action()

    out = tmp_path / "hero.fbx"
    assert bpy.ops.mimic.export_unity(filepath=str(out), kind="FBX") == {"FINISHED"}
    from addon import unity

    assert unity.check_unity_fbx(out) == []
    assert bpy.context.active_object == other  # the checker's import leaves the selection as it was
    assert bpy.ops.mimic.export_unity(filepath=str(tmp_path / "hero.bvh"), kind="BVH") == {"FINISHED"}
    assert (tmp_path / "hero.bvh").is_file()


def test_bones_driven_by_constraints_are_refused(motion: MotionData) -> None:
    """Keys on a bone whose rotation a constraint replaces would not show: say which bones and what to do."""
    reset_blender()
    obj, names = awkward_armature("rigify", pick=1, seed=31)  # DEF- names, as on a generated Rigify rig
    con = obj.pose.bones[names["LeftUpperArm"]].constraints.new("COPY_ROTATION")
    con.target, con.subtarget = obj, "root"
    with pytest.raises(retarget.RetargetError, match=r"constraints drive DEF-upper_arm.L \(Copy Rotation\).*mute"):
        retarget.retarget_motion(motion, obj, "Walk")
    con.mute = True
    check_retarget(obj, motion, names, retarget.retarget_motion(motion, obj, "Walk"))


# --- a real generated Rigify rig --------------------------------------------------------------------------------------

#: Where each joint is on a generated Rigify rig's deform skeleton (the check measures these, not the keyed controls).
RIGIFY_DEFORM = {"Hips": "DEF-spine", "Spine": "DEF-spine.002", "Chest": "DEF-spine.003", "Neck": "DEF-spine.004",
                 "Head": "DEF-spine.006"} | {
    f"{side}{joint}": f"DEF-{bone}.{side[0]}" for side in ("Left", "Right") for joint, bone in (
        ("Shoulder", "shoulder"), ("UpperArm", "upper_arm"), ("LowerArm", "forearm"), ("Hand", "hand"),
        ("UpperLeg", "thigh"), ("LowerLeg", "shin"), ("Foot", "foot"), ("Toes", "toe"))}
RIGIFY_LIMBS = ("upper_arm_parent.L", "upper_arm_parent.R", "thigh_parent.L", "thigh_parent.R")


@pytest.fixture(scope="module")
def rigify_blend(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rig generated once by the Rigify bundled with Blender (Human metarig, empty factory scene), saved so that
    each test starts from a fresh copy."""
    import addon_utils

    reset_blender()
    assert addon_utils.enable("rigify", default_set=True) is not None
    try:
        bpy.ops.object.armature_human_metarig_add()
        assert bpy.ops.pose.rigify_generate() == {"FINISHED"}
        path = tmp_path_factory.mktemp("rigify") / "rigify.blend"
        bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True)
    finally:
        addon_utils.disable("rigify", default_set=True)
    return path


def open_rigify(path: Path) -> bpy.types.Object:
    """An empty factory scene with the generated rig appended (its drivers, helper bones and widgets with it)."""
    reset_blender()
    with bpy.data.libraries.load(str(path)) as (_, into):
        into.objects = ["rig"]
    rig = into.objects[0]
    bpy.context.scene.collection.objects.link(rig)
    bpy.context.view_layer.objects.active = rig
    return rig


def test_retarget_onto_a_generated_rigify_rig(motion: MotionData, rigify_blend: Path) -> None:
    """The FK controls hang on constrained helper bones: they are keyed (the torso carries the root motion), the
    limbs' IK/FK switches are keyed to FK, and the evaluated deform bones follow the source."""
    rig = open_rigify(rigify_blend)
    found = rigmap.detect(rigmap.armature_bones(rig))
    assert found.convention == "rigify" and found.is_complete and not found.missing_optional, found.message()
    assert found.bone_map["Hips"] == "torso" and found.bone_map["Spine"] == "spine_fk.002"
    assert found.bone_map["LeftShoulder"] == "shoulder.L"
    assert [found.bone_map[j] for j in ("LeftUpperArm", "LeftLowerArm", "LeftHand")] == \
        ["upper_arm_fk.L", "forearm_fk.L", "hand_fk.L"]
    assert [found.bone_map[j] for j in ("RightUpperLeg", "RightLowerLeg", "RightFoot", "RightToes")] == \
        ["thigh_fk.R", "shin_fk.R", "foot_fk.R", "toe_fk.R"]
    assert retarget.needs_evaluation(rig, list(found.bone_map.values()))
    idle, wave, before = add_other_animation(rig)

    action = retarget.retarget_motion(motion, rig, "Walk")
    paths = {fc.data_path for fc in action_fcurves(action)}
    assert 'pose.bones["torso"].location' in paths and 'pose.bones["upper_arm_fk.L"].rotation_quaternion' in paths
    assert not [p for p in paths if p.startswith('pose.bones["DEF-') or "_ik" in p]  # no deform bones, no IK
    for limb in RIGIFY_LIMBS:
        assert f'pose.bones["{limb}"]["IK_FK"]' in paths
        rig.pose.bones[limb]["IK_FK"] = 0.0  # back to IK: the action must switch to FK by itself
    figures = check_retarget(rig, motion, RIGIFY_DEFORM, action)
    assert 1.1 < figures["scale"] < 1.3  # the metarig's legs are longer than Mimic's
    assert rig.pose.bones["thigh_parent.L"]["IK_FK"] == 1.0
    assert snapshot([idle, wave]) == before and idle.use_fake_user
    tracks = rig.animation_data.nla_tracks
    assert [t.name for t in tracks] == ["WaveTrack"] and tracks[0].strips[0].action == wave


def test_a_constrained_rigify_control_is_refused(motion: MotionData, rigify_blend: Path) -> None:
    """Keys on a control whose rotation a constraint replaces would not show: refused, naming it."""
    rig = open_rigify(rigify_blend)
    con = rig.pose.bones["upper_arm_fk.L"].constraints.new("COPY_ROTATION")
    con.target, con.subtarget = rig, "root"
    with pytest.raises(retarget.RetargetError, match=r"constraints drive upper_arm_fk.L \(Copy Rotation\).*mute"):
        retarget.retarget_motion(motion, rig, "Walk")
    assert "Walk" not in bpy.data.actions
