"""Facial expressions onto a character's shape keys: a motion's expressions (F, E) 0..1 keyed in bulk as
`key_blocks["name"].value` of each mesh's shape keys, through a mapping expression -> shape-key names.

The mapping's default is rigs/expressions.json's targets (VRM presets and VRoid Fcl_*, ARKit, MMD names); the panel
(face_ui.py) edits it and saves it on the character (custom property `mimic_face_map`), so it travels with the .blend.
Names match case-insensitively, the first listed name found wins per mesh, and a shape key driven by several
expressions takes their maximum. A character without matching shape keys gets a notice, never an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import bpy
import numpy as np

from .common import Motion, layer
from .fcurves import assign_action, key_channels
from .stored_json import read_dict, write_dict

#: The custom property on the character that holds its edited mapping (JSON: expression -> [shape-key names]).
FACE_MAP_PROP = "mimic_face_map"
GROUP = "Expressions"


def default_mapping() -> dict[str, list[str]]:
    """Every expression -> its default shape-key names, every convention in rigs/expressions.json's order."""
    targets = layer("hands").expression_targets()
    return {name: [n for names in by_convention.values() for n in names] for name, by_convention in targets.items()}


def stored_mapping(obj: bpy.types.Object | None) -> dict[str, list[str]] | None:
    """The mapping saved on `obj` by the panel, or None."""
    data = read_dict(obj, FACE_MAP_PROP)
    if data is None:
        return None
    return {str(k): [str(n) for n in v] for k, v in data.items() if isinstance(v, list)}


def store_mapping(obj: bpy.types.Object, mapping: Mapping[str, Sequence[str]] | None) -> None:
    """Save (or with None, forget) the mapping on `obj`; an empty list means "drive nothing"."""
    write_dict(obj, FACE_MAP_PROP, None if mapping is None else {k: [n for n in v if n] for k, v in mapping.items()})


def mapping_for(character: bpy.types.Object | None) -> dict[str, list[str]]:
    """The mapping used for `character`: the defaults, overridden per expression by the one saved on it."""
    mapping = default_mapping()
    mapping.update(stored_mapping(character) or {})
    return mapping


def parse_names(text: str) -> list[str]:
    """A panel field "aa, Fcl_MTH_A" -> ["aa", "Fcl_MTH_A"]."""
    return [n.strip() for n in text.split(",") if n.strip()]


def join_names(names: Iterable[str]) -> str:
    return ", ".join(names)


# --- the character and its meshes -----------------------------------------------------------------------------------

def _deforming_armature(mesh: bpy.types.Object) -> bpy.types.Object | None:
    for mod in mesh.modifiers:
        if mod.type == "ARMATURE" and mod.object is not None:
            return mod.object
    parent = mesh.parent
    return parent if parent is not None and parent.type == "ARMATURE" else None


def character_of(obj: bpy.types.Object | None) -> bpy.types.Object | None:
    """The object a face mapping belongs to: an armature itself, a mesh's armature (parent or Armature modifier),
    else the mesh; None for anything else."""
    if obj is None:
        return None
    if obj.type == "ARMATURE":
        return obj
    if obj.type == "MESH":
        return _deforming_armature(obj) or obj
    return None


def character_meshes(target: bpy.types.Object | Sequence[bpy.types.Object]) -> list[bpy.types.Object]:
    """The meshes of a character: an armature's mesh children and the meshes its Armature modifiers point at, a mesh
    itself, or those of each object of a list; each once."""
    objects = [target] if isinstance(target, bpy.types.Object) else list(target)
    found: list[bpy.types.Object] = []
    for obj in objects:
        if obj.type == "MESH":
            found.append(obj)
        elif obj.type == "ARMATURE":
            found += [c for c in obj.children_recursive if c.type == "MESH"]
            found += [m for m in bpy.data.objects if m.type == "MESH"
                      and any(mod.type == "ARMATURE" and mod.object == obj for mod in m.modifiers)]
    return list(dict.fromkeys(found))


