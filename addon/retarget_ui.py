"""Retargeting UI: bone-map editing, presets and the "Retarget action" operator (owned by the retargeting work).

`CLASSES` is registered by addon/__init__.py before the add-on's own settings, which hold
`retarget: PointerProperty(type=MIMIC_PG_retarget)` so that everything lives under the one `scene.mimic`.
"""

from __future__ import annotations

import bpy


class MIMIC_PG_retarget(bpy.types.PropertyGroup):
    """Retargeting settings (filled in by the retargeting work)."""


CLASSES: tuple[type, ...] = (MIMIC_PG_retarget,)
