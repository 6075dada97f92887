"""Mimic's Blender add-on: video -> skeletal animation through the core subprocess. Registration lives here only.

The extension's root `__init__.py` calls register()/unregister(). Never imports torch, mediapipe or cv2.
"""

from __future__ import annotations

import bpy
from bpy.props import PointerProperty

from . import face_ui, live_ui, operators, properties, retarget_ui, setup_core, ui

CLI_COMMAND = "mimic"


def _classes() -> tuple[type, ...]:
    """Registration order: the retargeting property groups first (scene.mimic points at them), then ours, then
    the retargeting and live UIs (their sub-panels hang under MIMIC_PT_main, which must exist first)."""
    retarget_groups = tuple(c for c in retarget_ui.CLASSES if issubclass(c, bpy.types.PropertyGroup))
    retarget_rest = tuple(c for c in retarget_ui.CLASSES if c not in retarget_groups)
    face_groups = tuple(c for c in face_ui.CLASSES if issubclass(c, bpy.types.PropertyGroup))  # scene.mimic.face
    face_rest = tuple(c for c in face_ui.CLASSES if c not in face_groups)
    return (*retarget_groups, *face_groups, *properties.CLASSES, *operators.CLASSES, *ui.CLASSES, *retarget_rest,
            *live_ui.CLASSES, *face_rest)


_cli_handles: list[object] = []


def register() -> None:
    for cls in _classes():
        bpy.utils.register_class(cls)
    bpy.types.Scene.mimic = PointerProperty(type=properties.MIMIC_PG_settings)
    if hasattr(bpy.utils, "register_cli_command"):  # Blender 4.2+: `blender -c mimic convert ...`
        from .batch import cli_main

        _cli_handles.append(bpy.utils.register_cli_command(CLI_COMMAND, cli_main))


def unregister() -> None:
    from .job import cancel_all

    cancel_all()  # a modal import still running must not outlive the add-on
    setup_core.cancel_all()  # nor a Set up core: pip killed, its half-made environment removed
    operators._ACTIVE.clear()
    live_ui.stop_all()
    while _cli_handles:
        bpy.utils.unregister_cli_command(_cli_handles.pop())
    del bpy.types.Scene.mimic
    for cls in reversed(_classes()):
        bpy.utils.unregister_class(cls)
