"""Planted feet on the user's character (addon/retarget/feet.py): a walk whose feet are planted in the source,
retargeted in real Blender (the extension enabled) onto characters with other leg proportions, with "Plant Feet"
on and off; the planted foot's slide and height on the character, in Blender and in the exported BVH and FBX."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import bpy
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from addon import importer
from addon.retarget import feet
from conftest import LayoutRecorder, clear_scene, enabled_extension, generate_rigify
from core.common.legs import segments
from core.common.motionfile import Motion
from core.common.skeleton import humanoid
from core.foot_lock import DEFAULT as FOOT_LOCK
from core.foot_lock import foot_lock
from core.scipy_rotations import to_wxyz
from test_retarget import action_fcurves, awkward_armature

FPS, FRAMES = 30.0, 60
SIDES = ("Left", "Right")
MAX_SLIDE_ON_MM = 1.0  # mean horizontal ankle motion per frame while planted, Plant Feet on
MIN_SLIDE_OFF_MM = 3.0  # ... off: what planting removes (the character's other proportions make the feet slide)
MAX_HEIGHT_SPREAD_M = 0.01  # the planted ankle's height, max - min over each contact
FIGURES: dict[str, float] = {}
REPO = "mimic_feet_tests"


def planted_walk() -> Motion:
    """Two steps a second at 1 m/s on the canonical humanoid, hips turning and bobbing, knees bending in the swing,
    each foot planted over a bit more than half the cycle (double support); core/foot_lock.py then holds the
    source's planted ankles still (as Plant Feet holds the character's: pivot off), so any slide on the character
    comes from retargeting."""
    sk = humanoid()
    t = np.arange(FRAMES) / FPS
    phi = 2.0 * np.pi * t
    rot = np.tile([1.0, 0.0, 0.0, 0.0], (FRAMES, sk.num_joints, 1))
    zero = np.zeros(FRAMES)

    def put(name: str, euler: np.ndarray) -> None:
        rot[:, sk.index(name)] = to_wxyz(Rotation.from_euler("xyz", euler))

    put("Hips", np.stack([zero, 0.12 * np.sin(phi), zero], 1))
    for side, sign in zip(SIDES, (1.0, -1.0)):
        thigh = 0.35 * sign * np.sin(phi)
        knee = 0.9 * np.clip(-sign * np.cos(phi), 0.0, None) ** 2
        put(f"{side}UpperLeg", np.stack([thigh - 0.1, zero, zero], 1))
        put(f"{side}LowerLeg", np.stack([knee + 0.1, zero, zero], 1))
        put(f"{side}Foot", np.stack([-0.5 * (thigh + knee), zero, zero], 1))
    put("LeftUpperArm", np.stack([zero, zero, zero - 1.2], 1))
    put("RightUpperArm", np.stack([zero, zero, zero + 1.2], 1))
    root = np.stack([zero, 0.93 + 0.015 * np.cos(2 * phi), t], 1)
    contacts = np.stack([np.cos(phi) > -0.2, np.cos(phi) < 0.2], 1)
    motion = Motion(skeleton=sk, fps=FPS, rotations=rot, root_positions=root, contacts=contacts,
                    floor={"height_m": 0.0})
    return foot_lock(motion, "auto", replace(FOOT_LOCK, pivot=False))


@pytest.fixture(scope="module")
def motion() -> Motion:
    out = planted_walk()
    assert out.meta["foot_lock"]["slide_after_mm"] < 0.01  # the source's planted feet are still
    return out


@pytest.fixture(scope="module")
def rigify_blend(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_rigify(tmp_path_factory.mktemp("rigify"))


@pytest.fixture(scope="module")
def ext(tmp_path_factory: pytest.TempPathFactory, rigify_blend: Path):
    """The extension enabled from an empty file (its settings registered: scene.mimic.retarget.use_foot_plant),
    after the Rigify rig is generated (which starts from factory settings)."""
    with enabled_extension(tmp_path_factory.mktemp("extensions"), REPO) as module:
        yield module


@pytest.fixture()
def scene(ext):
    """An empty scene with the extension enabled."""
    clear_scene()
    bpy.context.scene.mimic.retarget.use_foot_plant = True
    yield ext


def without_root_bone(obj: bpy.types.Object, hips: str) -> bpy.types.Object:
    """`obj` with its hips as the root bone (a BVH written with root_transform_only moves only the root)."""
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    bones = obj.data.edit_bones
    bones[hips].parent = None
    bones.remove(bones["root"])
    bpy.ops.object.mode_set(mode="OBJECT")
    return obj


def bone_heads(obj: bpy.types.Object, bones: list[str], frames: int = FRAMES) -> np.ndarray:
    """(F, len(bones), 3) world head of each pose bone over the scene's frames 1..frames."""
    out = np.empty((frames, len(bones), 3))
    mw = obj.matrix_world
    for f in range(frames):
        bpy.context.scene.frame_set(1 + f)
        out[f] = [np.array(mw @ obj.pose.bones[b].head) for b in bones]
    return out


