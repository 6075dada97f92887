"""Benchmark: key a 10,000-frame, 25-bone motion onto an armature (target: under 2 s), next to Blender's own BVH
importer loading the same motion from a BVH file, measured in the same run.

Run: .venv/bin/python bench/keying.py [--frames 10000]
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

import bpy  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402

from addon.armature import create_armature  # noqa: E402
from addon.keying import key_motion  # noqa: E402

from core.bvh import write_bvh  # noqa: E402
from core.common.motionfile import Motion, load_motion, save_motion  # noqa: E402
from core.scipy_rotations import to_wxyz  # noqa: E402
from core.common.skeleton import Skeleton, humanoid  # noqa: E402

TARGET_S = 2.0
#: Four leaf joints added to the 21-joint humanoid to make 25 bones: (name, parent, offset metres).
EXTRA = (("LeftThumb", "LeftHand", (0.03, 0.0, 0.04)), ("RightThumb", "RightHand", (-0.03, 0.0, 0.04)),
         ("LeftEye", "Head", (0.03, 0.07, 0.08)), ("RightEye", "Head", (-0.03, 0.07, 0.08)))


def skeleton_25() -> Skeleton:
    base = humanoid()
    names = list(base.names) + [e[0] for e in EXTRA]
    parents = list(base.parents) + [base.index(e[1]) for e in EXTRA]
    offsets = np.vstack([base.offsets, [e[2] for e in EXTRA]])
    ends = np.vstack([base.end_sites, [[0.0, 0.0, 0.02]] * len(EXTRA)])
    return Skeleton(tuple(names), np.asarray(parents), offsets, ends)


def random_motion(frames: int, skeleton: Skeleton) -> Motion:
    """Smoothly varying random rotations (within +-60 degrees) and a walking root, 30 fps."""
    rng = np.random.default_rng(0)
    t = np.arange(frames)[:, None, None] / 30.0
    phase = rng.uniform(0, 2 * np.pi, size=(1, skeleton.num_joints, 3))
    rotvec = np.deg2rad(60.0) * np.sin(2 * np.pi * 0.5 * t + phase)
    rot = to_wxyz(Rotation.from_rotvec(rotvec.reshape(-1, 3))).reshape(frames, skeleton.num_joints, 4)
    root = np.stack([np.sin(t[:, 0, 0]), 0.95 + 0.02 * np.cos(4 * t[:, 0, 0]), 0.5 * t[:, 0, 0]], axis=1)
    return Motion(skeleton=skeleton, fps=30.0, rotations=rot, root_positions=root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000)
    args = parser.parse_args()
    skeleton = skeleton_25()
    motion = random_motion(args.frames, skeleton)
    with tempfile.TemporaryDirectory() as tmp:
        npz, bvh = Path(tmp) / "bench.npz", Path(tmp) / "bench.bvh"
        save_motion(motion, npz)
        write_bvh(bvh, motion)
        data = load_motion(npz)

        bpy.ops.wm.read_factory_settings(use_empty=True)
        scene = bpy.context.scene
        t0 = time.perf_counter()
        obj = create_armature(data, "bench", scene.collection)
        t1 = time.perf_counter()
        action = key_motion(obj, data, "bench")
        t2 = time.perf_counter()
        keys = sum(len(fc.keyframe_points) for fc in action.layers[0].strips[0].channelbags[0].fcurves)

        bpy.ops.wm.read_factory_settings(use_empty=True)
        t3 = time.perf_counter()
        bpy.ops.import_anim.bvh(filepath=str(bvh), rotate_mode="NATIVE", use_fps_scale=False)
        t4 = time.perf_counter()

    build_s, key_s, bvh_s = t1 - t0, t2 - t1, t4 - t3
    print(f"motion: {args.frames} frames x {skeleton.num_joints} bones = {keys} keys "
          f"({skeleton.num_joints} x 4 quaternion + 3 root location channels)")
    print(f"armature build:             {build_s:8.3f} s")
    print(f"Mimic bulk keying:          {key_s:8.3f} s   ({keys / key_s / 1e6:.2f} M keys/s)  "
          f"target < {TARGET_S:g} s: {'PASS' if key_s < TARGET_S else 'FAIL'}")
    print(f"Blender BVH importer:       {bvh_s:8.3f} s   (same motion as a BVH file)")
    print(f"ratio BVH importer / keying: {bvh_s / key_s:8.1f}x")


if __name__ == "__main__":
    main()
