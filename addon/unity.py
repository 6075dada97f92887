"""A checker for Unity Humanoid FBX files: re-import with Blender's FBX importer and list every requirement broken.

The `unity_fbx` exporter (addon/exporters/unity_fbx.py) writes files meant to pass it; the export operator runs it
right after writing. Not an exporter itself.
"""

from __future__ import annotations

import math
from pathlib import Path

import bpy
import numpy as np

from . import rigmap
from .common import axes
from .errors import UnityCheckError
from .fcurves import action_fcurves

#: How far a rest limb may point from the T-pose direction and still count as T-pose (degrees).
TPOSE_LIMB_DEG = 10.0
TPOSE_SPINE_DEG = 20.0
#: A plausible standing character, hips height in metres (1 unit = 1 m after import).
HIPS_HEIGHT_M = (0.3, 2.5)
LEAF_SUFFIX = "_end"
#: FBX GlobalSettings Unity expects: Y up (axis 1, +), front axis Z (2), 1 unit = 100 cm.
FBX_AXES = {"UpAxis": 1, "UpAxisSign": 1, "FrontAxis": 2, "FrontAxisSign": 1, "CoordAxis": 0, "CoordAxisSign": 1}
FBX_UNIT_SCALE = 100.0


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
    mw = obj.matrix_world
    heads = {j: np.array(mw @ obj.data.bones[b].head_local) for j, b in bone_map.items()}
    hips_height = heads["Hips"][2] - min(h[2] for h in heads.values())
    if not HIPS_HEIGHT_M[0] <= hips_height <= HIPS_HEIGHT_M[1]:
        problems.append(f"Scale: the hips stand {hips_height:.3f} units above the feet; for 1 unit = 1 m they "
                        f"should be {HIPS_HEIGHT_M[0]}-{HIPS_HEIGHT_M[1]} m. Check the export scale.")
    left = heads["LeftUpperLeg"] - heads["RightUpperLeg"]
    up = heads["Head"] - heads["Hips"]
    if np.dot(left, [1.0, 0.0, 0.0]) < 0.9 * np.linalg.norm(left) or np.dot(up, [0, 0, 1]) < 0.9 * np.linalg.norm(up):
        problems.append("Orientation: the character does not stand up facing +Z with its left side at +X after "
                        "import; export with Forward -Z and Up Y from a character facing -Y in Blender.")
    for j in human.names:
        aim = human.aim.get(j)
        if j not in bone_map or aim not in bone_map or j.endswith(("Foot", "Shoulder")):
            continue
        want = axes.to_blender(human.offsets[aim])
        got = heads[aim] - heads[j]
        angle = math.degrees(math.acos(float(np.clip(np.dot(got, want) / np.linalg.norm(got) / np.linalg.norm(want),
                                                     -1.0, 1.0))))
        limit = TPOSE_SPINE_DEG if human.parents[j] is None or j in ("Spine", "Chest", "Neck") else TPOSE_LIMB_DEG
        if angle > limit:
            problems.append(f"Rest pose is not a T-pose: {j} points {angle:.0f} degrees away from its T-pose "
                            f"direction (limit {limit:g}); export with the 'Unity Humanoid' preset.")
    action = obj.animation_data.action if obj.animation_data else None
    keyed = [fc for fc in action_fcurves(action) if len(fc.keyframe_points) > 1] if action else []
    if not keyed:
        problems.append("No baked animation: the armature has no keyed action; export with 'Bake Animation'.")
    return problems


def assert_unity_fbx(path: str | Path) -> None:
    """Raise UnityCheckError listing every problem of `check_unity_fbx`, if any."""
    problems = check_unity_fbx(path)
    if problems:
        raise UnityCheckError(f"{Path(path).name} is not a valid Unity Humanoid FBX: " + " ".join(problems))
