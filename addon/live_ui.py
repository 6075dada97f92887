"""Live mode in the sidebar (Mimic > Live): start the live core, pose the selected character as frames arrive,
record takes into actions, stop. With Face on, the core also tracks the face (--face) and its expression weights set
the character's shape keys (face.py's mapping); Record keys them too.

`LiveRun` is one session on one character; the modal operator's timer calls `LiveRun.tick`, which never waits:
the core's lines are read by a thread, the tick parses what is there, hands the newest pose to a worker thread
that solves it (live.PoseSolver) and writes the last solved pose onto the pose bones. The operators only
gather settings and call plain functions (addon/live.py). `CLASSES` is registered by addon/__init__.py after
MIMIC_PT_main, under which MIMIC_PT_live hangs.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from . import live
from .errors import MimicAddonError, MimicError, RetargetError
from .properties import preferences
from .sidebar import MAIN_PANEL, SidebarPanel

TIMER_INTERVAL_S = 0.02  # under a camera's frame period (33 ms), so polling adds at most 20 ms of latency

#: The live run in progress, if any (one at a time: one camera, one character).
_ACTIVE: dict[str, LiveRun] = {}


def active_run() -> LiveRun | None:
    """The live run in progress, for the panel and the operators."""
    return _ACTIVE.get("run")


def stop_all() -> None:
    """End the live run without touching the scene (the add-on is being disabled): its core and its worker."""
    run = _ACTIVE.pop("run", None)
    if run is not None:
        run.session.stop()
        run.solver.close()


def live_source(settings: bpy.types.PropertyGroup) -> live.LiveSource:
    """scene.mimic's live settings as the core's source; a missing video file is refused here, with the fix."""
    if settings.live_source == "VIDEO":
        path = bpy.path.abspath(settings.live_video) if settings.live_video else ""
        if not path or not Path(path).is_file():
            raise MimicAddonError(f"No video file at {path or '(empty)'} for live mode. Choose a video file in "
                                  f"Mimic > Live, or set Source to Camera.")
        return live.LiveSource(camera=None, video=path, use_face=settings.use_live_face)
    return live.LiveSource(camera=settings.live_camera, use_face=settings.use_live_face)


def _armature(context: bpy.types.Context) -> bpy.types.Object | None:
    obj = context.active_object
    return obj if obj is not None and obj.type == "ARMATURE" else None


class LiveRun:
    """One live session posing one character: tick() on a timer, finish() once. Reports for the user collect in
    `messages` as (level, text)."""

    def __init__(self, obj: bpy.types.Object, session: live.LiveSession, target: live.LiveTarget) -> None:
        self.object_name = obj.name
        self.session = session
        self.target = target
        self.snapshot = live.PoseSnapshot.of(obj, target.settings)
        self.solver = live.PoseSolver(target, session.fps)
        self.record_start = 1
        self.actions: list[str] = []
        self.face_actions: list[str] = []  # the takes' shape-key actions (one per mesh's Key per take)
        self.messages: list[tuple[str, str]] = []
        self.applied = 0
        self.shown: live.LivePose | None = None  # the pose written last
        self.latency_ms = 0.0
        self.finished = False

    def object(self) -> bpy.types.Object | None:
        obj = bpy.data.objects.get(self.object_name)
        return obj if obj is not None and obj.type == "ARMATURE" else None

    def tick(self, context: bpy.types.Context) -> bool:
        """Follow the Record toggle, parse what the core printed, pose the newest frame; False once the run must
        end (the core ended, the character is gone or cannot be posed)."""
        obj = self.object()
        if obj is None:
            self.messages.append(("ERROR", f"{self.object_name} is gone; live mode stopped."))
            return False
        if context.scene.mimic.use_live_record != self.session.recording:
            if self.session.recording:
                self._save_take(obj)
            else:
                self.session.start_recording()
                self.record_start = context.scene.frame_current
        running = self.session.poll()
        if self.session.expression_names and self.target.face is None:
            self._prepare_face(obj)
        pose = self.session.take_newest()
        if pose is not None:
            self.solver.fps = self.session.fps
            self.solver.submit(pose, np.array(obj.matrix_world), self.session.skeleton)
        try:
            solved = self.solver.take()  # solved on the worker meanwhile: only written here
            if solved is not None:
                live.write_pose(obj, live.through_constraints(obj, self.target, solved[1]))
                live.write_expressions(self.target, solved[0])
                self.applied += 1
                self.shown = solved[0]
                self.latency_ms = solved[0].latency_ms
        except (MimicError, KeyError, ValueError) as err:
            self.messages.append(("ERROR", f"Cannot pose {obj.name}: {err}. Live mode stopped."))
            return False
        return running

    def _prepare_face(self, obj: bpy.types.Object) -> None:
        """The stream has expressions: match the character's shape keys once and keep their values for Stop; a
        character without matching shape keys gets the body and one notice."""
        notice = live.prepare_face(obj, self.target, self.session.expression_names)
        if notice:
            self.messages.append(("INFO", notice))
        else:
            self.snapshot.keep_face(self.target.face)

    def take_messages(self) -> list[tuple[str, str]]:
        """The reports collected since the last call (a take keyed while live goes on)."""
        out, self.messages = self.messages, []
        return out

    def _save_take(self, obj: bpy.types.Object) -> None:
        """Key what was recorded into a new action on the character (one key per received frame)."""
        take = self.session.stop_recording()
        if take is None:
            return
        try:
            action = live.record_action(obj, self.target, take, f"{obj.name}_live", self.record_start)
        except MimicError as err:
            self.messages.append(("ERROR", f"The recorded take could not be keyed: {err}"))
            return
        self.actions.append(action.name)
        end = self.record_start + take.num_frames - 1
        self.messages.append(("INFO", f"Recorded {take.num_frames} frames as action {action.name!r} "
                                      f"(frames {self.record_start}-{end})"))
        report = live.record_face(obj, self.target, take, f"{action.name}_face", self.record_start)
        if report is not None and report.actions:
            self.face_actions += [a.name for a in report.actions]
            self.messages.append(("INFO", report.summary()))

    def finish(self, context: bpy.types.Context) -> list[tuple[str, str]]:
        """Stop the core, key the take being recorded, put the character's pose back; returns every report."""
        if self.finished:
            return []
        self.finished = True
        self.session.stop()
        self.solver.close()
        obj = self.object()
        if obj is not None:
            if self.session.recording:
                self._save_take(obj)
            self.snapshot.restore(obj)
            if self.actions:  # show the recorded action where the pose was put back
                context.scene.frame_set(context.scene.frame_current)
        err = self.session.error()
        if err is not None:
            self.messages.append(("ERROR", str(err)))
        self.messages.append(("INFO", f"Live mode ended: {self.session.received} frames received, "
                                      f"{self.applied} shown."))
        return self.take_messages()

    def status(self) -> str:
        s = self.session
        if s.header is None:
            return "Starting the Mimic core..."
        text = f"{s.received} frames, {s.received_fps:.0f} fps, {self.latency_ms:.0f} ms"
        if s.skipped:
            text += f", {s.skipped} skipped"
        return text + (f", REC {s.recorded}" if s.recording else "")


