"""Unity-ready exports of any animated humanoid armature, glTF/GLB export, and a checker for Unity Humanoid FBX files.

The Unity presets never export the user's rig as it is (A-pose rests, rolls, MMD names...). They build a temporary
skeleton with Unity Humanoid bone names (rigs/humanoid.json), a T-pose rest with the character's own bone lengths and
its feet on the floor, retarget the character's action onto it (addon/retarget.py), and write that with the
add-on's exporters (addon/export.py: FBX Y up / -Z forward so characters face +Z in Unity, 1 unit = 1 m, no leaf
bones, baked animation; BVH Y up, metres, ZXY on every joint, root translation only, zero-rotation T-pose rest).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from . import retarget, rigmap
from .common import Motion, skeleton
from .errors import UnityCheckError

#: How far a rest limb may point from the T-pose direction and still count as T-pose (degrees).
TPOSE_LIMB_DEG = 10.0
TPOSE_SPINE_DEG = 20.0
#: A plausible standing character, hips height in metres (1 unit = 1 m after import).
HIPS_HEIGHT_M = (0.3, 2.5)
LEAF_SUFFIX = "_end"
#: FBX GlobalSettings Unity expects: Y up (axis 1, +), front axis Z (2), 1 unit = 100 cm.
FBX_AXES = {"UpAxis": 1, "UpAxisSign": 1, "FrontAxis": 2, "FrontAxisSign": 1, "CoordAxis": 0, "CoordAxisSign": 1}
FBX_UNIT_SCALE = 100.0


# --- the Unity skeleton ----------------------------------------------------------------------------------------------

def tpose_skeleton(obj: bpy.types.Object, bone_map: dict[str, str]) -> Motion:
    """Mimic's humanoid (Unity names) in T-pose with the bone lengths of armature `obj`'s mapped bones and the ankles
    as high above the floor as `obj`'s are above the lowest point of its feet (so it stands on y = 0 whatever the
    rig's placement). Joints the map lacks are left out (their children hang on the nearest mapped ancestor).
    One frame of identity rotations."""
    human = rigmap.load_humanoid()
    world = np.array(obj.matrix_world)
    bones = obj.data.bones
    heads = {j: _world(world, bones[b].head_local) for j, b in bone_map.items()}
    tails = {j: _world(world, bones[b].tail_local) for j, b in bone_map.items()}
    feet = ("LeftFoot", "RightFoot")
    foot_bones = [b for f in feet for b in [bones[bone_map[f]], *bones[bone_map[f]].children_recursive]]
    floor = min(min(_world(world, b.head_local)[2], _world(world, b.tail_local)[2]) for b in foot_bones)
    names = [j for j in human.names if j in bone_map]
    parents, offsets, ends = [], [], []
    for j in names:
        anc = next((a for a in human.ancestors(j) if a in bone_map), None)
        parents.append(-1 if anc is None else names.index(anc))
        if anc is None:
            offsets.append(np.zeros(3))
        else:
            path = [j] + human.ancestors(j)[:human.ancestors(j).index(anc)]
            direction = np.sum([human.offsets[k] for k in path], axis=0)
            offsets.append(direction / np.linalg.norm(direction) * np.linalg.norm(heads[j] - heads[anc]))
        end = np.array(human.ends[j])
        length = max(np.linalg.norm(tails[j] - heads[j]), 0.02)
        ends.append(end / np.linalg.norm(end) * length if np.linalg.norm(end) > 0 else np.zeros(3))
    below = []
    for f in feet:  # the T-posed ankle's height relative to the hips
        chain = [f] + [a for a in human.ancestors(f) if a in bone_map][:-1]
        below.append(sum(offsets[names.index(k)][1] for k in chain))
    ankle = np.mean([heads[f][2] - floor for f in feet])
    offsets[0] = np.array([0.0, ankle - float(np.mean(below)), 0.0])
    rotations = np.zeros((1, len(names), 4))
    rotations[..., 0] = 1.0
    bones = skeleton.Skeleton(tuple(names), np.array(parents), np.array(offsets, dtype=np.float64),
                              np.array(ends, dtype=np.float64))
    return Motion(skeleton=bones, fps=24.0, rotations=rotations, root_positions=np.array([offsets[0]]))


def _world(world: np.ndarray, p: object) -> np.ndarray:
    return world[:3, :3] @ np.array(p) + world[:3, 3]


@dataclass
class UnityRig:
    """The temporary Unity skeleton and its baked action, and the frame range it covers."""

    armature: bpy.types.Object
    action: bpy.types.Action
    frame_start: int
    frame_end: int

    def remove(self) -> None:
        data = self.armature.data
        bpy.data.objects.remove(self.armature)
        bpy.data.armatures.remove(data)
        bpy.data.actions.remove(self.action)


def build_unity_rig(context: bpy.types.Context, obj: bpy.types.Object,
                    bone_map: dict[str, str] | None = None) -> UnityRig:
    """A T-pose Unity-named armature carrying `obj`'s active action, retargeted (caller removes it)."""
    from .armature import create_armature

    anim = obj.animation_data if obj is not None and obj.type == "ARMATURE" else None
    if anim is None or anim.action is None:
        raise retarget.RetargetError("Select an animated armature: it needs an active action to export.")
    bone_map = retarget.resolve_target_map(obj, bone_map)
    skeleton = tpose_skeleton(obj, bone_map)
    armature = create_armature(skeleton, f"{obj.name}_Unity", context.scene.collection)
    try:
        action = retarget.retarget_action(obj, armature, anim.action.name + "_Unity", source_map=bone_map)
    except BaseException:
        data = armature.data
        bpy.data.objects.remove(armature)
        bpy.data.armatures.remove(data)
        raise
    start, end = (int(round(v)) for v in action.frame_range)
    return UnityRig(armature, action, start, end)


