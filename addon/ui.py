"""The sidebar panel: View3D > Sidebar > Mimic."""

from __future__ import annotations

import bpy

from .operators import active_conversion
from .properties import copy_import_settings
from .sidebar import MAIN_PANEL, SidebarPanel

#: What fingers and face cost, measured by bench/speed.py (docs/HANDS_FACE.md).
HANDS_FACE_COST = "About 2x the conversion time"


class MIMIC_PT_main(SidebarPanel, bpy.types.Panel):
    """Import a video as animation (the panel's settings are the import operator's properties), then export it."""

    bl_idname = MAIN_PANEL
    bl_label = "Mimic"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.mimic
        layout.use_property_split = True
        layout.use_property_decorate = False
        layout.prop(settings, "filepath")
        layout.prop(settings, "use_range")
        if settings.use_range:
            col = layout.column(align=True)
            col.prop(settings, "start_s")
            col.prop(settings, "end_s")
        layout.prop(settings, "person")
        if settings.person == "INDEX":
            layout.prop(settings, "person_index")
        layout.prop(settings, "lifter")
        layout.prop(settings, "cutoff_hz")
        layout.prop(settings, "foot_lock")
        layout.prop(settings, "solve")
        col = layout.column(heading="Capture", align=True)
        col.prop(settings, "use_hands")
        col.prop(settings, "use_face")
        if settings.use_hands or settings.use_face:
            col.label(text=HANDS_FACE_COST, icon="TIME")
        layout.prop(settings, "target")
        if settings.target == "SELECTED":
            obj = context.active_object
            if obj is None or obj.type != "ARMATURE":
                layout.label(text="Select an armature", icon="ERROR")
        layout.prop(settings, "use_scene_fps")

        conversion = active_conversion()
        if conversion is None:
            row = layout.row()
            row.enabled = bool(settings.filepath)
            copy_import_settings(settings, row.operator("mimic.import_video", icon="FILE_MOVIE"))
        else:
            state = conversion.job.state
            if hasattr(layout, "progress"):  # Blender 4.0+
                layout.progress(factor=state.fraction, type="BAR", text=f"{state.label} ({state.fraction:.0%})")
            else:
                layout.label(text=f"{state.label} ({state.fraction:.0%})")
            layout.operator("mimic.cancel_import", icon="CANCEL")

        layout.separator()
        layout.operator_menu_enum("mimic.export", "format", text="Export", icon="EXPORT")  # addon/exporters


CLASSES: tuple[type, ...] = (MIMIC_PT_main,)