def start_run(context: bpy.types.Context) -> LiveRun:
    """Start the live core for the active armature with scene.mimic's live settings (what Live's invoke calls).
    Raises a MimicError saying what to fix; nothing is started then."""
    from .conversion import core_env
    from .interpreter import find_python
    from .retarget_ui import bone_map_of

    obj = _armature(context)
    if obj is None:
        raise RetargetError("Select your character's armature (mapped to Mimic's humanoid) for live mode.")
    settings = context.scene.mimic
    shown = settings.retarget
    bone_map = bone_map_of(shown) if shown.armature == obj.name and len(shown.bone_map) else None
    try:
        target = live.prepare_target(obj, bone_map)
    except MimicError as err:
        raise RetargetError(str(err)) from err
    source = live_source(settings)
    prefs = preferences(context)
    python = find_python(prefs.python_path if prefs else "")
    session = live.LiveSession(live.live_command(python, source), env=core_env()).start()
    return LiveRun(obj, session, target)


def _report(op: bpy.types.Operator, messages: list[tuple[str, str]]) -> None:
    for level, text in messages:
        op.report({level}, text)


def _redraw(context: bpy.types.Context) -> None:
    wm = context.window_manager
    for window in wm.windows if wm is not None else ():
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def _status(context: bpy.types.Context, text: str | None) -> None:
    if context.workspace is not None:
        context.workspace.status_text_set(text)