def _export(context: bpy.types.Context, obj: bpy.types.Object, path: str | Path, bone_map: dict[str, str] | None,
            writer: str) -> Path:
    from . import export

    scene = context.scene
    keep = scene.frame_start, scene.frame_end, scene.frame_current
    rig = build_unity_rig(context, obj, bone_map)
    try:  # export_fbx itself stands the rig in its (T-pose) rest on the current frame, where Unity reads it
        scene.frame_start, scene.frame_end = rig.frame_start, rig.frame_end
        return getattr(export, writer)(context, rig.armature, path)
    finally:
        rig.remove()
        scene.frame_start, scene.frame_end = keep[:2]
        scene.frame_set(keep[2])


def export_unity_fbx(context: bpy.types.Context, obj: bpy.types.Object, path: str | Path,
                     bone_map: dict[str, str] | None = None) -> Path:
    """FBX preset "Unity Humanoid": `obj`'s action on a T-pose, Unity-named skeleton; Y up, +Z forward in Unity,
    1 unit = 1 m, no leaf bones, animation baked. bone_map as for retargeting (None: saved or auto-detected)."""
    return _export(context, obj, path, bone_map, "export_fbx")


def export_unity_bvh(context: bpy.types.Context, obj: bpy.types.Object, path: str | Path,
                     bone_map: dict[str, str] | None = None) -> Path:
    """BVH preset "Unity" (BVH Tools, UniVRM's importer): Y up, metres, ZXY on every joint, translation on the root
    only, T-pose rest with zero rotations."""
    return _export(context, obj, path, bone_map, "export_bvh")


