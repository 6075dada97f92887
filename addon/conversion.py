"""A video-to-scene conversion: the core subprocess writes a motion file into a temp folder, then, only once it
succeeded, the scene import runs as one transaction. `import_video` is the plain function the import operator's
`execute` calls; its modal `invoke` drives a `Conversion` step by step."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import bpy

from .common import motionfile
from .errors import CoreError, RetargetError
from .importer import ImportResult, import_motions
from .interpreter import find_python
from .job import CoreJob, CoreOptions


def core_env() -> dict[str, str]:
    """The core's environment; with Blender's online access off it is told so (it never uses the network)."""
    env = dict(os.environ)
    if not bpy.app.online_access:
        env["MIMIC_OFFLINE"] = "1"
        env["HF_HUB_OFFLINE"] = "1"
    return env


class Conversion:
    """One import: start() the core, poll() from a timer (or wait()), then finish(context) builds the scene.

    target: the name of the armature to retarget onto ("" = a new armature). python: the interpreter that runs the
    core ("" = find_python's search)."""

    def __init__(self, video: str | Path, options: CoreOptions, python: str = "", target: str = "",
                 use_scene_fps: bool = False, use_foot_plant: bool = True) -> None:
        if not str(video):
            raise CoreError("No video chosen. Pick a video file in the Mimic panel.", "InputNotFound", 3)
        self.video = Path(bpy.path.abspath(str(video))).resolve()
        self.name = self.video.stem
        self.target = target
        self.use_scene_fps = use_scene_fps
        self.use_foot_plant = use_foot_plant
        interpreter = find_python(python)
        self.folder = Path(tempfile.mkdtemp(prefix="mimic-"))
        self.job = CoreJob(interpreter, self.video, self.folder / f"{self.name}.npz", options, env=core_env())
        self.cancel_requested = False

    def start(self) -> Conversion:
        if not self.video.is_file():
            self.cleanup()
            raise CoreError(f"Video {self.video} does not exist. Pick a video file in the Mimic panel.",
                            "InputNotFound", 3)
        try:
            self.job.start()
        except CoreError:
            self.cleanup()
            raise
        return self

    def poll(self) -> bool:
        """True while the core is still running."""
        return self.job.poll()

    def cancel(self) -> None:
        self.job.cancel()
        self.cleanup()

    def wait(self, timeout: float | None = None) -> None:
        try:
            self.job.wait(timeout)
        except CoreError:
            self.cleanup()
            raise

    def finish(self, context: bpy.types.Context) -> ImportResult:
        """Read the core's motion file and build the animation, with the core's warnings; raises a MimicError
        (CoreError, BadMotionFile, RetargetError ...) and leaves the scene untouched on any failure. Always removes
        the temp folder."""
        try:
            motions = motionfile.load_motions(self.job.result())
            target = None
            if self.target:
                target = bpy.data.objects.get(self.target)
                if target is None or target.type != "ARMATURE":
                    raise RetargetError(f"The target armature {self.target!r} is gone. Select an armature.")
            results = import_motions(context, motions, self.name, [target], self.use_scene_fps,
                                     use_foot_plant=self.use_foot_plant)
            result = results[0]  # every person is in the scene; the first is the one reported and made active
            result.warnings = list(self.job.state.warnings) + result.warnings
            if len(results) > 1:
                result.warnings.append(f"{len(results)} people imported: "
                                       + ", ".join(r.armature.name for r in results))
            return result
        finally:
            self.cleanup()

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def import_video(context: bpy.types.Context, filepath: str | Path, options: CoreOptions, target_name: str = "",
                 use_scene_fps: bool = False, python: str = "", use_foot_plant: bool = True) -> ImportResult:
    """Convert video `filepath` with the core (blocking until it ends) and build the animation in the scene.

    target_name: armature to retarget onto ("" = a new armature named after the clip). use_scene_fps: keep the
    scene's frame rate (resample the motion) instead of taking the clip's. python: the core's interpreter ("" = the
    preference / $MIMIC_PYTHON / the repo's .venv). use_foot_plant: hold planted feet on the character (see
    retarget_source). Raises a MimicError; the scene is then as before."""
    conversion = Conversion(filepath, options, python, target_name, use_scene_fps, use_foot_plant).start()
    conversion.wait()
    return conversion.finish(context)
