"""Command line: `python -m core [VIDEO] [-o OUT.bvh|.npz|.vrma|.vmd] [options]`. With no video, converts the sample clip.
`python -m core live (--camera N | --video FILE) ...` streams poses as they are solved (core/live.py); a video file
named `live` is converted with `python -m core ./live`."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import traceback
from pathlib import Path

from core import __version__
from core.common import values
from core.common.errors import InputNotFound, Interrupted, MimicError
from core.common.signals import interrupt_when_stdin_closes, stop_on_signals
from core.progress import JsonReporter, NullReporter, Reporter, TqdmReporter

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CLIP = ROOT / "sample_clips" / "pose2sim_balance.mp4"  # one person, whole body, steady camera
DEFAULT_OUT_DIR = ROOT / "out"


def build_parser() -> argparse.ArgumentParser:
    from core.clip_solve import MODES as SOLVE_MODES
    from core.foot_lock import MODES as FOOT_LOCK_MODES
    from core.lift import DEFAULT_LIFTER, LIFTERS
    from core.pipeline import ConvertOptions

    d = ConvertOptions()
    p = argparse.ArgumentParser(prog="python -m core", description="Turn a video of a person into skeletal "
                                "animation (BVH, or a Mimic motion file for the Blender add-on).")
    p.add_argument("video", nargs="?", type=Path,
                   help=f"input video (default: the sample clip {DEFAULT_CLIP.name}); a .npz motion file or a Mimic "
                        "BVH is written again in the output's format and units, without detection")
    p.add_argument("-o", "--output", type=Path, help="output .bvh, .npz (motion file), .vrma (VRM Animation) or .vmd (MMD motion) (default: out/<clip>.bvh)")
    p.add_argument("--start", type=values.non_negative, default=d.start_s, metavar="SECONDS", help="start of the range to convert")
    p.add_argument("--end", type=values.non_negative, default=d.end_s, metavar="SECONDS", help="end of the range to convert")
    p.add_argument("--person", type=values.person, default=d.person,
                   help="who to track: largest (default), left, right, an index counted from the left (0, 1, …), "
                        "or all (every person: one .npz holding all, or OUT.p0.bvh, OUT.p1.bvh …)")
    p.add_argument("--lifter", choices=sorted(LIFTERS), default=DEFAULT_LIFTER, help="2D→3D lifter")
    p.add_argument("--weights", type=Path, default=None, metavar="FILE",
                   help="weights of the tcn lifter, e.g. retrained on your own mocap (default: core/weights/)")
    p.add_argument("--cutoff", type=values.non_negative, default=d.cutoff_hz, metavar="HZ",
                   help=f"smoothing low-pass cutoff in Hz, 0 = off (default {d.cutoff_hz:g})")
    p.add_argument("--max-gap", type=values.non_negative, default=d.max_gap_s, metavar="SECONDS",
                   help=f"interpolate detection gaps up to this long, hold longer ones (default {d.max_gap_s:g})")
    p.add_argument("--units", choices=("m", "cm"), default=d.units, help="BVH length unit (default m)")
    p.add_argument("--foot-lock", choices=FOOT_LOCK_MODES, default=d.foot_lock,
                   help="planted feet: auto (default) keeps them in place and on the floor while planted, grounding "
                        "keeps them on the floor without holding them in place, off leaves them as solved")
    p.add_argument("--solve", choices=SOLVE_MODES, default=d.solve,
                   help="clip: refine the motion with one optimisation over the whole clip (fixed bone lengths, "
                        "the 2D evidence, planted feet on the floor, smooth; ~4 ms a frame); frame: the per-frame "
                        f"solve alone (feet slide and bob more) (default {d.solve})")
    p.add_argument("--hands", action="store_true",
                   help="capture the fingers of both hands too (a second pass over the video; see docs/HANDS_FACE.md)")
    p.add_argument("--face", action="store_true",
                   help="capture facial expressions too: blinks, mouth shapes, brows, gaze (see docs/HANDS_FACE.md)")
    p.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    p.add_argument("--no-cache", action="store_true", help="run detection again even if cached")
    p.add_argument("--allow-partial", action="store_true",
                   help="convert the part of a damaged or truncated video that decodes, with a warning, instead of "
                        "stopping with an error")
    p.add_argument("--progress", choices=("auto", "bar", "json", "none"), default="auto",
                   help="progress display: a bar on a terminal (auto), JSON lines on stdout (json), or none")
    p.add_argument("--watch-stdin", action="store_true",
                   help="stop (as if interrupted) when standard input closes: a parent process that runs the core "
                        "keeps a pipe open, so the core never outlives it")
    p.add_argument("--version", action="version", version=f"mimic {__version__}")
    return p


def _camera_index(value: str) -> int:
    """A camera index: 0, 1, ..."""
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a camera index (0 is the first camera)")
    return int(value)


def _positive(value: str) -> float:
    """A finite number above 0 (seconds)."""
    number = values.non_negative(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be more than 0")
    return number


def _vmc_target(value: str) -> tuple[str, int]:
    """HOST:PORT of a VMC receiver, resolved now so that a typo fails before the camera starts."""
    import socket

    from core.vmc import parse_target

    try:
        host, port = parse_target(value)
        socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot resolve the host of {value!r} ({exc})") from None
    return host, port


def build_live_parser() -> argparse.ArgumentParser:
    from core.live import DEFAULT_MODEL, MODELS
    from core.vmc import DEFAULT_HOST, DEFAULT_PORT

    p = argparse.ArgumentParser(
        prog="python -m core live",
        description="Stream poses as they are solved: to VMC receivers (VSeeFace, Warudo, VNyan, EVMC4U...) over "
                    "OSC/UDP, and as JSON lines for the Blender add-on (--progress json). Ends when the clip ends, "
                    "after --seconds, or on Ctrl-C / SIGTERM (a normal end: summary, exit 0). To convert a video "
                    "file named 'live', run `python -m core ./live`.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--camera", type=_camera_index, metavar="N", help="capture from camera N (0 = the first)")
    source.add_argument("--video", type=Path, metavar="FILE",
                        help="replay a clip as if it were a camera, at its own frame rate (frames are dropped, not "
                             "queued, when processing is slower than real time)")
    p.add_argument("--vmc", type=_vmc_target, default=(DEFAULT_HOST, DEFAULT_PORT), metavar="HOST:PORT",
                   help=f"where to send VMC (default {DEFAULT_HOST}:{DEFAULT_PORT}, VMC receivers' usual port)")
    p.add_argument("--no-vmc", action="store_true", help="send no VMC (JSON lines or nothing only)")
    p.add_argument("--progress", choices=("json", "tqdm", "none"), default="tqdm",
                   help="JSON lines on stdout with every pose (json), a frame counter on stderr (tqdm, the default), "
                        "or nothing")
    p.add_argument("--seconds", type=_positive, default=None, metavar="S", help="stop after S seconds")
    p.add_argument("--model", choices=sorted(MODELS), default=DEFAULT_MODEL,
                   help=f"MediaPipe Pose model (default {DEFAULT_MODEL}: installed with mediapipe, real time on one "
                        "core; lite is downloaded by MediaPipe at first use)")
    p.add_argument("--face", action="store_true",
                   help="also track the face (MediaPipe Face Mesh on the head) and stream expressions: VRM blend "
                        "shapes over VMC (Blink, A, I, U, E, O, Joy ...), every channel in the JSON lines; adds "
                        "about 6 ms of latency a frame (Face Mesh on a crop at the head)")
    p.add_argument("--watch-stdin", action="store_true",
                   help="stop (a normal end) when standard input closes: the parent process keeps a pipe open")
    p.add_argument("--version", action="version", version=f"mimic {__version__}")
    return p


def _reporter(mode: str) -> Reporter:
    if mode == "json":
        return JsonReporter()
    if mode == "none" or (mode == "auto" and not sys.stderr.isatty()):
        return NullReporter()
    return TqdmReporter()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    os.environ.setdefault("GLOG_minloglevel", "2")  # keep MediaPipe's C++ logging off the terminal
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    if (sys.argv[1:] if argv is None else argv)[:1] == ["live"]:
        return _live_main((sys.argv[1:] if argv is None else argv)[1:])
    args = build_parser().parse_args(argv)
    reporter = _reporter(args.progress)
    with stop_on_signals():
        if args.watch_stdin:
            interrupt_when_stdin_closes()
        return _convert(args, reporter)


def _convert(args: argparse.Namespace, reporter: Reporter) -> int:
    """The conversion the arguments ask for, reported; returns the exit code."""
    from core.person import ALL
    from core.pipeline import MOTION_INPUTS, ConvertOptions, convert, person_paths, reexport

    try:
        video = args.video or DEFAULT_CLIP
        if args.video is None and not DEFAULT_CLIP.is_file():
            raise InputNotFound(f"The sample clip {DEFAULT_CLIP} is missing.", "Run `make setup` to fetch it.")
        output = args.output
        if output is None:
            DEFAULT_OUT_DIR.mkdir(exist_ok=True)
            output = DEFAULT_OUT_DIR / f"{Path(video).stem}.bvh"
        options = ConvertOptions(start_s=args.start, end_s=args.end, person=args.person, lifter=args.lifter,
                                 cutoff_hz=args.cutoff, max_gap_s=args.max_gap, units=args.units,
                                 overwrite=args.overwrite, use_cache=not args.no_cache,
                                 allow_partial=args.allow_partial,
                                 weights=str(args.weights) if args.weights else None,
                                 hands=args.hands, face=args.face, foot_lock=args.foot_lock,
                                 solve=args.solve)
        run = reexport if Path(video).suffix.lower() in MOTION_INPUTS else convert
        motion = run(video, output, options, reporter)
    except (MimicError, KeyboardInterrupt) as exc:
        err = exc if isinstance(exc, (MimicError, Interrupted)) else Interrupted(  # SIGINT before our handler
            "Interrupted (SIGINT); nothing was written.", "Run the command again to convert.", signal.SIGINT)
        return _report_error(err, reporter)
    except Exception as exc:  # a bug, not bad input: keep the protocol intact and show the traceback on stderr
        return _report_bug(exc, reporter)
    people = motion.meta.get("people") if args.person == ALL else None
    written = person_paths(Path(output), len(people)) if people else [Path(output)]
    extra = {"people": len(people), "outputs": [str(p.resolve()) for p in written]} if people else {}
    reporter.done(output=str(written[0].resolve()), frames=motion.num_frames, fps=motion.fps, **extra)
    if isinstance(reporter, NullReporter) and args.progress != "none":
        print(f"wrote {', '.join(map(str, written))}", file=sys.stderr)
    return 0


def _report_error(err: MimicError | Interrupted, reporter: Reporter) -> int:
    """The error line (and the message on stderr without JSON); returns its exit code."""
    reporter.error(err.to_json())
    if not isinstance(reporter, JsonReporter):
        print(f"mimic: error: {err}", file=sys.stderr)
    return err.exit_code


def _report_bug(exc: Exception, reporter: Reporter) -> int:
    """A bug, not bad input: the traceback on stderr, an InternalError line; exit code 1."""
    traceback.print_exc()
    message = f"Internal error: {type(exc).__name__}: {exc}. Please report it with the traceback printed above."
    reporter.error({"type": "InternalError", "message": message, "exit_code": 1})
    return 1


def _live_main(argv: list[str]) -> int:
    """`python -m core live ...`: a stop (signal, stdin closed) ends the stream normally (done line, exit 0)."""
    args = build_live_parser().parse_args(argv)
    reporter: Reporter = JsonReporter() if args.progress == "json" else NullReporter()
    with stop_on_signals():
        if args.watch_stdin:
            interrupt_when_stdin_closes()
        return _live(args, reporter)


def _live(args: argparse.Namespace, reporter: Reporter) -> int:
    """The live stream the arguments ask for, reported; returns the exit code."""
    from core.live import LiveOptions, LiveResult, stop_reason, stream

    try:
        options = LiveOptions(camera=args.camera, video=args.video, vmc=None if args.no_vmc else args.vmc,
                              seconds=args.seconds, model=args.model, progress=args.progress, face=args.face)
        result = stream(options, reporter)
    except MimicError as exc:
        return _report_error(exc, reporter)
    except KeyboardInterrupt as exc:  # a stop before the stream began or after it ended: still a normal end
        result = LiveResult(stopped=stop_reason(exc))
    except Exception as exc:  # noqa: BLE001
        return _report_bug(exc, reporter)
    with contextlib.suppress(OSError, ValueError):  # the reader may be gone (stdin closed: parent gone)
        reporter.done(**result.done_fields())
    if args.progress == "tqdm":
        print(result.summary(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Every file is written and closed, every child process ended: skip the interpreter's teardown of torch and
    # MediaPipe (~0.9 s, a clip's worth of frames on short jobs).
    os._exit(code)
