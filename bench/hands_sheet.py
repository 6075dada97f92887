"""Contact sheet for the docs: video frames of the rendered finger validation clips beside Mimic's fingers
retargeted onto the same CC0 MPFB2 body.

Usage: nice -n 10 .venv/bin/python bench/hands_sheet.py [--clips hands_1m hands_2m] [--out docs/images/hands_sheet.png]
       [--tile 480] [--aspect 0.6] [--colours 40] [--foot-lock off]

Per clip (bench/render_hands_face.py renders them; their .npz truth says which pose each hand holds per frame),
Mimic's pipeline runs with fingers (core.pipeline.run, ConvertOptions(hands=True); detections are cached), the
motion is retargeted onto the MPFB2 game-engine rig by the add-on (addon.retarget.retarget_motion: body and finger
bones, auto-detected map) and, for the middle frame of each held segment, the body is rendered (Workbench, no floor)
by a level camera looking at the hands from the side the video's camera saw the body from (the clip's azimuth about
the retargeted body's own facing, so the person's left hand is on the image's right), zoomed to fit both hands.
Tiles (tile x aspect*tile px): the video frame cropped around both hands (the truth's image points), then the render,
each labelled with the poses held (L, R: the person's hands); a row holds the same held segment of every clip
(hands_1m and hands_2m hold the same pose pairs with the hands swapped). A .png sheet is a palette PNG of `colours`
colours (40: 370 kB at the defaults), a .jpg one JPEG quality 85 (about 300 kB).
Costs (2 shared cores): 7 s with the clips' detections cached; without, Mimic takes ~10 s more a clip (hands_1m 9.5 s).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import render_hands_face as rhf  # noqa: E402
from bench import render_validation as rv  # noqa: E402
from core.common.atomic import atomic_path  # noqa: E402
from core.common.axes import from_blender  # noqa: E402

CLIPS = ("hands_1m", "hands_2m")
OUT = ROOT / "docs" / "images" / "hands_sheet.png"
MARGIN = 0.08  # share of the hands' extent added around them, in the crop and the render
SIDES = ("l", "r")


def held_frames(pose: np.ndarray, blend: np.ndarray) -> list[int]:
    """The middle frame of each held segment (both hands still, same poses) of a clip's truth pose (F, 2)."""
    key = np.where(blend.any(axis=1), "", np.char.add(np.char.add(pose[:, 0], "|"), pose[:, 1]))
    edges = np.flatnonzero(np.r_[True, key[1:] != key[:-1], True])
    return [int((a + b - 1) // 2) for a, b in zip(edges[:-1], edges[1:]) if key[a]]


def crop_box(img: np.ndarray, points: np.ndarray, aspect: float, margin: float = MARGIN) -> np.ndarray:
    """The box of `img` (height = aspect x width) around pixel points (N, 2), `margin` of their extent added on
    each side, padded white outside the image."""
    lo, hi = points.min(0), points.max(0)
    c = 0.5 * (lo + hi)
    half_w = 0.5 * (1.0 + 2.0 * margin) * max(hi[0] - lo[0], (hi[1] - lo[1]) / aspect)
    half = np.array([half_w, aspect * half_w])
    x0, y0 = np.round(c - half).astype(int)
    w, h = np.round(2 * half).astype(int)
    pad = int(w)
    big = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), constant_values=255)
    return big[y0 + pad:y0 + pad + h, x0 + pad:x0 + pad + w]


def hand_points(arm) -> np.ndarray:
    """(N, 3) Mimic-axes world points of both hands now: hand bone heads and every finger bone's head and tail."""
    mw = np.array(arm.matrix_world)
    pts = []
    for s in SIDES:
        pts.append(arm.pose.bones[f"hand_{s}"].head)
        for f in rhf.FINGERS:
            for k in ("01", "02", "03"):
                pb = arm.pose.bones[f"{f}_{k}_{s}"]
                pts += [pb.head, pb.tail]
    p = np.array(pts) @ mw[:3, :3].T + mw[:3, 3]
    return from_blender(p)


def facing(arm) -> tuple[np.ndarray, np.ndarray]:
    """The posed body's horizontal forward and left unit vectors (Mimic axes) from its upper arms' heads."""
    mw = np.array(arm.matrix_world)
    ends = [mw[:3, :3] @ np.array(arm.pose.bones[f"upperarm_{s}"].head) + mw[:3, 3] for s in SIDES]
    left = from_blender(ends[0] - ends[1])
    left[1] = 0.0
    left = rv._unit(left)
    return np.cross(left, [0.0, 1.0, 0.0]), left


def hands_camera(arm, azimuth_deg: float, width: int, height: int, margin: float = MARGIN) -> rv.Camera:
    """A level camera 1 m from the hands' middle, `azimuth_deg` about the body's forward towards its left, its
    lens zoomed so both hands fill the frame less `margin` of their extent on each side."""
    pts = hand_points(arm)
    forward, left = facing(arm)
    az = math.radians(azimuth_deg)
    mid = 0.5 * (pts.min(0) + pts.max(0))
    position = mid + 1.0 * (math.cos(az) * forward + math.sin(az) * left)
    cam = rv.look_at("phone", position, mid, width, height, 36.0, 36.0)
    uv, _ = cam.project(pts)
    half = np.abs(uv - [width / 2.0, height / 2.0]).max(0)
    zoom = (1.0 + 2.0 * margin) * max(half[0] / (width / 2.0), half[1] / (height / 2.0))
    return rv.look_at("phone", position, mid, width, height, 36.0 / zoom, 36.0)


