"""The conversion pipeline: video → detections → 3D keypoints → filtered → joint rotations → BVH or motion file."""

from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from core import __version__
from core.common.atomic import check_output
from core.common.errors import InputNotFound, UnsupportedOutput
from core.filters import Gap
from core.lift import DEFAULT_LIFTER, get_lifter
from core.common.motionfile import Motion, save_motion, save_motions
from core.person import ALL
from core.progress import NullReporter, Reporter
from core.common import rigs

OUTPUT_FORMATS = (".bvh", ".npz", ".vrma", ".vmd")
#: --face: a face seen on fewer than this share of the frames gives no expressions (a clip's own calibration and
#: its gaps need more; a face seen now and then at the edge of detection is noise).
MIN_FACE_SHARE = 0.1
#: Inputs that are already motion, written again in another format or unit without detection.
MOTION_INPUTS = (".npz", ".bvh")


@dataclass(frozen=True)
class ConvertOptions:
    """Every user-facing setting of a conversion, with its default.

    start_s/end_s: clip range in seconds (None = whole clip). person: "largest", "left", "right", an index
    counted from the left, or "all" (every person, core.person.PeopleTracker; see `run_people`). lifter: see core.lift.LIFTERS. cutoff_hz: smoothing low-pass cutoff (0 = off).
    max_gap_s: detection gaps up to this long are interpolated, longer ones held and reported.
    units: BVH length unit, "m" or "cm". use_cache: reuse cached detections of the same video and settings.
    allow_partial: convert the part of a damaged video that decodes (with a warning) instead of failing.
    weights: the learned lifter's weights file (None = the shipped core/weights/lifter_tcn.pt).
    hands: capture both hands' fingers (core.hands_face2d, core.fingers). face: capture facial expressions
    (core.face). Each costs a second pass over the video (docs/HANDS_FACE.md says how much).
    foot_lock: after the solve, "auto" keeps planted feet in place and on the floor, "grounding" keeps them on the
    floor only, "off" leaves the solve as it is (core.foot_lock.MODES).
    solve: "clip" refines the per-frame IK with one optimisation over the whole clip (core.clip_solve: fixed
    bones, the 2D evidence, contacts, floor, smoothness), "frame" keeps the per-frame IK (core.clip_solve.MODES).
    """

    start_s: float | None = None
    end_s: float | None = None
    person: str | int = "largest"
    lifter: str = DEFAULT_LIFTER
    cutoff_hz: float = 6.0
    max_gap_s: float = 0.5
    units: str = "m"
    overwrite: bool = False
    use_cache: bool = True
    allow_partial: bool = False
    weights: str | None = None
    hands: bool = False
    face: bool = False
    foot_lock: str = "auto"
    solve: str = "clip"


def check_output_path(output: Path, overwrite: bool) -> None:
    """Fail before any work if `output` has an unknown format or cannot be written."""
    if output.suffix.lower() not in OUTPUT_FORMATS:
        raise UnsupportedOutput(f"Unknown output format {output.suffix or '(none)'!r} for {output}.",
                                "Use .bvh (animation), .npz (Mimic motion file), .vrma (VRM Animation) or .vmd (MMD motion).")
    check_output(output, overwrite)


def _uniform_detections(det: "Detections") -> "Detections":  # noqa: F821
    """Resample detections of a variable-frame-rate video onto a constant grid at det.fps."""
    from core.filters import resample

    step = 1.0 / det.fps
    if det.num_frames < 2 or np.max(np.abs(np.diff(det.times) - step)) < 0.25 * step:
        return det
    times, image = resample(det.times, det.image, det.fps)
    _, world = resample(det.times, det.world, det.fps)
    _, present = resample(det.times, det.present, det.fps)
    present &= np.isfinite(image[:, 0, 0])
    return replace(det, times=times, image=image, world=world, present=present)


