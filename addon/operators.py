"""Operators: they gather options and call the plain functions in conversion.py, export.py and interpreter.py."""

from __future__ import annotations

import bpy
from bpy_extras.io_utils import ExportHelper

from .properties import preferences

#: The conversion the modal import operator is running, if any (the panel shows its progress).
_ACTIVE: dict[str, object] = {}
TIMER_INTERVAL_S = 0.1


def active_conversion():  # -> Conversion | None (typed loosely: conversion.py imports heavier modules)
    """The import in progress, for the panel."""
    return _ACTIVE.get("conversion")


def _status(context: bpy.types.Context, text: str | None) -> None:
    """Show `text` in the status bar (None restores it)."""
    if context.workspace is not None:
        context.workspace.status_text_set(text)


def _redraw(context: bpy.types.Context) -> None:
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


class MIMIC_OT_import_video(bpy.types.Operator):
    """Convert the video into skeletal animation with the Mimic core and import it"""

    bl_idname = "mimic.import_video"
    bl_label = "Import Video as Animation"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return active_conversion() is None and bool(context.scene.mimic.filepath)

    def _conversion(self, context: bpy.types.Context):
        from .conversion import Conversion

        settings = context.scene.mimic
        target = ""
        if settings.target == "SELECTED":
            obj = context.active_object
            if obj is None or obj.type != "ARMATURE":
                raise ValueError("Select the armature to put the animation on, or choose Target: New Armature.")
            target = obj.name
        prefs = preferences(context)
        return Conversion(settings.filepath, settings.core_options(), prefs.python_path if prefs else "", target,
                          settings.use_scene_fps)

    def _import(self, context: bpy.types.Context, conversion) -> set[str]:
        try:
            result = conversion.finish(context)
        except Exception as err:  # any failure (core, motion file, retargeting): report it; the scene is restored
            self.report({"ERROR"}, str(err) or type(err).__name__)
            return {"CANCELLED"}
        for warning in conversion.job.state.warnings:
            self.report({"WARNING"}, warning)
        self.report({"INFO"}, f"Imported {result.frames} frames as action {result.action.name!r} "
                              f"on {result.armature.name!r}")
        return {"FINISHED"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        """Synchronous: scripts, tests and batch runs (no event loop needed)."""
        from .interpreter import InterpreterError
        from .job import CoreError

        try:
            conversion = self._conversion(context).start()
            conversion.wait()
        except (CoreError, InterpreterError, ValueError) as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        return self._import(context, conversion)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        """Start the core and follow it on a timer, so Blender stays responsive."""
        from .interpreter import InterpreterError
        from .job import CoreError

        if context.window is None:  # no window to run a modal handler in (background scripts)
            return self.execute(context)

        try:
            conversion = self._conversion(context).start()
        except (CoreError, InterpreterError, ValueError) as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        _ACTIVE["conversion"] = conversion
        wm = context.window_manager
        self._timer = wm.event_timer_add(TIMER_INTERVAL_S, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _end(self, context: bpy.types.Context) -> None:
        context.window_manager.event_timer_remove(self._timer)
        _status(context, None)
        _ACTIVE.pop("conversion", None)
        _redraw(context)

    def cancel(self, context: bpy.types.Context) -> None:
        """Blender ends the modal operator (a file is loaded, the window closes): stop the core, clean up."""
        conversion = active_conversion()
        if conversion is not None:
            conversion.cancel()
        self._end(context)

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        conversion = active_conversion()
        if conversion is None:
            return {"CANCELLED"}
        if event.type == "ESC" or conversion.cancel_requested:
            conversion.cancel()
            self._end(context)
            self.report({"WARNING"}, "Mimic import cancelled; the scene is unchanged.")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        running = conversion.poll()
        state = conversion.job.state
        _status(context, f"Mimic: {state.label} ({100 * state.fraction:.0f} %) - Esc to cancel")
        _redraw(context)
        if running:
            return {"PASS_THROUGH"}
        self._end(context)
        return self._import(context, conversion)


class MIMIC_OT_cancel_import(bpy.types.Operator):
    """Stop the running Mimic import; nothing is added to the scene"""

    bl_idname = "mimic.cancel_import"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return active_conversion() is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        conversion = active_conversion()
        if conversion is not None:
            conversion.cancel_requested = True  # the modal operator stops the core on its next tick
        return {"FINISHED"}


class _ExportArmature(ExportHelper):
    """Shared poll: an armature is active."""

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        obj = context.active_object
        return obj is not None and obj.type == "ARMATURE"

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        obj = context.active_object
        action = obj.animation_data.action if obj.animation_data else None
        self.filepath = bpy.path.ensure_ext((action or obj).name, self.filename_ext)
        return super().invoke(context, event)

    def _run(self, context: bpy.types.Context, write) -> set[str]:
        from .export import ExportError

        try:
            path = write(context, context.active_object, self.filepath)
        except (ExportError, OSError) as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Wrote {path}")
        return {"FINISHED"}


class MIMIC_OT_export_bvh(bpy.types.Operator, _ExportArmature):
    """Export the active armature's animation as BVH for Unity (Y up, root translation only, ZXY)"""

    bl_idname = "mimic.export_bvh"
    bl_label = "Export BVH"
    filename_ext = ".bvh"
    filter_glob: bpy.props.StringProperty(default="*.bvh", options={"HIDDEN"})

    def execute(self, context: bpy.types.Context) -> set[str]:
        from .export import export_bvh

        return self._run(context, export_bvh)


class MIMIC_OT_export_fbx(bpy.types.Operator, _ExportArmature):
    """Export the active armature and its action as FBX (armature and baked animation, 1:1 scale in Unity)"""

    bl_idname = "mimic.export_fbx"
    bl_label = "Export FBX"
    filename_ext = ".fbx"
    filter_glob: bpy.props.StringProperty(default="*.fbx", options={"HIDDEN"})

    def execute(self, context: bpy.types.Context) -> set[str]:
        from .export import export_fbx

        return self._run(context, export_fbx)


class MIMIC_OT_check_core(bpy.types.Operator):
    """Run the core with the configured Python and report its version, or how to fix the setup"""

    bl_idname = "mimic.check_core"
    bl_label = "Check"

    def execute(self, context: bpy.types.Context) -> set[str]:
        from .interpreter import InterpreterError, core_version, find_python

        prefs = preferences(context)
        try:
            python = find_python(prefs.python_path if prefs else "")
            message = f"{core_version(python)} ({python})"
        except InterpreterError as err:
            if prefs is not None:
                prefs.check_message = str(err)
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        if prefs is not None:
            prefs.check_message = message
        self.report({"INFO"}, message)
        return {"FINISHED"}


CLASSES: tuple[type, ...] = (MIMIC_OT_import_video, MIMIC_OT_cancel_import, MIMIC_OT_export_bvh, MIMIC_OT_export_fbx,
                             MIMIC_OT_check_core)
