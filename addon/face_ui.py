"""The Face sub-panel: the character's mapping expression -> shape keys, filled by "Match Shape Keys" and editable.

`CLASSES` is registered by addon/__init__.py: its property groups before the add-on's settings (which hold
`face: PointerProperty(type=MIMIC_PG_face)` under `scene.mimic`), the rest after MIMIC_PT_main. Every edit is saved
on the character (face.store_mapping), so imports onto it use it (face.key_expressions reads it).
"""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, CollectionProperty, EnumProperty, IntProperty, StringProperty

from . import face
from .sidebar import MAIN_PANEL, SidebarPanel

_FILLING: list[bool] = [False]  # True while show_mapping fills the list (no saving on every row)


def _store_edits(_item: MIMIC_PG_face_item, context: bpy.types.Context) -> None:
    """Update callback of a shape-key field: save the whole edited mapping on the character it belongs to."""
    settings = context.scene.mimic.face
    obj = bpy.data.objects.get(settings.character)
    if obj is not None and not _FILLING[0]:
        face.store_mapping(obj, mapping_of(settings))


class MIMIC_PG_face_item(bpy.types.PropertyGroup):
    """One row of the face mapping: a Mimic expression and the character's shape keys it drives."""

    expression: StringProperty(name="Expression", description="Mimic's expression channel (rigs/expressions.json)")
    shape_keys: StringProperty(name="Shape Keys", update=_store_edits,
                               description="Shape-key names, comma-separated: on each mesh the first one it has is "
                                           "driven (case-insensitive); empty: not driven")


class MIMIC_PG_face(bpy.types.PropertyGroup):
    """The face mapping being edited and the character it belongs to."""

    character: StringProperty(name="Character", description="The object whose face mapping is shown")
    mapping: CollectionProperty(type=MIMIC_PG_face_item)
    mapping_index: IntProperty(name="Active Expression", default=0)
    message: StringProperty(name="Status", description="Result of the last match")


# --- plain functions the operators call ------------------------------------------------------------------------------

def mapping_of(settings: MIMIC_PG_face) -> dict[str, list[str]]:
    """The edited mapping: expression -> shape-key names (an empty list: not driven)."""
    return {item.expression: face.parse_names(item.shape_keys) for item in settings.mapping}


def show_mapping(settings: MIMIC_PG_face, character: bpy.types.Object, mapping: dict[str, list[str]],
                 message: str = "") -> None:
    """Fill the panel's list with `mapping` for `character`, one row per Mimic expression."""
    _FILLING[0] = True
    try:
        settings.character = character.name
        settings.mapping.clear()
        for expression in face.default_mapping():
            item = settings.mapping.add()
            item.expression = expression
            item.shape_keys = face.join_names(mapping.get(expression, ()))
        settings.message = message
    finally:
        _FILLING[0] = False


def match_into(settings: MIMIC_PG_face, character: bpy.types.Object, use_saved: bool = False) -> str:
    """Match the character's shape keys against the default names (or show the mapping saved on it), show the
    result and save it on the character; returns the one-line message."""
    saved = face.stored_mapping(character) if use_saved else None
    if saved is not None:
        mapping = face.mapping_for(character)
        message = "Using the face mapping saved on the character."
    else:
        matches = face.match_shape_keys(face.character_meshes(character), face.default_mapping())
        mapping = face.matched_names(matches)
        message = status(character, mapping)
    show_mapping(settings, character, mapping, message)
    face.store_mapping(character, mapping_of(settings))
    return message


def status(character: bpy.types.Object, mapping: dict[str, list[str]]) -> str:
    """"N of E expressions drive K shape keys on M meshes", or why none do."""
    meshes = face.character_meshes(character)
    matches = face.match_shape_keys(meshes, mapping)
    keys = sum(len(m.drives) for m in matches)
    if keys == 0:
        return (f"{character.name} has no shape keys." if not matches else
                "No shape key matches Mimic's expressions: type or pick names below.")
    driven = {e for m in matches for es in m.drives.values() for e in es}
    used = sum(1 for m in matches if m.drives)
    return (f"{len(driven)} of {len(face.default_mapping())} expressions drive {keys} shape keys on {used} "
            f"mesh{'es' if used != 1 else ''}.")


def _character(context: bpy.types.Context) -> bpy.types.Object | None:
    return face.character_of(context.active_object)