def describe_gaps(gaps: list[Gap], valid: np.ndarray, fps: float) -> list[str]:
    """One warning per lost stretch of frames, naming the landmarks (or the whole person) that were held still.

    Landmarks a lifter never estimates (never valid) are not gaps. valid: (F, K) bool.
    """
    names = list(rigs.landmark_names())
    seen = valid.any(axis=0)
    spans: dict[tuple[int, int], list[str]] = {}
    for gap in gaps:
        if seen[gap.keypoint]:
            spans.setdefault((gap.start, gap.end), []).append(names[gap.keypoint])
    messages = []
    for (start, end), lost in sorted(spans.items()):
        what = "the person" if len(lost) == int(seen.sum()) else ", ".join(lost)
        messages.append(f"lost track of {what} for frames {start}–{end} ({start / fps:.1f}–{(end + 1) / fps:.1f} s): "
                        "held still there; shorten the range or use --max-gap to interpolate instead")
    return messages


class _FailFast:
    """The reporter, for detection while the lifter loads beside it (torch's import and the weights, ~1.2 s, mostly
    while this process waits for detection's second half, core/detect_split.py): detection stops at its next frame
    if loading failed (bad weights), so that error still comes first."""

    def __init__(self, reporter: Reporter, loading: Future[Any]) -> None:
        self._reporter, self._loading = reporter, loading

    def update(self, frame: int) -> None:
        if self._loading.done() and self._loading.exception() is not None:
            raise self._loading.exception()  # type: ignore[misc]
        self._reporter.update(frame)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reporter, name)


def run(video: Path, options: ConvertOptions = ConvertOptions(), reporter: Reporter = NullReporter()) -> Motion:
    """Convert `video` into a Motion (no file written); one person (options.person is not "all")."""
    from core.detect2d import detect
    from core.filters import fill_gaps, smooth
    from core.foot_lock import foot_lock
    from core.ik import solve
    from core.sides import fix_swaps

    with ThreadPoolExecutor(1, thread_name_prefix="mimic-lifter") as pool:  # the lifter loads beside detection
        loading = pool.submit(get_lifter, options.lifter, Path(options.weights) if options.weights else None)
        det = detect(video, options.start_s, options.end_s, options.person, _FailFast(reporter, loading),
                     cache_dir=None if options.use_cache else False, allow_partial=options.allow_partial)
        lifter = loading.result()
    for message in det.info.get("decode_warnings", []):
        reporter.warn(message)
    det = _uniform_detections(det)
    det, swapped = fix_swaps(det)
    if swapped.any():
        reporter.warn(f"corrected left/right swaps in {int(swapped.sum())} frames")
    frames = det.num_frames
    parts = _detect_hands_face(video, det, options, reporter)

    reporter.stage("lift", frames)
    lifted = lifter.lift(det)
    reporter.update(frames)

    reporter.stage("filter", frames)
    valid = (lifted.confidence > 0) & np.all(np.isfinite(lifted.keypoints), axis=-1)
    keypoints, gaps = fill_gaps(lifted.keypoints, valid, det.fps, options.max_gap_s)
    keypoints = smooth(keypoints, det.fps, options.cutoff_hz)
    for message in describe_gaps(gaps, valid, det.fps):
        reporter.warn(message)
    reporter.update(frames)

    reporter.stage("solve", frames)
    motion = solve(keypoints, lifted.confidence, det.fps)
    if options.solve == "clip":
        from core.clip_solve import clip_solve
        motion = clip_solve(motion, det.image, det.width, det.height)
    motion = foot_lock(motion, options.foot_lock)
    reporter.update(frames)

    motion.keypoints_2d = det.image
    if parts is not None:
        motion = add_hands_face(motion, parts, options, reporter)
    motion.meta.update(
        mimic_version=__version__,
        source={"video": str(Path(video).resolve()), "start_s": options.start_s, "end_s": options.end_s,
                "width": det.width, "height": det.height, **det.info},
        times=det.times.tolist(),
        lifter=lifted.lifter,
        options=asdict(options),
        gaps=[g._asdict() for g in gaps if valid[:, g.keypoint].any()],
        swapped_frames=int(swapped.sum()),
    )
    return motion