def _shape_keys(mesh: bpy.types.Object) -> bpy.types.Key | None:
    """The mesh's relative shape keys (beyond the basis), or None (absolute keys are driven by time, not values)."""
    key = getattr(mesh.data, "shape_keys", None)
    if key is None or not key.use_relative or len(key.key_blocks) < 2:
        return None
    return key


def shape_key_names(meshes: Iterable[bpy.types.Object]) -> list[str]:
    """The distinct shape-key names of the meshes (basis left out), in order."""
    names: dict[str, None] = {}
    for mesh in meshes:
        key = _shape_keys(mesh)
        if key is not None:
            names.update((b.name, None) for b in key.key_blocks[1:])
    return list(names)


@dataclass
class MeshMatch:
    """One mesh's shape keys and what drives them: shape-key name -> the expressions whose weights it takes."""

    mesh: bpy.types.Object
    key: bpy.types.Key
    drives: dict[str, list[str]]


def match_shape_keys(meshes: Iterable[bpy.types.Object],
                     mapping: Mapping[str, Sequence[str]]) -> list[MeshMatch]:
    """Per mesh with shape keys (each Key once): for every expression the first of its names the mesh has
    (case-insensitive)."""
    matches: list[MeshMatch] = []
    seen: set[str] = set()
    for mesh in meshes:
        key = _shape_keys(mesh)
        if key is None or key.name in seen:
            continue
        seen.add(key.name)
        lookup: dict[str, str] = {}
        for block in key.key_blocks[1:]:
            lookup.setdefault(block.name.casefold(), block.name)
        drives: dict[str, list[str]] = {}
        for expression, names in mapping.items():
            hit = next((lookup[n.casefold()] for n in names if n.casefold() in lookup), None)
            if hit is not None:
                drives.setdefault(hit, []).append(expression)
        matches.append(MeshMatch(mesh, key, drives))
    return matches


def matched_names(matches: Iterable[MeshMatch]) -> dict[str, list[str]]:
    """expression -> the shape keys it drives over every mesh (distinct, in mesh order)."""
    out: dict[str, list[str]] = {}
    for m in matches:
        for name, expressions in m.drives.items():
            for e in expressions:
                if name not in out.setdefault(e, []):
                    out[e].append(name)
    return out


# --- keying ----------------------------------------------------------------------------------------------------------

@dataclass
class FaceReport:
    """What key_weights did: mesh object -> the shape keys keyed on it, the new actions (one per mesh's Key), the
    expressions that drive nothing, and a one-line notice when nothing was keyed ("" otherwise)."""

    keyed: dict[str, list[str]] = field(default_factory=dict)
    actions: list[bpy.types.Action] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    notice: str = ""

    @property
    def count(self) -> int:
        """Shape keys keyed, over every mesh."""
        return sum(len(v) for v in self.keyed.values())

    def summary(self) -> str:
        """One line for the status bar."""
        if self.notice:
            return self.notice
        meshes = ", ".join(f"{m} ({len(k)})" for m, k in self.keyed.items())
        return f"Face: {self.count} shape keys keyed on {meshes}" + \
            (f"; {len(self.unmatched)} expressions matched none" if self.unmatched else "")