def export_gltf(context: bpy.types.Context, obj: bpy.types.Object, path: str | Path) -> Path:
    """glTF export of armature `obj` with its meshes and active action through Blender's bundled exporter:
    `.glb` binary, `.gltf` separate files (three.js, web viewers, VRM tools). Y up, as glTF requires."""
    path = Path(path)
    anim = obj.animation_data if obj is not None and obj.type == "ARMATURE" else None
    if anim is None or anim.action is None:
        raise retarget.RetargetError("Select an animated armature: it needs an active action to export.")
    if not path.parent.is_dir():
        raise retarget.RetargetError(f"Output folder {path.parent} does not exist.")
    fmt = "GLB" if path.suffix.lower() == ".glb" else "GLTF_SEPARATE"
    view_layer = context.view_layer
    chosen = [obj] + [c for c in obj.children_recursive if c.type == "MESH"]
    selected = [o for o in view_layer.objects if o.select_get()]
    active = view_layer.objects.active
    for o in selected:
        o.select_set(False)
    for o in chosen:
        o.select_set(True)
    view_layer.objects.active = obj
    from .export import atomic_path

    try:  # a .glb is one file: write it beside and rename; a .gltf's buffers are named after the file itself
        with atomic_path(path) if fmt == "GLB" else contextlib.nullcontext(path) as out:
            result = bpy.ops.export_scene.gltf(
                filepath=str(out), export_format=fmt, use_selection=True, export_yup=True, export_apply=False,
                export_animations=True, export_animation_mode="ACTIVE_ACTIONS", export_skins=True,
                export_bake_animation=False, export_anim_slide_to_zero=False)
    finally:
        for o in chosen:
            o.select_set(False)
        for o in selected:
            o.select_set(True)
        view_layer.objects.active = active
    if "FINISHED" not in result:
        raise retarget.RetargetError(f"Blender's glTF exporter did not write {path}.")
    return path


# --- the checker ---------------------------------------------------------------------------------------------------

def fbx_global_settings(path: str | Path) -> dict[str, object]:
    """The GlobalSettings properties of an FBX file (UpAxis, FrontAxis, UnitScaleFactor ...), via Blender's parser."""
    from io_scene_fbx import parse_fbx

    root, _ = parse_fbx.parse(str(path))
    out: dict[str, object] = {}
    for elem in root.elems:
        if elem.id != b"GlobalSettings":
            continue
        for props in elem.elems:
            if props.id != b"Properties70":
                continue
            for p in props.elems:
                key = p.props[0].decode("utf-8", "replace")
                out[key] = p.props[4] if len(p.props) > 4 else None
    return out


def check_unity_fbx(path: str | Path) -> list[str]:
    """Re-import an FBX with Blender's importer and list every Unity Humanoid requirement it breaks (empty = ok):
    Y up / +Z forward axes and 1 unit = 1 m, a hips root, the 15 required bones under the right parents, a T-pose
    rest, no leaf bones, baked animation. The imported objects are removed again."""
    path = Path(path)
    if not path.is_file():
        return [f"{path} does not exist."]
    problems: list[str] = []
    settings = fbx_global_settings(path)
    for key, want in FBX_AXES.items():
        if settings.get(key) != want:
            problems.append(f"FBX axes: {key} is {settings.get(key)}, Unity expects {want} (Y up, +Z forward); "
                            f"export with Forward -Z and Up Y.")
    unit = settings.get("UnitScaleFactor")
    if not isinstance(unit, float) or abs(unit - FBX_UNIT_SCALE) > 1e-3:
        problems.append(f"FBX unit scale is {unit}, not {FBX_UNIT_SCALE:g} (1 unit = 1 m): export with "
                        f"Apply Scalings 'FBX Units Scale' and scale 1.")
    before = set(bpy.data.objects)
    data_before = {k: set(getattr(bpy.data, k)) for k in ("armatures", "actions", "meshes", "materials")}
    view_layer = bpy.context.view_layer
    active, selected = view_layer.objects.active, [o for o in view_layer.objects if o.select_get()]
    try:
        bpy.ops.import_scene.fbx(filepath=str(path), use_anim=True, ignore_leaf_bones=False)
        imported = [o for o in bpy.data.objects if o not in before]
        armatures = [o for o in imported if o.type == "ARMATURE"]
        if len(armatures) != 1:
            problems.append(f"The FBX holds {len(armatures)} armatures; a Unity Humanoid file needs exactly one.")
        else:
            problems += _check_armature(armatures[0])
    finally:
        for obj in [o for o in bpy.data.objects if o not in before]:
            bpy.data.objects.remove(obj)
        for kind, had in data_before.items():
            coll = getattr(bpy.data, kind)
            for item in [i for i in coll if i not in had]:
                coll.remove(item)
        for obj in selected:
            obj.select_set(True)
        view_layer.objects.active = active
    return problems


