"""Command line: `python -m core.batch --input DIR --output DIR [--format bvh,npz,vrma,vmd,fbx] [--ray ADDRESS]`.
Exit 0 when every clip converted (or was already done), 1 when some failed, 2 for a bad command line, a MimicError's
code when the batch cannot start (16: Ray or the workers unavailable), 128 + signal when stopped."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

from core import __version__
from core.common import values
from core.common.errors import Interrupted, MimicError
from core.common.signals import STOP_SIGNALS, stop_on_signals


def build_parser() -> argparse.ArgumentParser:
    from core.clip_solve import MODES as SOLVE_MODES
    from core.foot_lock import MODES as FOOT_LOCK_MODES
    from core.lift import DEFAULT_LIFTER, LIFTERS
    from core.pipeline import ConvertOptions

    d = ConvertOptions()
    p = argparse.ArgumentParser(
        prog="python -m core.batch",
        description="Convert a folder of videos (sub-folders too) on all local cores, or on a Ray cluster. Each "
                    "clip's result is appended to OUTPUT/manifest.jsonl as it finishes.")
    p.add_argument("--input", "-i", type=Path, required=True, help="a folder of videos (or one video)")
    p.add_argument("--output", "-o", type=Path, required=True,
                   help="output folder (created if missing); outputs keep the input's sub-folders")
    p.add_argument("--format", default="bvh",
                   help="comma-separated formats: bvh, npz, vrma, vmd (written by the core) and Blender's exporters "
                        "(fbx, glb, unity_fbx, ...: a second stage on workers with bpy) (default bvh)")
    p.add_argument("--workers", "-j", type=int, default=None, metavar="N",
                   help="clips converted at once (default: every CPU core here, or every CPU of the Ray cluster)")
    p.add_argument("--ray", default="", metavar="ADDRESS",
                   help="run on a Ray cluster: 'auto' (the cluster this machine belongs to), HOST:PORT or "
                        "ray://HOST:10001, or 'local' (a Ray instance started here with --workers CPUs); needs "
                        "requirements-cluster.txt")
    p.add_argument("--no-gpu", dest="use_gpu", action="store_false",
                   help="with --ray, never ask for GPUs (default: a share of the cluster's GPUs per worker when "
                        "torch sees CUDA there)")
    p.add_argument("--retries", type=int, default=2, metavar="N",
                   help="resubmit a clip whose worker died up to N times, to whichever worker is free (default 2)")
    p.add_argument("--resume", action="store_true",
                   help="skip clips the manifest already lists as converted (same content hash and settings, "
                        "outputs present); convert the rest")
    p.add_argument("--overwrite", action="store_true", help="start again in an output folder that holds a batch")
    p.add_argument("--blender", default="", metavar="PATH",
                   help="a Blender binary or a Python with bpy for Blender-side formats (default: this Python when it "
                        "has bpy, else `blender` on the PATH)")
    p.add_argument("--rig", default="",
                   help="retarget onto this character in the Blender stage: FILE.blend:ARMATURE or a bone-map preset "
                        "name (as addon/batch.py); every format but npz is then written by Blender")
    p.add_argument("--progress", choices=("auto", "bar", "json", "none"), default="auto",
                   help="a bar of clips on a terminal (auto), JSON lines on stdout (json), or nothing")
    conv = p.add_argument_group("conversion (as python -m core)")
    conv.add_argument("--start", type=values.non_negative, default=d.start_s, metavar="SECONDS")
    conv.add_argument("--end", type=values.non_negative, default=d.end_s, metavar="SECONDS")
    conv.add_argument("--person", type=values.person, default=d.person,
                      help="largest (default), left, right, or an index counted from the left")
    conv.add_argument("--lifter", choices=sorted(LIFTERS), default=DEFAULT_LIFTER)
    conv.add_argument("--weights", type=Path, default=None, metavar="FILE")
    conv.add_argument("--cutoff", type=values.non_negative, default=d.cutoff_hz, metavar="HZ")
    conv.add_argument("--max-gap", type=values.non_negative, default=d.max_gap_s, metavar="SECONDS")
    conv.add_argument("--units", choices=("m", "cm"), default=d.units, help="BVH length unit (default m)")
    conv.add_argument("--foot-lock", choices=FOOT_LOCK_MODES, default=d.foot_lock,
                      help="planted feet: auto (default, held in place and on the floor), grounding (on the floor "
                           "only) or off")
    conv.add_argument("--solve", choices=SOLVE_MODES, default=d.solve,
                      help="clip (default): one optimisation over the whole clip (planted feet, fixed bones); "
                           "frame: the per-frame solve alone")
    conv.add_argument("--hands", action="store_true", help="capture the fingers of both hands too")
    conv.add_argument("--face", action="store_true", help="capture facial expressions too")
    conv.add_argument("--no-cache", action="store_true", help="run detection again even if cached")
    conv.add_argument("--allow-partial", action="store_true",
                      help="convert the part of a damaged video that decodes instead of failing the clip")
    p.add_argument("--version", action="version", version=f"mimic {__version__}")
    return p


def config(args: argparse.Namespace) -> "Config":  # noqa: F821
    """The batch Config of parsed arguments; argparse-style error (exit 2) for a bad --format or --workers."""
    from core.batch.driver import Config
    from core.pipeline import ConvertOptions

    formats = list(dict.fromkeys(f.strip().lower().lstrip(".") for f in args.format.split(",") if f.strip()))
    if not formats:
        build_parser().error("--format: give at least one format, e.g. bvh")
    if args.workers is not None and args.workers < 1:
        build_parser().error("--workers must be 1 or more")
    if args.retries < 0:
        build_parser().error("--retries must be 0 or more")
    if args.person == "all":
        build_parser().error("--person all is not supported by the batch yet; convert such clips with python -m core")
    rig = args.rig
    if ".blend:" in rig:
        path, _, name = rig.rpartition(":")
        if not Path(path).is_file():
            build_parser().error(f"--rig: {path} does not exist")
        rig = f"{Path(path).resolve()}:{name}"
    options = ConvertOptions(start_s=args.start, end_s=args.end, person=args.person, lifter=args.lifter,
                             cutoff_hz=args.cutoff, max_gap_s=args.max_gap, units=args.units, overwrite=True,
                             use_cache=not args.no_cache, allow_partial=args.allow_partial,
                             weights=str(args.weights.resolve()) if args.weights else None,
                             hands=args.hands, face=args.face, foot_lock=args.foot_lock,
                             solve=args.solve)
    return Config(input=args.input.resolve(), output=args.output.resolve(), formats=formats, options=options,
                  workers=args.workers, retries=args.retries, resume=args.resume, overwrite=args.overwrite,
                  ray=args.ray, blender=args.blender, rig=rig, use_gpu=args.use_gpu, progress=args.progress)


def _remember_signals(received: list[int]) -> None:
    """Note each stop signal in `received` before the installed handler runs: Ray's C++ calls turn the Interrupted
    it raises into a plain KeyboardInterrupt, which no longer says which signal it was."""
    for sig in STOP_SIGNALS:
        handler = signal.getsignal(sig)
        if callable(handler):
            def remember(signum: int, frame: object, handler: Any = handler) -> None:
                received.append(signum)
                handler(signum, frame)

            signal.signal(sig, remember)


def main(argv: list[str] | None = None) -> int:
    """Run the batch; returns the exit code."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = build_parser().parse_args(argv)
    cfg = config(args)
    from core.batch.driver import UsageError, run_batch

    received: list[int] = []
    try:
        with stop_on_signals():
            _remember_signals(received)
            summary = run_batch(cfg)
    except UsageError as err:
        print(f"python -m core.batch: error: {err}", file=sys.stderr)
        return 2
    except MimicError as err:
        print(f"mimic: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else (received or [signal.SIGINT])[0]
        print(f"mimic: stopped ({signal.Signals(signum).name}); clips in progress were abandoned and left no files. "
              f"Finished clips are in {cfg.output / 'manifest.jsonl'}: run again with --resume to convert the rest.",
              file=sys.stderr)
        return 128 + signum
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
