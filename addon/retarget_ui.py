"""Retargeting UI: bone-map editing, presets and the "Retarget action" operator (exports: the main panel's menu).

`CLASSES` is registered by addon/__init__.py: its property groups before the add-on's own settings, which hold
`retarget: PointerProperty(type=MIMIC_PG_retarget)` so that everything lives under the one `scene.mimic`; the rest
after MIMIC_PT_main, under which MIMIC_PT_retarget hangs. Operators only gather options and call plain functions
(addon/retarget/, addon/rigmap.py). The bone map shown is the active armature's; every edit is
saved on that armature (retarget.store_bone_map), so imports onto it and batch `--rig` runs use it.
"""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import BoolProperty, CollectionProperty, EnumProperty, IntProperty, PointerProperty, StringProperty

from . import rigmap
from .sidebar import MAIN_PANEL, SidebarPanel


_FILLING: list[bool] = [False]  # True while show_bone_map fills the list (no saving on every row)


def _store_edits(item: MIMIC_PG_bone_map_item, context: bpy.types.Context) -> None:
    """Update callback of a bone field: save the whole edited map on the armature it belongs to."""
    settings = context.scene.mimic.retarget
    obj = bpy.data.objects.get(settings.armature)
    if obj is not None and obj.type == "ARMATURE" and not _FILLING[0]:
        from .retarget import store_bone_map

        store_bone_map(obj, bone_map_of(settings))


class MIMIC_PG_bone_map_item(bpy.types.PropertyGroup):
    """One row of the bone map: a Mimic joint and the armature's bone that plays it."""

    joint: StringProperty(name="Joint", description="Joint of Mimic's humanoid (Unity Humanoid name)")
    bone: StringProperty(name="Bone", description="The armature's bone for this joint (empty: not mapped)",
                         update=_store_edits)


def _object_is_armature(_self: object, obj: bpy.types.Object) -> bool:
    return obj.type == "ARMATURE"


class MIMIC_PG_retarget(bpy.types.PropertyGroup):
    """Retargeting settings: the bone map being edited, presets, and the source of "Retarget Action"."""

    armature: StringProperty(name="Armature", description="The armature whose bone map is shown")
    bone_map: CollectionProperty(type=MIMIC_PG_bone_map_item)
    bone_map_index: IntProperty(name="Active Joint", default=0)
    convention: StringProperty(name="Convention", description="What auto-detection found")
    message: StringProperty(name="Status", description="Result of the last detection or check")
    preset_name: StringProperty(name="Preset Name", description="Name to save the bone map under")
    source_kind: EnumProperty(name="Source", description="Where the motion to retarget comes from", items=(
        ("ARMATURE", "Armature", "The action playing on another armature (an earlier import, an imported BVH ...)"),
        ("BVH", "BVH File", "A BVH file, imported with Blender's BVH importer"),
    ), default="ARMATURE")
    source: PointerProperty(name="Source Armature", type=bpy.types.Object, poll=_object_is_armature,
                            description="Armature whose active action is retargeted onto the active armature")
    bvh_path: StringProperty(name="BVH File", subtype="FILE_PATH", description="BVH file to retarget")
    action_name: StringProperty(name="Action", description="Name of the new action (empty: from the source)")
    use_foot_plant: BoolProperty(name="Plant Feet", default=True,
                                 description="Feet the motion marks planted stay in one place on the character's "
                                             "floor while planted, whatever its proportions (legs bend, hips lower "
                                             "if needed); imports onto the selected armature too")


# --- plain functions the operators call ------------------------------------------------------------------------------

def bone_map_of(settings: MIMIC_PG_retarget) -> dict[str, str]:
    """The edited bone map (joint -> bone), unmapped rows left out."""
    return {item.joint: item.bone for item in settings.bone_map if item.bone}


def show_bone_map(settings: MIMIC_PG_retarget, obj: bpy.types.Object, bone_map: dict[str, str],
                  convention: str = "", message: str = "") -> None:
    """Fill the panel's list with `bone_map` for armature `obj`, one row per humanoid joint."""
    _FILLING[0] = True
    try:
        settings.armature = obj.name
        settings.bone_map.clear()
        for joint in rigmap.load_humanoid().names:
            item = settings.bone_map.add()
            item.joint = joint
            item.bone = bone_map.get(joint, "")
        settings.convention = convention
        settings.message = message
    finally:
        _FILLING[0] = False