def _check_armature(obj: bpy.types.Object) -> list[str]:
    problems: list[str] = []
    human = rigmap.load_humanoid()
    bones = rigmap.armature_bones(obj)
    scale = np.array(obj.matrix_world.to_scale())
    if np.any(np.abs(scale - 1.0) > 1e-3):
        problems.append(f"The armature imports with scale {tuple(np.round(scale, 4))}, not 1: write 1 unit = 1 m "
                        f"(FBX Units Scale) so Unity needs no scale factor.")
    leaves = [b for b in bones if b.endswith(LEAF_SUFFIX)]
    if leaves:
        problems.append(f"Leaf bones present ({', '.join(leaves[:3])}...): export without 'Add Leaf Bones'.")
    found = rigmap.detect(bones)
    if not found.is_complete:
        problems.append(f"Missing required Humanoid bones: {', '.join(found.missing_required)}. Unity cannot build "
                        f"an avatar; export with the 'Unity Humanoid' preset, which names every bone.")
        return problems
    bone_map = found.bone_map
    problems += [f"Bone hierarchy: {p}" for p in rigmap.validate_bone_map(bones, bone_map)]
    if bones[bone_map["Hips"]] is not None:
        problems.append(f"The hips bone '{bone_map['Hips']}' is not the root of the armature (its parent is "
                        f"'{bones[bone_map['Hips']]}'); Unity's Humanoid expects the hips at the top.")
    world = np.array(obj.matrix_world)
    heads = {j: _world(world, obj.data.bones[b].head_local) for j, b in bone_map.items()}
    hips_height = heads["Hips"][2] - min(h[2] for h in heads.values())
    if not HIPS_HEIGHT_M[0] <= hips_height <= HIPS_HEIGHT_M[1]:
        problems.append(f"Scale: the hips stand {hips_height:.3f} units above the feet; for 1 unit = 1 m they "
                        f"should be {HIPS_HEIGHT_M[0]}-{HIPS_HEIGHT_M[1]} m. Check the export scale.")
    left = heads["LeftUpperLeg"] - heads["RightUpperLeg"]
    up = heads["Head"] - heads["Hips"]
    if np.dot(left, [1.0, 0.0, 0.0]) < 0.9 * np.linalg.norm(left) or np.dot(up, [0, 0, 1]) < 0.9 * np.linalg.norm(up):
        problems.append("Orientation: the character does not stand up facing +Z with its left side at +X after "
                        "import; export with Forward -Z and Up Y from a character facing -Y in Blender.")
    to_blender = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    for j in human.names:
        aim = human.aim.get(j)
        if j not in bone_map or aim not in bone_map or j.endswith(("Foot", "Shoulder")):
            continue
        want = to_blender @ np.array(human.offsets[aim])
        got = heads[aim] - heads[j]
        angle = math.degrees(math.acos(float(np.clip(np.dot(got, want) / np.linalg.norm(got) / np.linalg.norm(want),
                                                     -1.0, 1.0))))
        limit = TPOSE_SPINE_DEG if human.parents[j] is None or j in ("Spine", "Chest", "Neck") else TPOSE_LIMB_DEG
        if angle > limit:
            problems.append(f"Rest pose is not a T-pose: {j} points {angle:.0f} degrees away from its T-pose "
                            f"direction (limit {limit:g}); export with the 'Unity Humanoid' preset.")
    action = obj.animation_data.action if obj.animation_data else None
    keyed = [fc for fc in _fcurves(action) if len(fc.keyframe_points) > 1] if action else []
    if not keyed:
        problems.append("No baked animation: the armature has no keyed action; export with 'Bake Animation'.")
    return problems


def _fcurves(action: bpy.types.Action) -> list[bpy.types.FCurve]:
    """Every F-curve of `action`: layered actions (Blender 4.4+) or legacy ones."""
    if bpy.app.version < (4, 4, 0):
        return list(action.fcurves)
    return [fc for layer in action.layers for strip in layer.strips for bag in strip.channelbags for fc in bag.fcurves]


def assert_unity_fbx(path: str | Path) -> None:
    """Raise UnityCheckError listing every problem of `check_unity_fbx`, if any."""
    problems = check_unity_fbx(path)
    if problems:
        raise UnityCheckError(f"{Path(path).name} is not a valid Unity Humanoid FBX: " + " ".join(problems))
