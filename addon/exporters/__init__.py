"""Export formats, registered in one place: one module per format in this folder, each defining `EXPORTER`.

A new format is one new file here that defines `EXPORTER = Exporter(id, label, extension, description, write)`, where
`write(context, armature_object, path) -> Path` writes the file; the export operator's Format list (and so the
panel's Export menu) and batch's `--format` choices are read from `EXPORTERS`. Modules without `EXPORTER` are
helpers (`staging.py`, `sampling.py`). Format modules import only bpy at the top; anything heavier is imported inside `write`.
"""

from __future__ import annotations

import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import bpy

from ..errors import ExportError

Writer = Callable[[bpy.types.Context, bpy.types.Object, Path], Path]


@dataclass(frozen=True)
class Exporter:
    """One export format. id: the name batch's --format and the operator's `format` use; extension: with the dot;
    write: writes armature `obj` (its active action over the scene's frame range) to `path`, returns the path.
    check: optional, lists what is wrong with a written file (empty = fine); the export operator reports it."""

    id: str
    label: str
    extension: str
    description: str
    write: Writer
    check: Callable[[Path], list[str]] | None = None

    def export(self, context: bpy.types.Context, obj: bpy.types.Object | None, path: str | Path) -> Path:
        """`write` after the checks every format needs; a failure to write the file becomes an ExportError."""
        path = Path(path)
        if obj is None or obj.type != "ARMATURE":
            raise ExportError("Select an armature to export.")
        if not path.parent.is_dir():
            raise ExportError(f"Output folder {path.parent} does not exist. Create it or choose another path.")
        try:
            return self.write(context, obj, path)
        except OSError as err:
            raise ExportError(f"Could not write {path}: {err.strerror or err}. Choose a path you can write to.") \
                from err

    def filename(self, stem: str) -> str:
        """The file name batch gives this format's output of clip `stem`: `walk.bvh` when the id is the extension's
        name, else the id before the extension (`walk_unity_fbx.fbx`), so formats sharing an extension never
        collide."""
        plain = self.extension.lstrip(".") == self.id
        return f"{stem}{self.extension}" if plain else f"{stem}_{self.id}{self.extension}"


def _discover() -> dict[str, Exporter]:
    """Every format module's EXPORTER by id, in module-name order."""
    found: dict[str, Exporter] = {}
    for info in pkgutil.iter_modules(__path__):
        exporter = getattr(import_module(f"{__name__}.{info.name}"), "EXPORTER", None)
        if isinstance(exporter, Exporter):
            found[exporter.id] = exporter
    return found


#: The registry: format id -> Exporter.
EXPORTERS: dict[str, Exporter] = _discover()


def get(format_id: str) -> Exporter:
    """The exporter of `format_id`; ExportError naming the known ids if there is none."""
    try:
        return EXPORTERS[format_id]
    except KeyError:
        raise ExportError(f"Unknown export format {format_id!r}; use one of {', '.join(EXPORTERS)}.") from None


def enum_items() -> list[tuple[str, str, str]]:
    """The formats as Blender enum items (id, label, description), for the export operator."""
    return [(e.id, e.label, e.description) for e in EXPORTERS.values()]
