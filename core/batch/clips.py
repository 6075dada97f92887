"""The clips of a batch: the videos under the input folder, their output files, and the formats each stage writes."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from core.common.errors import InputNotFound, OutputExists

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
#: Hidden folder under the output folder for motion files that only the Blender stage needs (npz not asked for).
WORK_DIR = ".mimic-work"


def core_formats() -> tuple[str, ...]:
    """The formats the core stage writes: pipeline's OUTPUT_FORMATS without the dot (bvh, npz, and any added)."""
    from core.pipeline import OUTPUT_FORMATS

    return tuple(suffix.lstrip(".").lower() for suffix in OUTPUT_FORMATS)


def split_formats(formats: list[str], rig: str = "") -> tuple[list[str], list[str]]:
    """(core-side, Blender-side) formats: a format the core writes is written by the core, any other one by the
    add-on's exporter registry (fbx, glb, unity_*), checked once a Blender worker is up. With a rig (retargeting)
    every format but the motion file (npz) is Blender's: the animation is baked onto that character first."""
    core = ("npz",) if rig else core_formats()
    return [f for f in formats if f in core], [f for f in formats if f not in core]


@dataclass
class Clip:
    """One clip of the batch and what the batch knows about it.

    rel: its path under the input folder (POSIX), the manifest's `clip`. outputs: format -> output file of the core
    stage. motion: the motion file the Blender stage reads (the npz output, or one in WORK_DIR), None without one.
    """

    path: Path
    rel: str
    outputs: dict[str, Path]
    motion: Path | None
    out_dir: Path
    sha256: str = ""
    attempts: int = 0  # tries of the core stage
    attempts2: int = 0  # tries of the Blender stage
    seconds: float = 0.0
    frames: int = 0
    written: dict[str, str] = field(default_factory=dict)
    error: dict | None = None


def find_clips(folder: Path, output: Path) -> list[Path]:
    """The videos in `folder` and its sub-folders (hidden names and the output folder skipped), sorted; `folder` may
    also be one video. Raises InputNotFound when it does not exist."""
    folder = Path(folder)
    if not folder.exists():
        raise InputNotFound(f"--input {folder} does not exist.", "Give a folder of videos (or one video).")
    if folder.is_file():
        return [folder]
    skip = Path(output).resolve()
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (Path(root) / d).resolve() != skip)
        found += [Path(root) / f for f in files if not f.startswith(".") and Path(f).suffix.lower() in VIDEO_SUFFIXES]
    return sorted(found)


def plan(paths: list[Path], input_dir: Path, output: Path, core: list[str], blender: list[str]) -> list[Clip]:
    """A Clip per path with its output files: `<output>/<sub-folder>/<stem>.<format>`."""
    base = input_dir if input_dir.is_dir() else input_dir.parent
    clips = []
    for path in paths:
        rel = path.relative_to(base)
        out_dir = output / rel.parent
        outputs = {fmt: out_dir / f"{path.stem}.{fmt}" for fmt in core}
        motion = None
        if blender:
            motion = outputs.get("npz") or output / WORK_DIR / rel.parent / f"{path.stem}.npz"
        clips.append(Clip(path, rel.as_posix(), outputs, motion, out_dir))
    return clips


def collisions(clips: list[Clip]) -> dict[str, dict]:
    """Clips whose outputs would overwrite each other's (walk.mp4 and walk.mov in one folder): rel -> error."""
    stems = Counter(str(c.out_dir / c.path.stem) for c in clips)
    return {c.rel: OutputExists(f"Another clip in {Path(c.rel).parent} is also called {c.path.stem!r}; their outputs "
                                "would overwrite each other.", "Rename one of them.").to_json()
            for c in clips if stems[str(c.out_dir / c.path.stem)] > 1}
