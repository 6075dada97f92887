"""Operators: they gather their properties and call plain functions (conversion.py, exporters/, interpreter.py).

Every failure a user can act on is a MimicError (the core's, a bad motion file, the add-on's own MimicAddonError):
operators catch that one base and report its message.
"""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty, StringProperty
from bpy_extras.io_utils import ExportHelper

from . import exporters
from .errors import MimicError, RetargetError
from .properties import ImportSettings, preferences

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


def _python(context: bpy.types.Context) -> str:
    """The core's interpreter from the add-on preferences ("" = search)."""
    prefs = preferences(context)
    return prefs.python_path if prefs else ""


def _foot_plant(context: bpy.types.Context) -> bool:
    """The Retarget box's Plant Feet (scene.mimic.retarget.use_foot_plant): also for imports onto a character."""
    return bool(context.scene.mimic.retarget.use_foot_plant)


class MIMIC_OT_import_video(ImportSettings, bpy.types.Operator):
    """Convert the video into skeletal animation with the Mimic core and import it"""

    bl_idname = "mimic.import_video"
    bl_label = "Import Video as Animation"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return active_conversion() is None

    def _target_name(self, context: bpy.types.Context) -> str:
        if self.target != "SELECTED":
            return ""
        obj = context.active_object
        if obj is None or obj.type != "ARMATURE":
            raise RetargetError("Select the armature to put the animation on, or choose Target: New Armature.")
        return obj.name

    def _report_result(self, result) -> set[str]:  # result: importer.ImportResult
        for warning in result.warnings:
            self.report({"WARNING"}, warning)
        self.report({"INFO"}, f"Imported {result.frames} frames as action {result.action.name!r} "
                              f"on {result.armature.name!r}")
        return {"FINISHED"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        """Synchronous: scripts, tests and batch runs (no event loop needed)."""
        from .conversion import import_video

        try:
            result = import_video(context, self.filepath, self.core_options(), self._target_name(context),
                                  self.use_scene_fps, _python(context), _foot_plant(context))
        except MimicError as err:  # the scene is as it was
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        return self._report_result(result)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        """Start the core and follow it on a timer, so Blender stays responsive."""
        from .conversion import Conversion

        if context.window is None:  # no window to run a modal handler in (background scripts)
            return self.execute(context)
        try:
            conversion = Conversion(self.filepath, self.core_options(), _python(context), self._target_name(context),
                                    self.use_scene_fps, _foot_plant(context)).start()
        except MimicError as err:
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
        try:
            result = conversion.finish(context)
        except MimicError as err:  # the scene is as it was
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        return self._report_result(result)


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


class MIMIC_OT_export(bpy.types.Operator, ExportHelper):
    """Export the active armature's animation in one of the formats of addon/exporters"""

    bl_idname = "mimic.export"
    bl_label = "Export Animation"

    filename_ext = ".bvh"  # follows `format` (invoke, check)
    filter_glob: StringProperty(default=";".join(sorted({f"*{e.extension}" for e in exporters.EXPORTERS.values()})),
                                options={"HIDDEN"})
    format: EnumProperty(name="Format", description="File format (addon/exporters)", items=exporters.enum_items())

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        obj = context.active_object
        return obj is not None and obj.type == "ARMATURE"

    @classmethod
    def description(cls, context: bpy.types.Context, properties: bpy.types.OperatorProperties) -> str:
        return exporters.get(properties.format).description

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        obj = context.active_object
        action = obj.animation_data.action if obj.animation_data else None
        self.filename_ext = exporters.get(self.format).extension
        self.filepath = bpy.path.ensure_ext((action or obj).name, self.filename_ext)
        return super().invoke(context, event)

    def check(self, context: bpy.types.Context) -> bool:
        self.filename_ext = exporters.get(self.format).extension  # the file name's extension follows the format
        return super().check(context)

    def execute(self, context: bpy.types.Context) -> set[str]:
        exporter = exporters.get(self.format)
        try:
            written = exporter.export(context, context.active_object,
                                      bpy.path.ensure_ext(self.filepath, exporter.extension))
            problems = exporter.check(written) if exporter.check is not None else []
        except MimicError as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        if problems:
            self.report({"WARNING"}, f"Wrote {written}, but: " + " ".join(problems))
        else:
            self.report({"INFO"}, f"Wrote {written}")
        return {"FINISHED"}


class MIMIC_OT_check_core(bpy.types.Operator):
    """Run the core with the configured Python and report its version, or how to fix the setup"""

    bl_idname = "mimic.check_core"
    bl_label = "Check"

    def execute(self, context: bpy.types.Context) -> set[str]:
        from .interpreter import core_version, find_python

        prefs = preferences(context)
        try:
            python = find_python(_python(context))
            message = f"{core_version(python)} ({python})"
        except MimicError as err:
            if prefs is not None:
                prefs.check_message = str(err)
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        if prefs is not None:
            prefs.check_message = message
        self.report({"INFO"}, message)
        return {"FINISHED"}


SETUP_TIMER_S = 0.25


def _follow_setup() -> float | None:
    """Timer while Set up core runs: redraw the preferences; at the end put the outcome where Check writes."""
    from . import setup_core

    job = setup_core.active()
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "PREFERENCES":
                area.tag_redraw()
    if job is None or job.poll():
        return SETUP_TIMER_S if job is not None else None
    prefs = preferences(bpy.context)
    if prefs is not None:
        prefs.check_message = job.state.message
    return None


class MIMIC_OT_setup_core(bpy.types.Operator):
    """Create the core's Python environment in Blender's user folder and install its packages there (about 1.9 GB;
    needs online access, or a wheel folder)"""

    bl_idname = "mimic.setup_core"
    bl_label = "Set up Core"

    # Tests only: a small requirements file and the Python to create the environment with ("" = the real ones).
    requirements: StringProperty(options={"HIDDEN", "SKIP_SAVE"})
    python: StringProperty(options={"HIDDEN", "SKIP_SAVE"})

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        from .setup_core import running

        return running() is None

    def execute(self, context: bpy.types.Context) -> set[str]:
        from . import setup_core

        prefs = preferences(context)
        try:
            setup = setup_core.plan(setup_core.env_folder(), bpy.app.online_access,
                                    prefs.wheel_folder if prefs else "", self.python, self.requirements)
            job = setup_core.start(setup)
        except MimicError as err:
            if prefs is not None:
                prefs.check_message = str(err)
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        if not bpy.app.background and context.window is not None:  # follow it on a timer: progress and Cancel
            bpy.app.timers.register(_follow_setup, first_interval=SETUP_TIMER_S)
            self.report({"INFO"}, f"Setting up the Mimic core in {setup.env}")
            return {"FINISHED"}
        try:  # background (scripts, tests): wait for it
            version = job.wait()
        except MimicError as err:
            if prefs is not None:
                prefs.check_message = str(err)
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        if prefs is not None:
            prefs.check_message = job.state.message
        self.report({"INFO"}, f"Set up {version} in {setup.env} ({job.elapsed_s:.0f} s)")
        return {"FINISHED"}


class MIMIC_OT_cancel_setup_core(bpy.types.Operator):
    """Stop Set up core and remove the half-made environment"""

    bl_idname = "mimic.cancel_setup_core"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        from .setup_core import running

        return running() is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        from .setup_core import running

        job = running()
        if job is not None:
            job.cancel()  # kills pip, waits until the folder is gone
            self.report({"WARNING"}, job.state.message)
        return {"FINISHED"}


CLASSES: tuple[type, ...] = (MIMIC_OT_import_video, MIMIC_OT_cancel_import, MIMIC_OT_export, MIMIC_OT_check_core,
                             MIMIC_OT_setup_core, MIMIC_OT_cancel_setup_core)
