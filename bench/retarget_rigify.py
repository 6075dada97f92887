"""Benchmark: retarget a motion onto a generated Rigify rig (FK controls under constrained helper bones, solved frame
by frame through Blender's evaluation) next to the same motion onto its Human metarig (no constraints: the
vectorised path), with the worst direction error of the generated rig's deform bones and of its feet heights.

Run: .venv/bin/python bench/retarget_rigify.py [--frames 1000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402  (first: it puts Blender's own modules such as addon_utils on the path)
import addon_utils  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402

from addon import retarget  # noqa: E402

from core.common.motionfile import Motion, load_motion, save_motion  # noqa: E402
from core.scipy_rotations import to_wxyz  # noqa: E402
from core.common.skeleton import humanoid  # noqa: E402

#: Canonical joint -> the generated rig's deform bone whose head marks it; aim: the joint each one points at.
DEFORM = {"Hips": "DEF-spine", "Spine": "DEF-spine.002", "Chest": "DEF-spine.003", "Neck": "DEF-spine.004",
          "Head": "DEF-spine.006"} | {
    f"{side}{joint}": f"DEF-{bone}.{side[0]}" for side in ("Left", "Right") for joint, bone in (
        ("UpperArm", "upper_arm"), ("LowerArm", "forearm"), ("Hand", "hand"), ("UpperLeg", "thigh"),
        ("LowerLeg", "shin"), ("Foot", "foot"))}
AIM = {"Hips": "Spine", "Spine": "Chest", "Chest": "Neck", "Neck": "Head"} | {
    f"{s}{a}": f"{s}{b}" for s in ("Left", "Right") for a, b in (
        ("UpperArm", "LowerArm"), ("LowerArm", "Hand"), ("UpperLeg", "LowerLeg"), ("LowerLeg", "Foot"))}


def walk(frames: int) -> Motion:
    """A walk-like motion (swinging limbs within +-35 degrees, bending knees and elbows, a turning torso), 30 fps."""
    sk = humanoid()
    t = np.arange(frames) / 30.0 * 2.0 * np.pi
    rot = np.zeros((frames, sk.num_joints, 4))
    rot[..., 0] = 1.0
    zero = np.zeros(frames)
    swing = 0.6 * np.sin(t)
    angles = {"Hips": (0.05 * np.sin(2 * t), 0.2 * np.sin(t), zero), "Spine": (0.1 + zero, -0.2 * np.sin(t), zero),
              "Chest": (zero, -0.1 * np.sin(t), 0.05 * np.cos(t)), "Head": (0.3 * np.sin(2 * t), 0.2 * np.cos(t), zero),
              "LeftUpperLeg": (-swing, zero, 0.05 + zero), "RightUpperLeg": (swing, zero, -0.05 + zero),
              "LeftLowerLeg": (0.6 * np.clip(np.sin(t + 1), 0, None), zero, zero),
              "RightLowerLeg": (0.6 * np.clip(-np.sin(t + 1), 0, None), zero, zero),
              "LeftUpperArm": (zero, 0.6 * np.sin(t), -1.1 + 0.2 * np.cos(t)),
              "RightUpperArm": (0.3 * np.sin(t), -0.6 * np.sin(t), 1.1 + zero),
              "LeftLowerArm": (zero, 0.8 + 0.4 * np.sin(t), zero),
              "RightLowerArm": (0.3 * np.cos(t), -0.9 + zero, zero)}
    for name, (x, y, z) in angles.items():
        rot[:, sk.index(name)] = to_wxyz(Rotation.from_euler("xyz", np.stack([x, y, z], 1)))
    root = np.stack([0.1 * np.sin(t), 0.9 + 0.03 * np.cos(2 * t), np.linspace(0.0, frames / 30.0, frames)], 1)
    return Motion(skeleton=sk, fps=30.0, rotations=rot, root_positions=root)


def worst_errors(rig: bpy.types.Object, motion: Motion, frames: list[int]) -> tuple[float, float]:
    """Worst angle (degrees) between the deform bones' joint-to-joint directions and the source's, and worst
    height error (metres) of the lower foot against the source's, scaled by the leg-length ratio."""
    sk = motion.skeleton
    pos = sk.forward_kinematics(motion.rotations, motion.root_positions)
    src = np.stack([pos[..., 0], -pos[..., 2], pos[..., 1]], axis=-1)  # Mimic -> Blender axes
    src_rest = sk.rest_positions()
    src_rest = np.stack([src_rest[:, 0], -src_rest[:, 2], src_rest[:, 1]], axis=-1)
    mw = rig.matrix_world
    rest = {j: np.array(mw @ rig.data.bones[b].head_local) for j, b in DEFORM.items()}
    leg = sum(np.linalg.norm(rest[f"{s}LowerLeg"] - rest[f"{s}UpperLeg"]) + np.linalg.norm(rest[f"{s}Foot"] -
              rest[f"{s}LowerLeg"]) for s in ("Left", "Right"))
    idx = {j: sk.index(j) for j in DEFORM}
    src_leg = sum(np.linalg.norm(src_rest[idx[f"{s}LowerLeg"]] - src_rest[idx[f"{s}UpperLeg"]]) +
                  np.linalg.norm(src_rest[idx[f"{s}Foot"]] - src_rest[idx[f"{s}LowerLeg"]]) for s in ("Left", "Right"))
    scale = leg / src_leg
    angle = foot = 0.0
    for f in frames:
        bpy.context.scene.frame_set(1 + f)
        head = {j: np.array(mw @ rig.pose.bones[b].head) for j, b in DEFORM.items()}
        for j, k in AIM.items():
            a, b = head[k] - head[j], src[f, idx[k]] - src[f, idx[j]]
            cos = np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b)
            angle = max(angle, float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))))
        lift = {s: src[f, idx[f"{s}Foot"], 2] - src_rest[idx[f"{s}Foot"], 2] for s in ("Left", "Right")}
        s = min(lift, key=lift.get)
        foot = max(foot, abs(head[f"{s}Foot"][2] - rest[f"{s}Foot"][2] - scale * lift[s]))
    return angle, foot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    args = parser.parse_args()
    motion = walk(args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        save_motion(motion, Path(tmp) / "walk.npz")
        data = load_motion(Path(tmp) / "walk.npz")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable("rigify", default_set=True)
    bpy.ops.object.armature_human_metarig_add()
    t0 = time.perf_counter()
    bpy.ops.pose.rigify_generate()
    t1 = time.perf_counter()
    rig, metarig = bpy.data.objects["rig"], bpy.data.objects["metarig"]
    t2 = time.perf_counter()
    retarget.retarget_motion(data, rig, "walk")
    t3 = time.perf_counter()
    retarget.retarget_motion(data, metarig, "walk_metarig")
    t4 = time.perf_counter()
    angle, foot = worst_errors(rig, motion, list(range(0, args.frames, max(1, args.frames // 50))))
    addon_utils.disable("rigify", default_set=True)

    gen_s, rig_s, meta_s = t1 - t0, t3 - t2, t4 - t3
    print(f"motion: {args.frames} frames; generated rig: {len(rig.data.bones)} bones")
    print(f"Rigify generate:                  {gen_s:8.3f} s")
    print(f"retarget onto the generated rig:  {rig_s:8.3f} s   ({1000 * rig_s / args.frames:.2f} ms/frame, "
          f"frame by frame through Blender's evaluation)")
    print(f"retarget onto its metarig:        {meta_s:8.3f} s   (vectorised, no constraints)")
    print(f"ratio generated rig / metarig:    {rig_s / meta_s:8.1f}x")
    print(f"deform bones, worst direction error: {angle:.3f} deg; lower foot height error: {1000 * foot:.2f} mm")


if __name__ == "__main__":
    main()