def _detect_hands_face(video: Path, det: "Detections", options: ConvertOptions,  # noqa: F821
                       reporter: Reporter) -> "HandFaceDetections | None":  # noqa: F821
    """The hands' and face's landmarks of the person `det` follows (core.hands_face2d), None when neither is asked."""
    if not (options.hands or options.face):
        return None
    from core.hands_face2d import detect_hands_face

    return detect_hands_face(video, det, hands=options.hands, face=options.face, reporter=reporter,
                             cache_dir=None if options.use_cache else False)


def add_hands_face(motion: Motion, parts: "HandFaceDetections", options: ConvertOptions,  # noqa: F821
                   reporter: Reporter) -> Motion:
    """`motion` with the fingers (hand_rotations, hand_confidence, and the Hand joints' turns) and the face
    (expressions, and the Head joint's turn) solved from `parts` where they are seen (core.orient_parts), as
    options.hands and options.face ask; a warning, not an error, where no hand or no face was seen."""
    from core.common.hands import expression_names, hand_joint_names
    from core.face import solve_face
    from core.fingers import solve_fingers
    from core.orient_parts import with_face_head, with_palm_hands

    frames = motion.num_frames
    if options.hands:
        reporter.stage("fingers", frames)
        fingers = solve_fingers(parts.hands_world[:frames], parts.hand_score[:frames], motion.fps,
                                hands_image=parts.hands_image[:frames])
        motion = with_palm_hands(motion, fingers.palm_rotations, fingers.hand_confidence).with_channels(
            hand_rotations=fingers.hand_rotations, hand_confidence=fingers.hand_confidence,
            hand_joints=hand_joint_names())
        if not (parts.hand_score[:frames] > 0).any():
            reporter.warn("no hand was found: fingers are left straight (hands too small, hidden or blurred)")
        reporter.update(frames)
    if options.face:
        reporter.stage("face", frames)
        seen = int(parts.face_present[:frames].sum()) if parts.face_image is not None else 0
        if seen >= MIN_FACE_SHARE * frames:
            face = solve_face(parts.face_image[:frames], parts.face_present[:frames], motion.fps)
            motion = with_face_head(motion, face.head_rotations, face.confidence).with_channels(
                expressions=face.expressions, expression_names=expression_names())
        else:
            reporter.warn(f"no face was found (seen on {seen} of {frames} frames): no expressions (the face is too "
                          "small, turned away or hidden)")
        reporter.update(frames)
    motion.meta["hands_face"] = {k: v for k, v in parts.info.items() if k != "video"}
    return motion


def run_people(video: Path, options: ConvertOptions = ConvertOptions(),
               reporter: Reporter = NullReporter()) -> list[Motion]:
    """Convert every person in `video` (core.detect2d.detect_people) into one Motion each, in one shared world.

    Each person is lifted, filtered and solved as in `run`; then they share one camera and one floor
    (core.people_world): one focal length, each person moved in depth to it (their image position and size are
    kept); one level for the camera's tilt; the X/Z origin under the people's mean starting place; the floor Y = 0
    under each person's feet. Frames where a person is not seen have confidence 0 and NaN keypoints_2d (their pose is
    held or interpolated as for any gap). Every Motion carries the file's meta; meta["people"] lists per person
    the frames seen, gaps and swaps. Time: detection runs once per person per frame (see core.person).
    """
    from core.detect2d import detect_people
    from core.foot_lock import foot_lock
    from core.sides import fix_swaps

    lifter = get_lifter(options.lifter, Path(options.weights) if options.weights else None)
    dets = detect_people(video, options.start_s, options.end_s, reporter,
                         cache_dir=None if options.use_cache else False, allow_partial=options.allow_partial)
    for message in dets[0].info.get("decode_warnings", []):
        reporter.warn(message)
    fixed = [fix_swaps(_uniform_detections(d)) for d in dets]
    frames = min(d.num_frames for d, _ in fixed)
    fixed = [(_first_frames(d, frames), swapped[:frames]) for d, swapped in fixed]
    reporter.stage("lift", frames * len(fixed))
    lifted = []
    for k, (det, _) in enumerate(fixed, 1):
        lifted.append(lifter.lift(det))
        reporter.update(frames * k)
    motions = _solve_people(video, options, reporter, [d for d, _ in fixed], [s for _, s in fixed], lifted)
    if options.solve == "clip":  # the people share one camera and floor: it stays as they were placed in
        from core.clip_solve import DEFAULT, clip_solve
        shared = replace(DEFAULT, camera=False)
        motions = [clip_solve(m, d.image, d.width, d.height, shared) for m, (d, _) in zip(motions, fixed)]
    motions = [foot_lock(m, options.foot_lock) for m in motions]
    for k, (det, _) in enumerate(fixed):
        parts = _detect_hands_face(video, det, options, reporter)
        if parts is not None:
            motions[k] = add_hands_face(motions[k], parts, options, reporter)
    return motions


