"""A video-to-scene conversion: the core subprocess writes a motion file into a temp folder, then, only once it
succeeded, the scene import runs as one transaction. Used by the sidebar operator (modal or not) and tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import bpy

from .importer import ImportResult, import_motion
from .interpreter import find_python
from .job import CoreError, CoreJob, CoreOptions
from .common import motionfile


def core_env() -> dict[str, str]:
    """The core's environment; with Blender's online access off it is told so (it never uses the network)."""
    env = dict(os.environ)
    if not bpy.app.online_access:
        env["MIMIC_OFFLINE"] = "1"
        env["HF_HUB_OFFLINE"] = "1"
    return env


class Conversion:
    """One import: start() the core, poll() from a timer (or wait()), then finish(context) builds the scene."""

    def __init__(self, video: str | Path, options: CoreOptions, python: str = "", target: str = "",
                 use_scene_fps: bool = False) -> None:
        self.video = Path(bpy.path.abspath(str(video))).resolve()
        self.name = self.video.stem
        self.target = target
        self.use_scene_fps = use_scene_fps
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
        """Read the core's motion file and build the animation; raises CoreError, BadMotionFile, ...; the scene
        is untouched on any failure. Always removes the temp folder."""
        try:
            motion = motionfile.load_motion(self.job.result())
            target = None
            if self.target:
                target = bpy.data.objects.get(self.target)
                if target is None or target.type != "ARMATURE":
                    raise CoreError(f"The target armature {self.target!r} is gone. Select an armature.", "NoTarget")
            return import_motion(context, motion, self.name, target, self.use_scene_fps)
        finally:
            self.cleanup()

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