def detect_into(settings: MIMIC_PG_retarget, obj: bpy.types.Object, use_saved: bool = True) -> rigmap.Detection:
    """Auto-detect `obj`'s bone map (or take the one saved on it), show it and save it on the armature."""
    from .retarget import store_bone_map, stored_bone_map

    found = rigmap.detect(rigmap.armature_bones(obj))
    saved = stored_bone_map(obj) if use_saved else None
    bone_map = saved if saved is not None else found.bone_map
    message = "Using the bone map saved on the armature." if saved is not None else found.message(obj.name)
    show_bone_map(settings, obj, bone_map, found.label if saved is None else "Saved", message)
    store_bone_map(obj, bone_map if found.is_complete or saved is not None else None)
    return found


def preset_items(_self: object, _context: bpy.types.Context) -> list[tuple[str, str, str]]:
    """Enum items of the saved presets (kept in a module list: Blender needs the strings to stay alive)."""
    from .retarget import preset_dir

    try:
        paths = sorted(preset_dir().glob("*.json"))
    except OSError:
        paths = []
    _PRESET_ITEMS[:] = [(str(p), p.stem, f"Load {p.name}") for p in paths] or [("", "(no presets)", "")]
    return _PRESET_ITEMS


_PRESET_ITEMS: list[tuple[str, str, str]] = []


def _armature(context: bpy.types.Context) -> bpy.types.Object | None:
    obj = context.active_object
    return obj if obj is not None and obj.type == "ARMATURE" else None


# --- operators ------------------------------------------------------------------------------------------------------

class MIMIC_OT_detect_bone_map(bpy.types.Operator):
    """Find the active armature's bones for Mimic's humanoid from their names and hierarchy"""

    bl_idname = "mimic.detect_bone_map"
    bl_label = "Detect Bones"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _armature(context) is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        found = detect_into(context.scene.mimic.retarget, _armature(context), use_saved=False)
        self.report({"INFO"} if found.is_complete else {"WARNING"}, found.message(_armature(context).name))
        return {"FINISHED"}


class MIMIC_OT_save_bone_map_preset(bpy.types.Operator):
    """Save the bone map as a preset (with the .blend and armature it belongs to, for batch --rig)"""

    bl_idname = "mimic.save_bone_map_preset"
    bl_label = "Save Preset"

    name: StringProperty(name="Name", description="Preset name")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return len(context.scene.mimic.retarget.bone_map) > 0

    def execute(self, context: bpy.types.Context) -> set[str]:
        from .retarget import preset_dir

        settings = context.scene.mimic.retarget
        name = bpy.path.clean_name(self.name or settings.preset_name or settings.armature)
        rig = (bpy.data.filepath, settings.armature) if bpy.data.filepath else None
        path = preset_dir() / f"{name}.json"
        try:
            rigmap.save_preset(path, bone_map_of(settings), name, rig)
        except OSError as err:
            self.report({"ERROR"}, f"Could not save the preset: {err}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Saved bone-map preset {path}")
        return {"FINISHED"}


