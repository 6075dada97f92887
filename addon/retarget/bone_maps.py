"""Which bones a retarget keys: the bone map saved on an armature, bone-map presets on disk (and the rig a preset
names, for batch `--rig`), and the checked map for a target."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .. import rigmap
from ..errors import RetargetError, RigMapError
from ..stored_json import read_dict, write_dict
from .constraints import overriding_constraints

if TYPE_CHECKING:
    import bpy

BONE_MAP_PROP = "mimic_bone_map"  # custom property on the armature object: the user's bone map as JSON
PRESET_DIR_ENV = "MIMIC_BONE_MAP_DIR"


def stored_bone_map(obj: bpy.types.Object) -> dict[str, str] | None:
    """The bone map saved on armature `obj` (by the panel, so it travels with the .blend), or None."""
    data = read_dict(obj, BONE_MAP_PROP)
    return None if data is None else {str(k): str(v) for k, v in data.items()}


def store_bone_map(obj: bpy.types.Object, bone_map: dict[str, str] | None) -> None:
    """Save (or with None, forget) the bone map on armature `obj`."""
    write_dict(obj, BONE_MAP_PROP, None if bone_map is None else {k: v for k, v in bone_map.items() if v})


def preset_dir() -> Path:
    """Where bone-map presets live: $MIMIC_BONE_MAP_DIR, else Blender's user config folder mimic/bone_maps."""
    if os.environ.get(PRESET_DIR_ENV):
        return Path(os.environ[PRESET_DIR_ENV])
    import bpy

    return Path(bpy.utils.user_resource("CONFIG", path=os.path.join("mimic", "bone_maps"), create=True))


def rig_preset(spec: str) -> tuple[str, str]:
    """For batch `--rig PRESET`: the (.blend path, armature object name) a bone-map preset was saved from.
    `spec` is a preset name (in `preset_dir()`) or a path to a preset .json file."""
    path = Path(spec) if spec.endswith(".json") else preset_dir() / f"{spec}.json"
    try:
        rig = rigmap.preset_rig(path)
    except RigMapError as exc:
        raise ValueError(f"--rig {spec!r}: {exc}") from exc
    if rig is None:
        raise ValueError(f"--rig {spec!r}: the preset {path} does not name a .blend and armature. Save the preset "
                         f"again from the Mimic panel with the character's .blend saved, or use FILE.blend:ARMATURE.")
    return rig


def resolve_target_map(target: bpy.types.Object, bone_map: dict[str, str] | None = None) -> dict[str, str]:
    """The bone map for `target`: the given one, else the one saved on it, else auto-detected (checked either way).
    RetargetError when it is incomplete or when constraints would override the keyed bones."""
    if target is None or target.type != "ARMATURE":
        raise RetargetError("The retarget target must be an armature. Select your character's armature.")
    if target.mode == "EDIT":
        raise RetargetError(f"{target.name} is in Edit Mode. Switch to Object or Pose Mode first.")
    bones = rigmap.armature_bones(target)
    try:
        resolved = rigmap.resolve_bone_map(bones, bone_map if bone_map is not None else stored_bone_map(target),
                                           target.name)
    except RigMapError as exc:
        raise RetargetError(str(exc)) from exc
    overridden = overriding_constraints(target, list(resolved.values()))
    if overridden:
        raise RetargetError(f"{target.name}: constraints drive {', '.join(overridden[:4])}"
                            f"{' ...' if len(overridden) > 4 else ''}, so keys on these bones would not show. "
                            f"Disable or mute those constraints (switch IK chains to FK), or map bones that are "
                            f"not driven by constraints.")
    return resolved