_KEY_ITEMS: list[tuple[str, str, str]] = []  # Blender needs the enum strings to stay alive


def shape_key_items(_self: object, context: bpy.types.Context) -> list[tuple[str, str, str]]:
    """Enum items: the shape keys of the character whose mapping is shown."""
    obj = bpy.data.objects.get(context.scene.mimic.face.character) if context is not None else None
    names = face.shape_key_names(face.character_meshes(obj)) if obj is not None else []
    _KEY_ITEMS[:] = [(n, n, f"Drive shape key {n}") for n in names] or [("", "(no shape keys)", "")]
    return _KEY_ITEMS


# --- operators ------------------------------------------------------------------------------------------------------

class MIMIC_OT_face_match(bpy.types.Operator):
    """Find the character's shape keys for Mimic's expressions by their names (VRM, VRoid Fcl_*, ARKit, MMD)"""

    bl_idname = "mimic.face_match"
    bl_label = "Match Shape Keys"
    bl_options = {"REGISTER", "UNDO"}

    use_saved: BoolProperty(name="Use Saved", default=False, options={"SKIP_SAVE"},
                            description="Show the mapping saved on the character instead of matching anew")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _character(context) is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        message = match_into(context.scene.mimic.face, _character(context), self.use_saved)
        self.report({"INFO"}, message)
        return {"FINISHED"}


class MIMIC_OT_face_pick(bpy.types.Operator):
    """Pick one of the character's shape keys for this expression"""

    bl_idname = "mimic.face_pick"
    bl_label = "Pick Shape Key"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}
    bl_property = "shape_key"

    row: IntProperty(name="Row", min=0)
    shape_key: EnumProperty(name="Shape Key", items=shape_key_items)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        context.window_manager.invoke_search_popup(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.mimic.face
        if not self.shape_key or self.row >= len(settings.mapping):
            return {"CANCELLED"}
        settings.mapping[self.row].shape_keys = self.shape_key  # saved by the field's update
        return {"FINISHED"}


# --- panel ----------------------------------------------------------------------------------------------------------

class MIMIC_UL_face_map(bpy.types.UIList):
    """Rows of expression -> shape keys: a text field and a search over the character's shape keys."""

    def draw_item(self, context: bpy.types.Context, layout: bpy.types.UILayout, data: MIMIC_PG_face,
                  item: MIMIC_PG_face_item, icon: int, active_data: object, active_prop: str,
                  index: int = 0, flt_flag: int = 0) -> None:
        names = face.parse_names(item.shape_keys)
        obj = bpy.data.objects.get(data.character)
        known = {n.casefold() for n in face.shape_key_names(face.character_meshes(obj))} if obj is not None else set()
        found = any(n.casefold() in known for n in names)
        split = layout.row(align=True).split(factor=0.4)
        split.label(text=item.expression, icon="CHECKMARK" if found else ("ERROR" if names else "BLANK1"))
        row = split.row(align=True)
        row.prop(item, "shape_keys", text="")
        row.operator("mimic.face_pick", text="", icon="VIEWZOOM").row = index


class MIMIC_PT_face(SidebarPanel, bpy.types.Panel):
    """Facial expressions onto the character's shape keys: the mapping and how many keys it reaches."""

    bl_idname = "MIMIC_PT_face"
    bl_label = "Face"
    bl_parent_id = MAIN_PANEL
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.mimic.face
        obj = _character(context)
        if obj is None:
            layout.label(text="Select your character (its armature or face mesh)", icon="INFO")
            return
        layout.label(text=status(obj, face.mapping_for(obj)), icon="SHAPEKEY_DATA")
        row = layout.row(align=True)
        row.operator("mimic.face_match", icon="VIEWZOOM")
        if settings.character != obj.name:
            if face.stored_mapping(obj) is not None:
                row.operator("mimic.face_match", text="Edit Saved", icon="GREASEPENCIL").use_saved = True
            layout.label(text=f"Mapping shown: {settings.character or 'none'}; match for {obj.name}", icon="INFO")
            return
        layout.template_list("MIMIC_UL_face_map", "", settings, "mapping", settings, "mapping_index", rows=8)


CLASSES: tuple[type, ...] = (
    MIMIC_PG_face_item, MIMIC_PG_face, MIMIC_OT_face_match, MIMIC_OT_face_pick, MIMIC_UL_face_map, MIMIC_PT_face,
)