def clean_weights(weights: np.ndarray) -> np.ndarray:
    """Expression weights (..., E) as floats 0..1, a missing (NaN) weight as 0."""
    return np.clip(np.nan_to_num(np.asarray(weights, dtype=np.float64), nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)


def expression_weights(motion: Motion) -> np.ndarray:
    """The motion's (F, E) expression weights, 0..1, a missing (NaN) weight as 0."""
    return clean_weights(motion.expressions)


def _new_key_action(key: bpy.types.Key, name: str) -> tuple[bpy.types.Action, bpy.types.bpy_prop_collection]:
    """A new action for shape keys `key` and its F-curves: a layered action with one KEY slot on Blender 4.4+."""
    action = bpy.data.actions.new(name)
    if bpy.app.version >= (4, 4, 0):
        slot = action.slots.new(id_type="KEY", name=key.name)
        strip = action.layers.new("Mimic").strips.new(type="KEYFRAME")
        return action, strip.channelbag(slot, ensure=True).fcurves
    action.id_root = "KEY"
    return action, action.fcurves


def shape_key_path(name: str) -> str:
    """The data path of a shape key's value on its Key."""
    return f'key_blocks["{bpy.utils.escape_identifier(name)}"].value'


def key_expressions(target: bpy.types.Object | Sequence[bpy.types.Object], motion: Motion,
                    mapping: Mapping[str, Sequence[str]] | None = None, frame_start: int = 1,
                    action_name: str | None = None) -> FaceReport:
    """Key `motion`'s expressions onto the shape keys of `target` (key_weights); a motion without expressions gets a
    notice."""
    if motion.expressions is None or not motion.expression_names:
        return FaceReport(notice="The motion has no facial expressions: only the body is animated.")
    return key_weights(target, expression_weights(motion), list(motion.expression_names), mapping, frame_start,
                       action_name)


def _label(objects: Sequence[bpy.types.Object]) -> tuple[bpy.types.Object | None, str]:
    character = character_of(objects[0]) if objects else None
    return character, character.name if character is not None else "the character"


def no_match_notice(label: str, has_keys: bool) -> str:
    """The notice for a character whose shape keys none of the expressions drive."""
    return (f"{label} has {'no shape keys matching' if has_keys else 'no shape keys for'} Mimic's expressions (VRM, "
            f"VRoid Fcl_*, ARKit or MMD names): only the body is animated; map them in Mimic > Face.")


def driven(matches: Iterable[MeshMatch]) -> set[str]:
    """The expressions that drive at least one shape key."""
    return {e for m in matches for es in m.drives.values() for e in es}


def key_weights(target: bpy.types.Object | Sequence[bpy.types.Object], weights: np.ndarray, names: Sequence[str],
                mapping: Mapping[str, Sequence[str]] | None = None, frame_start: int = 1,
                action_name: str | None = None) -> FaceReport:
    """Key expression weights (F, E) 0..1 (columns named `names`) onto the shape keys of `target` (an armature's
    meshes, a mesh, or a list of them), frames frame_start .. frame_start + F - 1, one new action per mesh's shape
    keys (`<action_name>_<mesh>`), assigned; a Key's previous action keeps a fake user. mapping None: the one saved on
    the character, else the defaults. Never raises for a character without shape keys: the report's notice says so."""
    objects = [target] if isinstance(target, bpy.types.Object) else list(target)
    character, label = _label(objects)
    report = FaceReport()
    mapping = mapping_for(character) if mapping is None else mapping
    column = {name: i for i, name in enumerate(names)}
    matches = match_shape_keys(character_meshes(objects), {e: list(mapping.get(e, ())) for e in column})
    used = driven(matches)
    report.unmatched = [e for e in names if e not in used]
    if not used:
        report.notice = no_match_notice(label, bool(matches))
        return report
    weights = clean_weights(weights)
    frames = np.arange(weights.shape[0], dtype=np.float64) + frame_start
    base = action_name or f"{label}_face"
    for m in matches:
        if not m.drives:
            continue
        anim = m.key.animation_data
        if anim is not None and anim.action is not None:
            anim.action.use_fake_user = True
        action, fcurves = _new_key_action(m.key, f"{base}_{m.mesh.name}")
        for name, expressions in m.drives.items():
            values = weights[:, [column[e] for e in expressions]].max(axis=1)
            key_channels(fcurves, shape_key_path(name), GROUP, frames, values[:, None])
        assign_action(m.key, action)
        report.actions.append(action)
        report.keyed[m.mesh.name] = list(m.drives)
    return report


def set_weights(matches: Iterable[MeshMatch], names: Sequence[str], weights: np.ndarray) -> None:
    """Set each matched shape key's value now to its expressions' weight (E,) 0..1 (columns named `names`; the max
    of several, as keying takes); expressions not in `names` are left out, keys they alone drive left as they are."""
    column = {name: i for i, name in enumerate(names)}
    w = clean_weights(weights).tolist()
    for m in matches:
        blocks = m.key.key_blocks
        for name, expressions in m.drives.items():
            cols = [column[e] for e in expressions if e in column]
            if cols:
                blocks[name].value = max(w[c] for c in cols)
