"""Where every Mimic panel lives: View3D > Sidebar > Mimic (a mixin, no imports, so any panel module can use it)."""

from __future__ import annotations

#: The main panel's bl_idname; the other panels are its sections (bl_parent_id).
MAIN_PANEL = "MIMIC_PT_main"


class SidebarPanel:
    """Mixed in before bpy.types.Panel: the space, region and tab of Mimic's panels."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Mimic"
