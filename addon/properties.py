"""The add-on's settings: `scene.mimic` (what to import and how) and the add-on preferences (which Python)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from . import face_ui, retarget_ui
from .interpreter import auto_python
from .job import CoreOptions


def addon_id() -> str:
    """The add-on's module name as Blender knows it: the extension's root package (e.g. bl_ext.user_default.mimic),
    or `addon` when this package is imported on its own (batch runs, tests of the plain modules)."""
    package = __package__ or "addon"
    return package.rpartition(".")[0] or package


class ImportSettings:
    """What to import and how: the import operator's properties and, under the same names, the panel's stored
    settings (`scene.mimic`), which the panel copies into the operator (`copy_import_settings`)."""

    filepath: StringProperty(name="Video", description="Video file of one person moving", subtype="FILE_PATH")
    use_range: BoolProperty(name="Range", description="Convert only part of the clip (in seconds)", default=False)
    start_s: FloatProperty(name="Start", description="Start of the range, seconds", min=0.0, default=0.0,
                           unit="TIME_ABSOLUTE")
    end_s: FloatProperty(name="End", description="End of the range, seconds", min=0.0, default=5.0,
                         unit="TIME_ABSOLUTE")
    person: EnumProperty(name="Person", description="Who to track when several people are in view", items=(
        ("LARGEST", "Largest", "The person who takes up most of the picture"),
        ("LEFT", "Left-most", "The person furthest to the left"),
        ("INDEX", "Index", "A person counted from the left (0 = left-most)"),
        ("ALL", "Everyone", "Every person, each as their own armature (the first onto the target, if one is set); "
                            "costs one detection per person"),
    ), default="LARGEST")
    person_index: IntProperty(name="Index", description="Person counted from the left, 0 = left-most", min=0)
    lifter: EnumProperty(name="Lifter", description="How 2D landmarks become 3D", items=(
        ("TCN", "Learned (TCN)", "Mimic's temporal network: sees 2.7 s around each frame, knows motion"),
        ("MEDIAPIPE", "MediaPipe", "MediaPipe's own per-frame 3D, with a root trajectory fitted to the 2D track"),
    ), default="TCN")
    cutoff_hz: FloatProperty(name="Smoothing", description="Low-pass cutoff in Hz: lower is smoother, 0 = off",
                             min=0.0, max=30.0, soft_max=15.0, default=6.0, precision=1)
    foot_lock: EnumProperty(name="Foot Lock", description="What happens to feet planted on the floor", items=(
        ("AUTO", "Auto", "Planted feet stay in place and on the floor while planted (legs bend, hips lower if needed)"),
        ("GROUNDING", "Grounding", "Feet stay on the floor, never below it, but are not held in place"),
        ("OFF", "Off", "Feet as solved from the video"),
    ), default="AUTO")
    solve: EnumProperty(name="Solve", description="How the skeleton is fitted to the video", items=(
        ("CLIP", "Whole Clip", "One optimisation over the whole clip: fixed bone lengths, the 2D fitted, planted feet "
                               "held on the floor, knees and elbows as hinges (about 4 ms a frame)"),
        ("FRAME", "Per Frame", "Each frame solved on its own (feet slide and bob more)"),
    ), default="CLIP")
    use_hands: BoolProperty(name="Fingers", default=False,
                            description="Capture the fingers of both hands too: a second pass over the video "
                                        "(see the cost below the options)")
    use_face: BoolProperty(name="Face", default=False,
                           description="Capture facial expressions too (blinks, mouth shapes, brows, gaze), keyed "
                                       "onto the character's shape keys by name (the Face panel edits the mapping)")
    target: EnumProperty(name="Target", description="Where the animation goes", items=(
        ("NEW", "New Armature", "Create an armature from the motion's skeleton"),
        ("SELECTED", "Selected Armature", "Retarget onto the active armature"),
    ), default="NEW")
    use_scene_fps: BoolProperty(name="Keep Scene FPS", default=False,
                                description="Keep the scene's frame rate and resample the motion to it, instead of "
                                            "setting the scene to the clip's frame rate")

    def core_options(self) -> CoreOptions:
        """These settings as the core CLI's options."""
        person = {"LARGEST": "largest", "LEFT": "left", "ALL": "all"}.get(self.person, str(self.person_index))
        start, end = (self.start_s, self.end_s) if self.use_range else (None, None)
        return CoreOptions(start_s=start, end_s=end, person=person, cutoff_hz=self.cutoff_hz,
                           lifter=self.lifter.lower(), use_hands=self.use_hands, use_face=self.use_face,
                           foot_lock=self.foot_lock.lower(), solve=self.solve.lower())


