"""Rigs whose mapped bones hang under helper bones driven by constraints (a generated Rigify rig's FK controls):
telling them apart, and reaching the solved orientations frame by frame through Blender's own evaluation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import rigmap
from ..common import rotations as quat
from .bake import check_not_tweaking
from .solve import Baked, orthonormal

if TYPE_CHECKING:
    import bpy

#: Constraint types that replace a bone's own rotation: keys on such a bone would not show.
OVERRIDING_CONSTRAINTS = frozenset({"COPY_TRANSFORMS", "COPY_ROTATION", "CHILD_OF", "ARMATURE", "IK", "SPLINE_IK",
                                    "DAMPED_TRACK", "LOCKED_TRACK", "TRACK_TO", "STRETCH_TO", "TRANSFORM"})


def _constrained(pb: bpy.types.PoseBone) -> bool:
    """True when an active constraint acts on the pose bone (muted or zero-influence ones do not count)."""
    return any(con.enabled and con.influence > 0.0 for con in pb.constraints)


def needs_evaluation(obj: bpy.types.Object, bones: list[str]) -> bool:
    """True when an ancestor of one of `bones` is driven by constraints (a control rig's helper bones): then only
    Blender's evaluation tells where a keyed bone's parent is, not the rest pose."""
    for name in bones:
        parent = obj.data.bones[name].parent
        while parent is not None:
            if _constrained(obj.pose.bones[parent.name]):
                return True
            parent = parent.parent
    return False


def _depends_on(obj: bpy.types.Object, bones: list[str]) -> set[str]:
    """Bones whose pose the evaluated pose of `bones` depends on: parents and same-armature constraint targets,
    recursively (Rigify's FK spine follows the hips and chest controls through its helper bones)."""
    seen: set[str] = set()
    todo = list(bones)
    while todo:
        pb = obj.pose.bones[todo.pop()]
        found = [pb.parent.name] if pb.parent else []
        for con in pb.constraints:
            if con.enabled:
                targets = list(con.targets) if con.type == "ARMATURE" else [con]
                found += [t.subtarget for t in targets
                          if getattr(t, "target", None) == obj and getattr(t, "subtarget", "")]
                if getattr(con, "pole_target", None) == obj and con.pole_subtarget:
                    found.append(con.pole_subtarget)
        for name in found:
            if name not in seen and name in obj.pose.bones:
                seen.add(name)
                todo.append(name)
    return seen


def pose_through_constraints(target: bpy.types.Object, baked: Baked, bone_map: dict[str, str],
                             settings: dict[str, float]) -> Baked:
    """`baked` for a rig whose mapped bones hang under constrained helper bones: frame by frame, each mapped bone's
    basis is solved against its parent as Blender evaluates it (constraints and drivers included), so that the bone
    turns by `baked.deltas` from its rest and the hips bone's head reaches `baked.hips_head`. settings: pose-bone
    custom properties set (and keyed) first, e.g. Rigify's IK_FK = 1 so that the FK controls drive the limbs.

    Blender evaluates one pose at a time, so this loops over frames, with one depsgraph update per level of mapped
    bones that need it (parents before children). A mapped bone joined to its mapped parent only by free bones (a
    forearm under its upper arm) keeps the vectorised basis from `solve`. Free bones the mapped ones depend on are
    held at rest; the rig's pose, those properties and its animation are restored afterwards (the action that
    `bake_action` writes carries the result)."""
    import bpy
    from mathutils import Matrix, Quaternion, Vector

    check_not_tweaking(target)
    human = rigmap.load_humanoid()
    joints = [j for j in human.joints if j in baked.deltas]
    bone_map = {j: b for j, b in bone_map.items() if j in baked.deltas or j not in human.fingers}  # fingers solved
    mapped = set(bone_map.values())
    anc = {j: next((a for a in human.ancestors(j) if a in baked.deltas), None) for j in joints}
    rigid: list[str] = []  # joints whose bone hangs on its mapped parent's bone (or the root) through free bones
    for j in joints:
        parent = target.data.bones[bone_map[j]].parent
        while parent is not None and parent.name not in mapped and not _constrained(target.pose.bones[parent.name]):
            parent = parent.parent
        if (parent.name if parent is not None else None) == (bone_map[anc[j]] if anc[j] is not None else None):
            rigid.append(j)
    solved = [j for j in joints if j not in rigid]
    depth = {j: sum(a in solved for a in human.ancestors(j)) for j in solved}
    levels = [[j for j in solved if depth[j] == d] for d in range(max(depth.values(), default=-1) + 1)]
    first_needs_update = any(anc[j] is not None for j in levels[0]) if levels else False
    world = np.array(target.matrix_world)
    turn = orthonormal(world[:3, :3])
    rest = {j: orthonormal(np.array(target.data.bones[bone_map[j]].matrix_local)[:3, :3]) for j in solved}
    goal = {j: turn.T @ quat.to_matrix(baked.deltas[j]) @ turn @ rest[j] for j in solved}  # (F, 3, 3) armature
    hips = (baked.hips_head - world[:3, 3]) @ np.linalg.inv(world[:3, :3]).T
    free = sorted(n for n in _depends_on(target, sorted(mapped))
                  if n not in mapped and not _constrained(target.pose.bones[n]))
    switches = {(pb.name, key): value for pb in target.pose.bones for key, value in settings.items() if key in pb}
    kept_props = {(name, key): target.pose.bones[name][key] for name, key in switches}
    kept_pose = {name: target.pose.bones[name].matrix_basis.copy() for name in free + sorted(mapped)}
    frames = baked.hips_head.shape[0]
    quats = {j: np.zeros((frames, 4)) for j in solved}
    location = baked.location.copy()
    zero = Vector((0.0, 0.0, 0.0))
    view_layer = bpy.context.view_layer
    anim = target.animation_data
    saved = (anim.action, getattr(anim, "action_slot", None), anim.use_nla) if anim is not None else None  # 4.4+ slots
    try:
        if anim is not None:
            anim.action, anim.use_nla = None, False
        for (name, key), value in switches.items():
            target.pose.bones[name][key] = value
        for name in kept_pose:
            target.pose.bones[name].matrix_basis = Matrix.Identity(4)
        view_layer.update()
        for f in range(frames):
            for j in rigid:
                loc = Vector(location[f]) if j == "Hips" else zero
                target.pose.bones[bone_map[j]].matrix_basis = Matrix.LocRotScale(
                    loc, Quaternion(baked.rotations[bone_map[j]][f]), None)
            for d, level in enumerate(levels):
                if d > 0 or first_needs_update:
                    view_layer.update()
                for j in level:
                    pb = target.pose.bones[bone_map[j]]
                    want = Matrix(goal[j][f].tolist()).to_4x4()
                    want.translation = Vector(hips[f]) if j == "Hips" else pb.matrix.translation
                    basis = target.convert_space(pose_bone=pb, matrix=want, from_space="POSE", to_space="LOCAL")
                    q = basis.to_quaternion()
                    loc = basis.translation if j == "Hips" else zero
                    pb.matrix_basis = Matrix.LocRotScale(loc, q, None)
                    quats[j][f] = tuple(q)
                    if j == "Hips":
                        location[f] = tuple(loc)
    finally:  # the rig as it was: the new action carries the result
        for (name, key), value in kept_props.items():
            target.pose.bones[name][key] = value
        for name, basis in kept_pose.items():
            target.pose.bones[name].matrix_basis = basis
        if anim is not None and saved is not None:
            anim.action = saved[0]
            if saved[0] is not None and saved[1] is not None:
                anim.action_slot = saved[1]
            anim.use_nla = saved[2]
    rotations = {bone_map[j]: baked.rotations[bone_map[j]] if j in rigid
                 else quat.make_continuous(quat.normalize(quats[j])) for j in joints}
    return Baked(rotations, location, baked.hips, free, baked.positions, baked.scale, baked.deltas, baked.hips_head,
                 switches)


def overriding_constraints(obj: bpy.types.Object, bones: list[str]) -> list[str]:
    """'bone (constraint)' for each active constraint that overrides the rotation of one of `bones`, so that keys
    on that bone would not show (deform bones of a generated control rig, an IK chain left on IK...)."""
    out = []
    for name in bones:
        for con in obj.pose.bones[name].constraints:
            if con.type in OVERRIDING_CONSTRAINTS and con.enabled and con.influence > 0.5:
                out.append(f"{name} ({con.name})")
    return out