def figures(ankles: np.ndarray, contacts: np.ndarray) -> dict[str, float]:
    """Slide (mean horizontal motion per planted frame, mm) and the worst height spread over a contact (m)."""
    spread = max(np.ptp(ankles[s:e + 1, side, 2]) for side in range(2) for s, e in segments(contacts[:, side]))
    return {"slide_mm": feet.slide_mm(ankles, contacts), "spread_m": float(spread)}


def retarget(obj: bpy.types.Object, motion: Motion, name: str, plant: bool) -> bpy.types.Action:
    """Import `motion` onto `obj` as the panel does (Target: Selected Armature) with Plant Feet on or off."""
    return importer.import_motion(bpy.context, motion, name, target=obj, use_foot_plant=plant).action


def leg_lengths(obj: bpy.types.Object, chain: list[str], frames: int = FRAMES) -> np.ndarray:
    """(F, 2) thigh and shin lengths (distance between the chain's heads) over the frames."""
    heads = bone_heads(obj, chain, frames)
    return np.linalg.norm(np.diff(heads, axis=1), axis=-1)


def test_planted_feet_hold_on_longer_legs_in_blender_and_in_the_bvh(scene, motion: Motion, tmp_path: Path) -> None:
    """Legs 1.3x the source's (shins 1.56x, feet 1.04x): with Plant Feet off the planted feet slide by millimetres
    a frame; on, they stand still on the character's floor, bones keep their lengths, and the BVH and FBX
    carry it."""
    assert type(bpy.context.scene.mimic.retarget).bl_rna.properties["use_foot_plant"].default  # on by default
    obj, names = awkward_armature("unreal", legs=1.3, seed=2)
    without_root_bone(obj, names["Hips"])
    ankles = [names[f"{s}Foot"] for s in SIDES]
    rest_floor = min(min((obj.matrix_world @ b.head_local).z, (obj.matrix_world @ b.tail_local).z)
                     for b in obj.data.bones if b.name in (names["LeftFoot"], names["LeftToes"]))

    retarget(obj, motion, "Off", plant=False)
    free = bone_heads(obj, ankles + [names["Hips"]])
    off = figures(free[:, :2], motion.contacts)
    action = retarget(obj, motion, "On", plant=True)
    got = bone_heads(obj, ankles + [names["Hips"]])
    got, hips = got[:, :2], got[:, 2]
    on = figures(got, motion.contacts)
    accel = [1000 * float(np.linalg.norm(np.diff(a, 2, axis=0), axis=-1).max()) for a in (free[:, :2], got)]
    FIGURES.update({"unreal_1.3_ankle_accel_off_mm": accel[0], "unreal_1.3_ankle_accel_on_mm": accel[1],
                    "unreal_1.3_hips_lowered_max_cm": 100 * float((free[:, 2, 2] - hips[:, 2]).max())})
    FIGURES.update({"unreal_1.3_slide_off_mm": off["slide_mm"], "unreal_1.3_slide_on_mm": on["slide_mm"],
                    "unreal_1.3_spread_off_cm": 100 * off["spread_m"], "unreal_1.3_spread_on_cm": 100 * on["spread_m"]})
    assert on["slide_mm"] < MAX_SLIDE_ON_MM < MIN_SLIDE_OFF_MM < off["slide_mm"], (on, off)
    assert on["spread_m"] < MAX_HEIGHT_SPREAD_M, on
    assert accel[1] < 1.5 * accel[0]  # blended in and out: no pop at a contact's ends

    # On the floor: a planted ankle stands about its rest height above the rest floor (its foot pitched a little).
    rest_ankle = (obj.matrix_world @ obj.data.bones[names["LeftFoot"]].head_local).z - rest_floor
    planted = got[..., 2][motion.contacts] - rest_floor
    FIGURES["unreal_1.3_planted_ankle_above_floor_cm"] = 100 * float(planted.mean())
    FIGURES["unreal_1.3_rest_ankle_above_floor_cm"] = 100 * rest_ankle
    assert np.all(planted > 0.5 * rest_ankle) and np.all(planted < rest_ankle + 0.05), (planted, rest_ankle)

    values = np.array([kp.co[1] for fc in action_fcurves(action) for kp in fc.keyframe_points])
    assert values.size and np.all(np.isfinite(values))
    for side in SIDES:
        chain = [names[f"{side}{j}"] for j in ("UpperLeg", "LowerLeg", "Foot")]
        lengths = leg_lengths(obj, chain)
        rest = np.linalg.norm(np.diff([np.array(obj.data.bones[b].head_local) for b in chain], axis=0), axis=-1)
        assert np.abs(lengths - rest).max() < 1e-4, side

    # The exported BVH (the add-on's exporter reads the active action) carries the planted feet.
    from addon import exporters

    path = exporters.get("bvh").export(bpy.context, obj, tmp_path / "on.bvh")
    before = set(bpy.data.objects)
    bpy.ops.import_anim.bvh(filepath=str(path), axis_forward="Y", axis_up="Z", update_scene_fps=False,
                            update_scene_duration=False)
    back = next(o for o in bpy.data.objects if o not in before)
    from_file = bone_heads(back, ankles)
    FIGURES["bvh_vs_blender_max_mm"] = 1000 * float(np.abs(from_file - got).max())
    FIGURES["bvh_slide_on_mm"] = figures(from_file, motion.contacts)["slide_mm"]
    assert np.abs(from_file - got).max() < 1e-3
    assert FIGURES["bvh_slide_on_mm"] < MAX_SLIDE_ON_MM

    # ... and so does the FBX (Blender's exporter bakes the active action at the scene's own times). Blender's FBX
    # importer shifts what it reads by anim_offset (1 frame by default): read back without it.
    path = exporters.get("fbx").export(bpy.context, obj, tmp_path / "on.fbx")
    before = set(bpy.data.objects)
    bpy.ops.import_scene.fbx(filepath=str(path), anim_offset=0.0)
    back = next(o for o in bpy.data.objects if o not in before and o.type == "ARMATURE")
    from_file = bone_heads(back, ankles)
    FIGURES["fbx_vs_blender_max_mm"] = 1000 * float(np.abs(from_file - got).max())
    FIGURES["fbx_slide_on_mm"] = figures(from_file, motion.contacts)["slide_mm"]
    assert FIGURES["fbx_vs_blender_max_mm"] < 1.0 and FIGURES["fbx_slide_on_mm"] < MAX_SLIDE_ON_MM