#: The names ImportSettings defines, in order.
IMPORT_SETTINGS: tuple[str, ...] = tuple(ImportSettings.__annotations__)


def copy_import_settings(source: ImportSettings, target: ImportSettings) -> None:
    """Copy every import setting from `source` to `target` (scene.mimic -> the operator the panel's button runs)."""
    for name in IMPORT_SETTINGS:
        setattr(target, name, getattr(source, name))


class MIMIC_PG_settings(ImportSettings, bpy.types.PropertyGroup):
    """The panel's settings, stored in the .blend file as `scene.mimic`: the import settings and retargeting's."""

    retarget: PointerProperty(type=retarget_ui.MIMIC_PG_retarget)
    face: PointerProperty(type=face_ui.MIMIC_PG_face)  # the Face sub-panel's mapping (addon/face_ui.py)
    # Live (addon/live_ui.py): where the live core reads frames, and whether what arrives is recorded.
    live_source: EnumProperty(name="Source", description="Where live mode reads frames", items=(
        ("CAMERA", "Camera", "A camera attached to this computer"),
        ("VIDEO", "Video File", "A video file, played at its own rate as if it were a camera"),
    ), default="CAMERA")
    live_camera: IntProperty(name="Camera", description="Camera index (0 = the first camera)", min=0, max=63)
    live_video: StringProperty(name="Video", description="Video file to play in live mode", subtype="FILE_PATH")
    use_live_face: BoolProperty(name="Face", default=False,
                                description="Also track the face and set the character's shape keys as it moves "
                                            "(blinks, mouth shapes, brows, gaze; mapped as in Mimic > Face), "
                                            "keyed by Record; adds about 6 ms of latency a frame")
    use_live_record: BoolProperty(name="Record", default=False,
                                  description="Key every frame that arrives into a new action on the character "
                                              "(one key per received frame from the current frame on)")


class MIMIC_AP_preferences(bpy.types.AddonPreferences):
    """Which Python runs the core; empty = the repository's .venv."""

    bl_idname = addon_id()

    python_path: StringProperty(name="Python", subtype="FILE_PATH",
                                description="Python interpreter with Mimic's requirements installed "
                                            "(empty: the .venv next to the add-on)")
    check_message: StringProperty(name="Check result", options={"SKIP_SAVE"})
    wheel_folder: StringProperty(name="Wheel Folder", subtype="DIR_PATH",
                                 description="Set up core installs the core's packages from this folder of wheels "
                                             "instead of downloading them (pip --no-index --find-links)")

    def draw(self, context: bpy.types.Context) -> None:
        from . import setup_core

        layout = self.layout
        layout.prop(self, "python_path")
        if not self.python_path:
            layout.label(text=f"Auto: {auto_python()}", icon="INFO")
        job = setup_core.running()
        if job is not None:  # Set up core in progress
            row = layout.row()
            row.progress(factor=job.state.fraction, type="BAR", text=job.state.label)
            row.operator("mimic.cancel_setup_core", icon="CANCEL")
        else:
            row = layout.row()
            row.operator("mimic.setup_core", icon="IMPORT",
                         text="Set up Core Again" if setup_core.installed_python() else "Set up Core")
            row.prop(self, "wheel_folder")
        row = layout.row()
        row.operator("mimic.check_core", icon="CHECKMARK")
        if self.check_message:
            row.label(text=self.check_message)
        if not bpy.app.online_access:
            layout.label(text="Online access is off: the core never uses the network; Set up core needs it, or a "
                              "Wheel Folder.", icon="INTERNET_OFFLINE")


def preferences(context: bpy.types.Context) -> MIMIC_AP_preferences | None:
    """The add-on preferences, or None when the add-on is not enabled (e.g. in a batch run)."""
    addon = context.preferences.addons.get(addon_id())
    return addon.preferences if addon is not None else None


CLASSES: tuple[type, ...] = (MIMIC_PG_settings, MIMIC_AP_preferences)