def _first_frames(det: "Detections", frames: int) -> "Detections":  # noqa: F821
    """det cut to its first `frames` frames (persons resampled from one clip can differ by a frame at the end)."""
    if det.num_frames == frames:
        return det
    return replace(det, times=det.times[:frames], image=det.image[:frames], world=det.world[:frames],
                   present=det.present[:frames])


def _solve_people(video: Path, options: ConvertOptions, reporter: Reporter, dets: list["Detections"],  # noqa: F821
                  swaps: list[np.ndarray], lifted: list["Lifted"]) -> list[Motion]:  # noqa: F821
    """Filter, place in the shared world and solve each person's lifted keypoints; every Motion gets the file's
    meta (the first person's source, options ...) with meta["people"] describing each person."""
    from core.filters import fill_gaps, smooth
    from core.people_world import place

    fps, frames = dets[0].fps, dets[0].num_frames
    reporter.stage("filter", frames * len(dets))
    keypoints, valid, all_gaps = [], [], []
    for k, (det, lift) in enumerate(zip(dets, lifted), 1):
        ok = (lift.confidence > 0) & np.all(np.isfinite(lift.keypoints), axis=-1)
        filled, gaps = fill_gaps(lift.keypoints, ok, fps, options.max_gap_s)
        keypoints.append(smooth(filled, fps, options.cutoff_hz))
        valid.append(ok)
        all_gaps.append([g for g in gaps if ok[:, g.keypoint].any() and ok.any(axis=1)[g.start:g.end + 1].any()])
        reporter.update(frames * k)
    reporter.stage("solve", frames * len(dets))
    motions, world = place(keypoints, [l.confidence for l in lifted], valid, dets, fps, reporter)
    people = []
    for k, (det, motion, gaps, swapped) in enumerate(zip(dets, motions, all_gaps, swaps)):
        motion.keypoints_2d = det.image
        motion.person = k
        seen = det.present.astype(np.int8)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], seen, [0]])))
        people.append({"id": k, "seen": edges.reshape(-1, 2).tolist(), "frames_seen": int(det.present.sum()),
                       "gaps": [g._asdict() for g in all_gaps[k] if valid[k][:, g.keypoint].any()],
                       "swapped_frames": int(swapped.sum()), "candidates": det.info.get("candidates", []),
                       "ik": motion.meta.get("ik")})
        for message in describe_gaps(gaps, valid[k], fps):
            reporter.warn(f"person {k}: {message}")
    source = {key: v for key, v in dets[0].info.items() if key not in ("candidates", "person_id")}
    meta = dict(mimic_version=__version__,
                source={"video": str(Path(video).resolve()), "start_s": options.start_s, "end_s": options.end_s,
                        "width": dets[0].width, "height": dets[0].height, **source},
                times=dets[0].times.tolist(), lifter=lifted[0].lifter, options=asdict(options), gaps=[],
                swapped_frames=int(sum(int(s.sum()) for s in swaps)), people=people, world=world)
    for motion in motions:
        motion.meta.update(meta)
    return motions