RIGIFY_FEET = ["DEF-foot.L", "DEF-foot.R"]


def test_planted_feet_hold_on_a_generated_rigify_rig(scene, motion: Motion, rigify_blend: Path) -> None:
    """Rigify's Human metarig (legs 1.21x the source's): the FK controls hang on constrained helper bones and are
    solved through Blender's evaluation; its deform feet stand still while planted."""
    with bpy.data.libraries.load(str(rigify_blend)) as (_, into):
        into.objects = ["rig"]
    rig = into.objects[0]
    bpy.context.scene.collection.objects.link(rig)
    bpy.context.view_layer.objects.active = rig
    retarget(rig, motion, "Off", plant=False)
    off = figures(bone_heads(rig, RIGIFY_FEET), motion.contacts)
    action = retarget(rig, motion, "On", plant=True)
    on = figures(bone_heads(rig, RIGIFY_FEET), motion.contacts)
    FIGURES.update({"rigify_slide_off_mm": off["slide_mm"], "rigify_slide_on_mm": on["slide_mm"],
                    "rigify_spread_on_cm": 100 * on["spread_m"]})
    assert on["slide_mm"] < MAX_SLIDE_ON_MM < off["slide_mm"], (on, off)
    assert on["spread_m"] < MAX_HEIGHT_SPREAD_M, on
    values = np.array([kp.co[1] for fc in action_fcurves(action) for kp in fc.keyframe_points])
    assert values.size and np.all(np.isfinite(values))
    for side in "LR":
        lengths = leg_lengths(rig, [f"DEF-thigh.{side}", f"DEF-shin.{side}", f"DEF-foot.{side}"])
        assert np.ptp(lengths, axis=0).max() < 1e-4, side