class MIMIC_OT_live_start(bpy.types.Operator):
    """Start the Mimic core in live mode and pose the active armature as frames arrive (Esc or Stop ends it)"""

    bl_idname = "mimic.live_start"
    bl_label = "Live"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return active_run() is None and _armature(context) is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        self.report({"ERROR"}, "Live mode follows the core on a timer and needs Blender's window; in background "
                               "mode use Import Video (mimic.import_video) instead.")
        return {"CANCELLED"}

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if context.window is None:
            return self.execute(context)
        try:
            run = start_run(context)
        except MimicError as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        _ACTIVE["run"] = run
        self._run = run
        wm = context.window_manager
        self._timer = wm.event_timer_add(TIMER_INTERVAL_S, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _end(self, context: bpy.types.Context) -> set[str]:
        context.window_manager.event_timer_remove(self._timer)
        _status(context, None)
        if _ACTIVE.get("run") is self._run:
            _ACTIVE.pop("run")
            _report(self, self._run.finish(context))
        _redraw(context)
        return {"FINISHED"}

    def cancel(self, context: bpy.types.Context) -> None:
        """Blender ends the modal operator (a file is loaded, the window closes): stop the core, clean up."""
        self._end(context)

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if active_run() is not self._run or event.type == "ESC":  # Stop pressed (it finished the run), or Esc
            return self._end(context)
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        running = self._run.tick(context)
        if not running:
            return self._end(context)
        _report(self, self._run.take_messages())
        _status(context, f"Mimic live: {self._run.status()} - Esc to stop")
        _redraw(context)
        return {"PASS_THROUGH"}


class MIMIC_OT_live_stop(bpy.types.Operator):
    """Stop live mode: end the core, key the take being recorded, put the character's pose back"""

    bl_idname = "mimic.live_stop"
    bl_label = "Stop"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return active_run() is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        run = _ACTIVE.pop("run", None)
        if run is not None:  # the modal operator sees it gone and removes its timer
            _report(self, run.finish(context))
            _status(context, None)
            _redraw(context)
        return {"FINISHED"}


class MIMIC_PT_live(SidebarPanel, bpy.types.Panel):
    """Live mode: a camera or a video file drives the selected character; Record keys what arrives."""

    bl_idname = "MIMIC_PT_live"
    bl_label = "Live"
    bl_parent_id = MAIN_PANEL

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.mimic
        run = active_run()
        col = layout.column()
        col.enabled = run is None
        col.row().prop(settings, "live_source", expand=True)
        col.prop(settings, "live_camera" if settings.live_source == "CAMERA" else "live_video")
        col.prop(settings, "use_live_face")
        obj = _armature(context)
        if run is not None:
            layout.label(text=f"Posing {run.object_name}", icon="ARMATURE_DATA")
        elif obj is None:
            layout.label(text="Select your character's armature", icon="INFO")
        else:
            layout.label(text=f"Character: {obj.name}", icon="ARMATURE_DATA")
        row = layout.row(align=True)
        row.prop(settings, "use_live_record", toggle=True, icon="REC")
        if run is None:
            row.operator("mimic.live_start", icon="PLAY")
        else:
            row.operator("mimic.live_stop", icon="CANCEL")
            layout.label(text=run.status())


CLASSES: tuple[type, ...] = (MIMIC_OT_live_start, MIMIC_OT_live_stop, MIMIC_PT_live)