def mimic_motion(video: Path, foot_lock: str | None = None):
    """Mimic's motion of `video` with fingers (the pipeline, cached detections; foot_lock None = its default) and
    the seconds it took."""
    from core.pipeline import ConvertOptions, run

    t0 = time.time()
    motion = run(video, ConvertOptions(hands=True, **({"foot_lock": foot_lock} if foot_lock else {})))
    return motion, time.time() - t0


def render_clip(spec: dict, motion, frames: list[int], azimuth_deg: float, width: int, height: int,
                folder: Path) -> list[Path]:
    """Build the body (no floor: the retargeted body need not stand on it), retarget `motion` onto it (the add-on)
    and render the given motion frames; PNG paths."""
    import bpy

    from addon import retarget

    body = rhf.build(spec)
    bpy.data.objects["floor"].hide_render = True
    arm = body.armature
    notices: list[str] = []
    retarget.retarget_motion(motion, arm, "mimic", notices=notices)
    for n in notices:
        print(f"  notice: {n}", flush=True)
    out = []
    scene = bpy.context.scene
    for f in frames:
        scene.frame_set(f + 1)
        rv.set_camera(hands_camera(arm, azimuth_deg, width, height))
        scene.render.filepath = str(folder / f"{len(out):03d}.png")
        bpy.ops.render.render(write_still=True)
        out.append(folder / f"{len(out):03d}.png")
    return out


def save_sheet(img_bgr: np.ndarray, path: Path, colours: int) -> int:
    """Write a BGR image atomically: .png as a palette PNG of `colours` colours, .jpg/.jpeg as JPEG quality 85;
    returns the file's size in bytes."""
    from PIL import Image

    rgb = Image.fromarray(np.ascontiguousarray(img_bgr[..., ::-1]))
    jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    if not jpeg:
        rgb = rgb.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        rgb.save(fh, format="JPEG" if jpeg else "PNG", optimize=True, **({"quality": 85} if jpeg else {}))
    return path.stat().st_size


def label(tile: np.ndarray, lines: list[str]) -> np.ndarray:
    """Write `lines` at the tile's top left (white on a black outline)."""
    import cv2

    for k, text in enumerate(lines):
        org = (8, 24 + 22 * k)
        cv2.putText(tile, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(tile, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def main() -> int:
    import cv2

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", nargs="*", default=list(CLIPS))
    p.add_argument("--folder", type=Path, default=rhf.OUT, help="where the clips and their .npz truth are")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--tile", type=int, default=480, help="tile width in pixels")
    p.add_argument("--aspect", type=float, default=0.6, help="tile height / width")
    p.add_argument("--colours", type=int, default=40, help="palette colours of a PNG sheet")
    p.add_argument("--foot-lock", default=None, help="the pipeline's foot_lock (default: its own); the hands clips "
                   "never see the legs or the floor")
    a = p.parse_args()
    t0 = time.time()
    width, height = a.tile, int(round(a.tile * a.aspect))
    spec = rv.load_set()
    columns: list[list[np.ndarray]] = []  # per clip: its tiles, pairs (video, render) per held segment
    for name in a.clips:
        video = a.folder / f"{name}.mp4"
        with np.load(video.with_suffix(".npz")) as z:
            pose, blend, uv, azimuth = z["pose"], z["blend"], z["image_points"], float(z["azimuth_deg"])
        frames = held_frames(pose, blend)
        motion, took = mimic_motion(video, a.foot_lock)
        conf = motion.hand_confidence[frames].round(2).tolist()
        print(f"{video}: Mimic ran in {took:.0f} s; held frames {frames}; hand confidence (left, right) {conf}",
              flush=True)
        shots = rhf.video_frames(video, frames)
        with tempfile.TemporaryDirectory() as tmp:
            renders = [cv2.imread(str(r)) for r in render_clip(spec, motion, frames, azimuth, width, height,
                                                                Path(tmp))]
        tiles = []
        for f, shot, render in zip(frames, shots, renders):
            crop = cv2.resize(crop_box(shot, uv[f].reshape(-1, 2), a.aspect), (width, height),
                              interpolation=cv2.INTER_AREA)
            tiles.append(label(crop, [f"{name} frame {f}", f"L: {pose[f, 0]}  R: {pose[f, 1]}"]))
            tiles.append(label(render, ["Mimic, retargeted", f"L: {pose[f, 0]}  R: {pose[f, 1]}"]))
        columns.append(tiles)
        print(f"{name}: rendered, {time.time() - t0:.0f} s so far", flush=True)
    rows = max(len(c) for c in columns) // 2
    blank = np.full((height, width, 3), 255, dtype=np.uint8)
    grid = [np.concatenate([t for c in columns for t in (c[2 * r:2 * r + 2] + [blank, blank])[:2]], axis=1)
            for r in range(rows)]
    size = save_sheet(np.concatenate(grid, axis=0), a.out, a.colours)
    print(f"wrote {a.out} ({size / 1000:.0f} kB, {rows} rows) in {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