def test_without_contacts_or_with_plant_feet_off_nothing_changes(scene, motion: Motion, capsys) -> None:
    """A motion without contacts is retargeted as without Plant Feet, with a one-line notice; onto shorter legs
    (0.8x) the planted feet hold too."""
    obj, names = awkward_armature("vrm", pick=1, legs=0.8, seed=4)
    ankles = [names[f"{s}Foot"] for s in SIDES]
    bare = motion.with_channels(contacts=None)
    capsys.readouterr()
    retarget(obj, bare, "Bare", plant=True)
    out = capsys.readouterr().out
    assert "no foot contacts" in out and len([ln for ln in out.splitlines() if "Mimic:" in ln]) == 1
    plain = bone_heads(obj, ankles)
    retarget(obj, bare, "BareOff", plant=False)
    assert np.abs(bone_heads(obj, ankles) - plain).max() < 1e-9 and "Mimic:" not in capsys.readouterr().out
    retarget(obj, motion, "Off", plant=False)
    off = bone_heads(obj, ankles)
    retarget(obj, motion, "On", plant=True)
    on = figures(bone_heads(obj, ankles), motion.contacts)
    FIGURES.update({"vrm_0.8_slide_off_mm": figures(off, motion.contacts)["slide_mm"],
                    "vrm_0.8_slide_on_mm": on["slide_mm"], "vrm_0.8_spread_on_cm": 100 * on["spread_m"]})
    assert on["slide_mm"] < MAX_SLIDE_ON_MM and on["spread_m"] < MAX_HEIGHT_SPREAD_M


def test_the_retarget_panel_shows_plant_feet(scene) -> None:
    """The checkbox sits in the Retarget box, on the registered retarget settings."""
    from importlib import import_module

    obj, _ = awkward_armature("vrm", pick=1, seed=4)
    bpy.context.view_layer.objects.active = obj
    calls: list = []
    panel = import_module(f"{scene.__name__}.addon.retarget_ui").MIMIC_PT_retarget
    panel.draw(type("P", (), {"layout": LayoutRecorder(calls)})(), bpy.context)
    assert ("prop", (bpy.context.scene.mimic.retarget, "use_foot_plant"), {}) in calls


def test_the_foot_maths_import_no_blender() -> None:
    """feet.py is numpy only, like solve.py."""
    import ast

    tree = ast.parse(Path(feet.__file__).read_text(encoding="utf-8"))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "numpy" in names and not {n.split(".")[0] for n in names} & {"bpy", "mathutils", "bmesh"}


def test_figures() -> None:
    print("\nPlanted feet on the character:", {k: round(v, 3) for k, v in FIGURES.items()})
