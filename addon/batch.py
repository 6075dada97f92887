"""Headless batch conversion of a folder of clips to the export formats of addon/exporters (and motion files),
through real Blender.

Three ways in, one entry point:
  blender -b --factory-startup --python <repo>/addon/batch.py -- --input clips/ --output out/ --format bvh,fbx
  blender -c mimic convert --input clips/ --output out/          (Blender 4.2+, the extension enabled)
  .venv/bin/python -m addon.batch --input clips/ --output out/    (the `bpy` module)
Up to --jobs core subprocesses run at once; the Blender side (armature, keying, export) runs in this process.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Run as a script by `blender --python addon/batch.py`: make `addon` importable as a package (PEP 366).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "addon"
    import addon  # noqa: F401  (the parent package must be imported before relative imports)

import argparse
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field

import bpy

from . import exporters
from .common import atomic, motionfile, signals, values
from .errors import CoreError, MimicError
from .importer import import_motion
from .interpreter import find_python
from .job import CoreJob, CoreOptions

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
#: The motion file itself: a batch-only format (no armature to export).
MOTION_FORMAT = "npz"
#: Every --format choice: the registry's export formats, then the motion file.
FORMATS = (*exporters.EXPORTERS, MOTION_FORMAT)
POLL_S = 0.1


@dataclass
class ClipResult:
    """One row of the summary table."""

    clip: Path
    outputs: dict[str, Path]
    status: str = "pending"
    frames: int = 0
    seconds: float = 0.0
    message: str = ""
    started: float = field(default_factory=time.monotonic)

    @property
    def failed(self) -> bool:
        return self.status == "failed"


def build_parser(prog: str = "mimic-batch") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Convert videos (a file or a folder of clips) into "
                                "animation files with Mimic and Blender's exporters.")
    p.add_argument("--input", "-i", type=Path, required=True, help="a video file or a folder of videos")
    p.add_argument("--output", "-o", type=Path, required=True, help="output folder (created if missing)")
    p.add_argument("--format", default="bvh,fbx",
                   help=f"comma-separated output formats from {', '.join(FORMATS)} (default bvh,fbx)")
    p.add_argument("--rig", default="",
                   help="retarget onto this rig: FILE.blend:ARMATURE (an armature object in a .blend), or a "
                        "preset name offered by the retargeting module; default: Mimic's own skeleton")
    p.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1,
                   help="clips converted at the same time (default: number of CPU cores)")
    p.add_argument("--overwrite", action="store_true", help="convert clips whose outputs are already up to date")
    p.add_argument("--start", type=values.non_negative, default=None, metavar="SECONDS",
                   help="start of each clip's range")
    p.add_argument("--end", type=values.non_negative, default=None, metavar="SECONDS", help="end of each clip's range")
    p.add_argument("--person", type=values.person, default="largest",
                   help="largest, left, right or an index counted from the left")
    p.add_argument("--cutoff", type=values.non_negative, default=6.0, metavar="HZ",
                   help="smoothing cutoff in Hz, 0 = off")
    p.add_argument("--lifter", choices=("tcn", "mediapipe"), default=None, help="2D->3D lifter (default: the core's)")
    p.add_argument("--foot-lock", choices=("auto", "grounding", "off"), default="auto",
                   help="planted feet: auto (held in place and on the floor), grounding (on the floor only) or off")
    p.add_argument("--solve", choices=("clip", "frame"), default="clip",
                   help="clip (default): one optimisation over the whole clip; frame: each frame on its own")
    p.add_argument("--hands", action="store_true", help="capture the fingers of both hands too")
    p.add_argument("--face", action="store_true", help="capture facial expressions too (keyed on shape keys)")
    p.add_argument("--python", default="", metavar="PATH",
                   help="Python that runs the core (default: add-on preference, $MIMIC_PYTHON, the repo's .venv)")
    return p


def parse_args(argv: list[str], prog: str = "mimic-batch") -> argparse.Namespace:
    """Parse batch arguments; an optional leading `convert` sub-command word is accepted (blender -c mimic convert)."""
    if argv and argv[0] == "convert":
        argv = argv[1:]
    args = build_parser(prog).parse_args(argv)
    formats = [f.strip().lower().lstrip(".") for f in args.format.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        build_parser(prog).error(f"--format: unknown {', '.join(unknown) or '(none)'}; use {', '.join(FORMATS)}")
    if args.person == "all":  # one armature per clip here
        build_parser(prog).error("--person all: batch exports one person per clip. Convert every person of a clip "
                                 "with `python -m core CLIP --person all` (clip.p0.bvh, clip.p1.bvh ...), or pick one.")
    args.formats = formats
    args.jobs = max(1, args.jobs)
    return args


def find_clips(path: Path) -> list[Path]:
    """The video files to convert: `path` itself, or the videos directly in folder `path`, sorted by name;
    ValueError if `path` does not exist."""
    if not path.exists():
        raise ValueError(f"--input {path} does not exist. Give a video file or a folder of videos.")
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    return [path]


def outputs_for(clip: Path, out_dir: Path, formats: list[str]) -> dict[str, Path]:
    """Each format's output file for `clip`: `<clip>.npz`, or the exporter's file name (`walk.bvh`,
    `walk_unity_fbx.fbx`)."""
    return {fmt: out_dir / (f"{clip.stem}.{fmt}" if fmt == MOTION_FORMAT else exporters.get(fmt).filename(clip.stem))
            for fmt in formats}


def up_to_date(clip: Path, outputs: list[Path], inputs: list[Path]) -> bool:
    """Every output exists and is newer than the clip and every other input (e.g. the rig's .blend)."""
    try:
        newest = max(p.stat().st_mtime for p in [clip, *inputs])
        return all(o.stat().st_mtime >= newest for o in outputs)
    except FileNotFoundError:
        return False


def default_python(preferred: str) -> str:
    """The interpreter for the core: --python, else the add-on preference when enabled inside Blender, else this
    interpreter when it is a plain Python running the bpy module, else find_python's search."""
    if preferred:
        return preferred
    if bpy.app.binary_path:
        from .properties import preferences

        try:
            prefs = preferences(bpy.context)
        except (AttributeError, KeyError):
            prefs = None
        return prefs.python_path if prefs is not None else ""
    return "" if os.environ.get("MIMIC_PYTHON") else sys.executable


class Rig:
    """The target armature of --rig, loaded once into the scene, or None for Mimic's own skeleton."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.blend: Path | None = None
        self.object: bpy.types.Object | None = None
        if not spec:
            return
        path, _, name = spec.rpartition(":") if ".blend:" in spec else ("", "", spec)
        if not path:
            from . import retarget

            preset = getattr(retarget, "rig_preset", None)
            if preset is None:
                raise ValueError(f"--rig {spec!r}: rig presets are not available; use FILE.blend:ARMATURE.")
            path, name = preset(spec)  # -> (.blend path, armature object name)
        self.blend = Path(path).resolve()
        if not self.blend.is_file():
            raise ValueError(f"--rig: {self.blend} does not exist.")
        with bpy.data.libraries.load(str(self.blend), link=False) as (src, dst):
            if name not in src.objects:
                raise ValueError(f"--rig: {self.blend} has no object {name!r} (objects: {', '.join(src.objects)}).")
            dst.objects = [name]
        self.object = dst.objects[0]
        if self.object.type != "ARMATURE":
            raise ValueError(f"--rig: {name!r} in {self.blend} is a {self.object.type.lower()}, not an armature.")
        bpy.context.scene.collection.objects.link(self.object)

    @property
    def inputs(self) -> list[Path]:
        return [self.blend] if self.blend else []


def export_clip(motion_path: Path, clip: Path, outputs: dict[str, Path], rig: Rig) -> int:
    """Build the clip's animation in the scene, write every requested output, then remove what was built.
    Returns the number of frames."""
    context = bpy.context
    before = {name: set(getattr(bpy.data, name)) for name in ("objects", "armatures", "actions")}
    motion = motionfile.load_motion(motion_path)
    try:
        result = import_motion(context, motion, clip.stem, rig.object)
        for fmt, out in outputs.items():
            if fmt == MOTION_FORMAT:
                with atomic.atomic_path(out) as tmp:
                    shutil.copyfile(motion_path, tmp)
            else:
                exporters.get(fmt).export(context, result.armature, out)
        return result.frames
    finally:
        if rig.object is not None and rig.object.animation_data is not None:
            rig.object.animation_data.action = None
        new = [idb for name, ids in before.items() for idb in getattr(bpy.data, name) if idb not in ids]
        if new:
            bpy.data.batch_remove(new)


def _progress(result: ClipResult, job: CoreJob, shown: dict[Path, tuple[int, int]], index: str) -> None:
    """Print each stage the clip's core has entered since the last call, and every quarter of a long stage."""
    st = job.state
    seen, quarter = shown.get(result.clip, (0, 0))
    for stage, total in st.stages[seen:]:
        print(f"{index} {result.clip.name}: {stage}" + (f" ({total} frames)" if total else ""), flush=True)
        quarter = 0
    now = 4 * st.frame // st.total if st.total else 0
    if 0 < now < 4 and now > quarter:
        print(f"{index} {result.clip.name}: {st.stage} {st.frame}/{st.total} ({st.fraction:.0%} overall)", flush=True)
        quarter = now
    shown[result.clip] = (len(st.stages), quarter)


def run_batch(args: argparse.Namespace) -> list[ClipResult]:
    """Convert every clip; returns one ClipResult per clip (failures are recorded, never raised)."""
    clips = find_clips(args.input)
    if not clips:
        raise ValueError(f"No videos in {args.input} (looked for {', '.join(VIDEO_SUFFIXES)}).")
    args.output.mkdir(parents=True, exist_ok=True)
    rig = Rig(args.rig)
    python = find_python(default_python(args.python))
    options = CoreOptions(start_s=args.start, end_s=args.end, person=str(args.person), cutoff_hz=args.cutoff,
                          lifter=args.lifter, use_hands=args.hands, use_face=args.face, foot_lock=args.foot_lock,
                          solve=args.solve)
    results = [ClipResult(clip, outputs_for(clip, args.output, args.formats)) for clip in clips]
    stems = Counter(clip.stem for clip in clips)
    pending: list[ClipResult] = []
    for r in results:
        if stems[r.clip.stem] > 1:  # walk.mp4 and walk.mov would both write walk.bvh
            r.status = "failed"
            r.message = (f"another clip is also called {r.clip.stem!r}; its outputs would overwrite each other: "
                         "rename one of them")
        elif not args.overwrite and up_to_date(r.clip, list(r.outputs.values()), rig.inputs):
            r.status, r.message = "skipped", "up to date"
        else:
            pending.append(r)
    total = len(results)
    label = {r.clip: f"[{i + 1}/{total}]" for i, r in enumerate(results)}
    work = Path(tempfile.mkdtemp(prefix="mimic-batch-"))
    running: list[tuple[ClipResult, CoreJob]] = []
    shown: dict[Path, tuple[int, int]] = {}
    try:
        while pending or running:
            while pending and len(running) < args.jobs:
                r = pending.pop(0)
                r.started = time.monotonic()
                job = CoreJob(python, r.clip, work / f"{len(running)}-{r.clip.stem}-{id(r)}.npz", options)
                try:
                    running.append((r, job.start()))
                    print(f"{label[r.clip]} {r.clip.name}: started", flush=True)
                except CoreError as err:
                    r.status, r.message = "failed", str(err)
            still: list[tuple[ClipResult, CoreJob]] = []
            for r, job in running:
                alive = job.poll()
                _progress(r, job, shown, label[r.clip])
                if alive:
                    still.append((r, job))
                    continue
                try:
                    r.frames = export_clip(job.result(), r.clip, r.outputs, rig)
                    r.status = "ok"
                except Exception as err:  # one bad clip must not stop the others
                    r.status, r.message = "failed", str(err) or type(err).__name__
                r.seconds = time.monotonic() - r.started
                print(f"{label[r.clip]} {r.clip.name}: {r.status}{': ' + r.message if r.message else ''}",
                      flush=True)
            running = still
            if running:
                time.sleep(POLL_S)
    finally:
        for _, job in running:
            job.cancel()
        shutil.rmtree(work, ignore_errors=True)
    return results


def summary_table(results: list[ClipResult]) -> str:
    """The end-of-run table: clip, frames, seconds (conversion wall time), output files, status."""
    rows = [("clip", "frames", "seconds", "outputs", "status")]
    for r in results:
        outs = ", ".join(o.name for o in r.outputs.values()) if r.status in ("ok", "skipped") else "-"
        status = r.status if not r.message else f"{r.status}: {r.message}"
        rows.append((r.clip.name, str(r.frames) if r.frames else "-", f"{r.seconds:.1f}" if r.seconds else "-",
                     outs, status))
    widths = [max(len(row[i]) for row in rows[:]) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] for row in rows]
    lines.insert(1, "-" * min(len(lines[0]) + 20, 120))
    return "\n".join(lines)