class MIMIC_OT_load_bone_map_preset(bpy.types.Operator):
    """Load a bone-map preset onto the active armature"""

    bl_idname = "mimic.load_bone_map_preset"
    bl_label = "Load Preset"
    bl_options = {"REGISTER", "UNDO"}
    bl_property = "preset"

    preset: EnumProperty(name="Preset", items=preset_items)
    filepath: StringProperty(name="File", subtype="FILE_PATH", description="Preset file (overrides the list)")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _armature(context) is not None

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        context.window_manager.invoke_search_popup(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        from .retarget import store_bone_map

        obj = _armature(context)
        path = self.filepath or self.preset
        try:
            bone_map = rigmap.load_preset(path)
        except rigmap.RigMapError as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        problems = rigmap.validate_bone_map(rigmap.armature_bones(obj), bone_map)
        show_bone_map(context.scene.mimic.retarget, obj, bone_map, Path(path).stem, " ".join(problems) or
                      f"Loaded preset {Path(path).stem}.")
        store_bone_map(obj, bone_map)
        if problems:
            self.report({"WARNING"}, " ".join(problems))
        return {"FINISHED"}


class MIMIC_OT_retarget_action(bpy.types.Operator):
    """Retarget an action (another armature's, or a BVH file's) onto the active armature as a new action"""

    bl_idname = "mimic.retarget_action"
    bl_label = "Retarget Action"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _armature(context) is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        from .retarget import RetargetError, retarget_action, retarget_bvh

        settings = context.scene.mimic.retarget
        target = _armature(context)
        bone_map = bone_map_of(settings) if settings.armature == target.name and len(settings.bone_map) else None
        try:
            if settings.source_kind == "BVH":
                path = bpy.path.abspath(settings.bvh_path)
                name = settings.action_name or Path(path).stem
                action = retarget_bvh(path, target, name, bone_map, use_foot_plant=settings.use_foot_plant)
            else:
                source = settings.source
                src_action = source.animation_data.action if source and source.animation_data else None
                name = settings.action_name or (f"{src_action.name}_{target.name}" if src_action else target.name)
                action = retarget_action(source, target, name, bone_map, use_foot_plant=settings.use_foot_plant)
        except (RetargetError, rigmap.RigMapError, OSError) as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        start, end = (int(round(v)) for v in action.frame_range)
        context.scene.frame_start, context.scene.frame_end = start, end
        self.report({"INFO"}, f"Retargeted onto {target.name} as action {action.name}")
        return {"FINISHED"}


# --- panel ----------------------------------------------------------------------------------------------------------

class MIMIC_UL_bone_map(bpy.types.UIList):
    """Rows of joint -> bone; bone fields search the armature's bones."""

    def draw_item(self, context: bpy.types.Context, layout: bpy.types.UILayout, data: MIMIC_PG_retarget,
                  item: MIMIC_PG_bone_map_item, icon: int, active_data: object, active_prop: str,
                  index: int = 0, flt_flag: int = 0) -> None:
        human = rigmap.load_humanoid()
        obj = bpy.data.objects.get(data.armature)
        row = layout.row(align=True)
        split = row.split(factor=0.4)
        missing = item.joint in human.required and not item.bone
        split.label(text=item.joint + (" *" if item.joint in human.required else ""),
                    icon="ERROR" if missing else "NONE")
        if obj is not None and obj.type == "ARMATURE":
            split.prop_search(item, "bone", obj.data, "bones", text="")
        else:
            split.prop(item, "bone", text="")


class MIMIC_PT_retarget(SidebarPanel, bpy.types.Panel):
    """Retarget onto your own character: bone map, presets, retarget an action."""

    bl_idname = "MIMIC_PT_retarget"
    bl_label = "Retarget"
    bl_parent_id = MAIN_PANEL
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.mimic.retarget
        obj = _armature(context)
        if obj is None:
            layout.label(text="Select your character's armature", icon="INFO")
            return
        row = layout.row(align=True)
        row.operator("mimic.detect_bone_map", icon="VIEWZOOM")
        row.operator("mimic.load_bone_map_preset", icon="PRESET", text="")
        if settings.armature != obj.name:
            layout.label(text=f"Bone map shown: {settings.armature or 'none'}; detect for {obj.name}", icon="INFO")
        elif settings.message:
            layout.label(text=settings.message[:120])
        if settings.bone_map and settings.armature == obj.name:
            layout.template_list("MIMIC_UL_bone_map", "", settings, "bone_map", settings, "bone_map_index", rows=8)
            row = layout.row(align=True)
            row.prop(settings, "preset_name", text="")
            row.operator("mimic.save_bone_map_preset", icon="FILE_TICK")
        box = layout.box()
        box.label(text=f"Retarget onto {obj.name}")
        box.prop(settings, "source_kind", expand=True)
        if settings.source_kind == "BVH":
            row = box.row(align=True)
            row.prop(settings, "bvh_path", text="")
        else:
            box.prop(settings, "source")
        box.prop(settings, "action_name")
        box.prop(settings, "use_foot_plant")
        box.operator("mimic.retarget_action", icon="ARMATURE_DATA")


CLASSES: tuple[type, ...] = (
    MIMIC_PG_bone_map_item, MIMIC_PG_retarget, MIMIC_OT_detect_bone_map, MIMIC_OT_save_bone_map_preset,
    MIMIC_OT_load_bone_map_preset, MIMIC_OT_retarget_action, MIMIC_UL_bone_map,
    MIMIC_PT_retarget,
)
