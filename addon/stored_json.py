"""JSON kept on a Blender object as a custom property (the user's bone map, face mapping), so it travels with the
.blend: read back only when it is a JSON object, never raising on a damaged value."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import bpy


def read_dict(obj: bpy.types.Object | None, prop: str) -> dict[str, Any] | None:
    """The JSON object stored in `obj`'s custom property `prop`, or None (no object, no property, not JSON, not an
    object)."""
    raw = obj.get(prop) if obj is not None else None
    if not raw:
        return None
    try:
        data = json.loads(str(raw))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def write_dict(obj: bpy.types.Object, prop: str, data: dict[str, Any] | None) -> None:
    """Store `data` as JSON in `obj`'s custom property `prop`, or with None remove the property."""
    if data is None:
        obj.pop(prop, None)
    else:
        obj[prop] = json.dumps(data, ensure_ascii=False)