def main(argv: list[str], prog: str = "mimic-batch") -> int:
    """Run a batch; returns the exit code: 0 when every clip converted or was up to date, 1 otherwise."""
    try:
        args = parse_args(argv, prog)
    except SystemExit as exc:  # --help or a usage error: argparse printed it; return its code, never exit Blender
        return exc.code if isinstance(exc.code, int) else 2
    try:
        with signals.stop_on_signals():  # Ctrl-C, SIGTERM, SIGHUP: cores stopped, temp folder removed, no traceback
            results = run_batch(args)
    except (ValueError, MimicError, OSError) as err:
        print(f"mimic: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        code = getattr(err, "exit_code", 130)
        print(f"mimic: stopped: {str(err) or 'interrupted'} Clips finished before are kept; run again to convert "
              f"the rest (finished clips are skipped).", file=sys.stderr)
        return code
    print(summary_table(results), flush=True)
    failed = sum(r.failed for r in results)
    if failed:
        print(f"{failed} of {len(results)} clips failed.", file=sys.stderr)
    return 1 if failed else 0


def cli_main(argv: list[str]) -> int:
    """`blender -c mimic convert ...` (bpy.utils.register_cli_command)."""
    return main(list(argv), prog="blender -c mimic convert")


def _script_argv() -> list[str]:
    """Arguments meant for us: those after `--`; with no `--`, none under Blender (its argv is Blender's own) and
    everything after the program name under a plain Python."""
    if "--" in sys.argv:
        return sys.argv[sys.argv.index("--") + 1:]
    return [] if bpy.app.binary_path else sys.argv[1:]


if __name__ == "__main__":
    sys.exit(main(_script_argv()))  # under `blender -b --python` too: SystemExit ends Blender with this code