def person_paths(output: Path, count: int) -> list[Path]:
    """Where `write_people` puts each of `count` persons: the .npz itself (one motion file holds them all), or,
    for formats that hold one person (BVH, .vrma, .vmd), one file each beside `output` (`clip.bvh`):
    `clip.p0.bvh`, `clip.p1.bvh`, ..."""
    if output.suffix.lower() == ".npz":
        return [output]
    return [output.with_name(f"{output.stem}.p{k}{output.suffix}") for k in range(count)]


def write_people(motions: list[Motion], output: Path, units: str = "m", overwrite: bool = False) -> list[Path]:
    """Write several persons: one motion file holding them all (.npz), or one file per person (`person_paths`),
    each checked before any is written."""
    paths = person_paths(output, len(motions))
    if output.suffix.lower() == ".npz":
        save_motions(motions, output)
        return paths
    for path in paths:
        check_output(path, overwrite)
    for motion, path in zip(motions, paths):
        write(motion, path, units)
    return paths


def write(motion: Motion, output: Path, units: str = "m") -> Path:
    """Write `motion` to `output` atomically, in the format its suffix names (OUTPUT_FORMATS): BVH, the motion
    file, VRM Animation (core/common/vrma.py) or MMD motion (core/common/vmd.py). `units` is BVH's."""
    from core.bvh import write_bvh
    from core.common.vmd import write_vmd
    from core.common.vrma import write_vrma

    suffix = output.suffix.lower()
    if suffix == ".bvh":
        write_bvh(output, motion, units=units)
    elif suffix == ".vrma":
        write_vrma(output, motion)
    elif suffix == ".vmd":
        write_vmd(output, motion)
    else:
        save_motion(motion, output)
    return output


def convert(video: Path, output: Path, options: ConvertOptions = ConvertOptions(),
            reporter: Reporter = NullReporter()) -> Motion:
    """The whole job: check the output path, convert `video`, write `output`; returns the Motion (with person
    "all": every person goes to `output` (.npz) or to one file each (`person_paths`); the first person is returned)."""
    video, output = Path(video), Path(output)
    check_output_path(output, options.overwrite)
    if options.person == ALL:
        motions = run_people(video, options, reporter)
        reporter.stage("write", motions[0].num_frames)
        paths = write_people(motions, output, options.units, options.overwrite)
        reporter.update(motions[0].num_frames)
        if len(paths) > 1 or paths[0] != output:
            reporter.warn(f"{len(motions)} people: one file each, " + ", ".join(p.name for p in paths))
        return motions[0]
    motion = run(video, options, reporter)
    reporter.stage("write", motion.num_frames)
    write(motion, output, options.units)
    reporter.update(motion.num_frames)
    return motion


def reexport(source: Path, output: Path, options: ConvertOptions = ConvertOptions(),
             reporter: Reporter = NullReporter()) -> Motion:
    """A motion file or a BVH in Mimic's layout (root translation, rotations on every joint) written again in any
    of OUTPUT_FORMATS (a BVH in centimetres, a .vrma, a .vmd); BadMotionFile or BadBvhFile for one that cannot be read."""
    from core.bvh import bvh_to_motion, guess_units, read_bvh
    from core.common.motionfile import load_motion

    source, output = Path(source), Path(output)
    check_output_path(output, options.overwrite)
    if not source.is_file():
        raise InputNotFound(f"{source} does not exist.", "Check the path and the file name.")
    if source.suffix.lower() == ".bvh":
        data = read_bvh(source)
        motion = bvh_to_motion(data, guess_units(data))
    else:
        motion = load_motion(source)
    reporter.stage("write", motion.num_frames)
    write(motion, output, options.units)
    reporter.update(motion.num_frames)
    return motion
