"""Train (and evaluate) the learned lifter on any folder of BVH motion capture.

    python -m training.train --data ../shared/data/mocap --out core/weights/lifter_tcn.pt
    python -m training.train --data ../shared/data/mocap --out core/weights/lifter_tcn.pt --eval-only

Every mocap file becomes the lifter's 23 landmarks (training.mocap); each training chunk gets bone-length scaling,
mirroring, playback-speed changes and limbs turned away from the recorded pose, and is seen through a random virtual
phone camera (height, distance, pitch, roll, yaw around the subject, focal length, portrait or landscape). Its 2D
projection gets detector-like errors (jitter, slow drift, occluded limbs with low visibility, dropped joints and
frames, left/right leg swaps), and most chunks also get a stand-in for MediaPipe's per-frame 3D with that network's
kinds of error (Synth.hint). Targets are in camera axes, as in VideoPose3D. Whole files are held out for validation
(a style, plus a fixed 5% of files by name hash); the evaluation uses cameras drawn from a separate seed, with clean
2D, noisy 2D, and noisy 2D with the 3D stand-in.

Training is resumable: every few minutes the model, the optimiser, the step, the time spent and the random
generators go to a checkpoint (<cache>/checkpoints/<out name>.ckpt); `--resume` continues from it (the learning-rate
schedule runs over the whole budget, whatever the runs: `--minutes 48 --session-minutes 16 --resume` three times
trains as one 48-minute run would, and a run killed part-way loses only the minutes since its last checkpoint). `--init W`
starts from trained weights W instead of random ones (fine-tuning). `--balance A` draws chunks with each frame's
chance proportional to (frames of its motion kind)^-A (`motion_kind`): 0 = every frame alike; 0.5 lets the rare kinds
(bows, kicks, dances: under 1 % of the frames) be seen about four times as often.

    python -m training.train --data ../shared/data/mocap --out W.pt --minutes 48 --resume   # run it again to go on
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.common.atomic import atomic_path
from core.common.errors import WeightsMissing
from core.lift.layout import NECK, PELVIS, Layout, lifter_layout
from core.lift.model import TemporalModel, add_centred, load_weights, save_weights
from core.lift.normalize import INPUT_CHANNELS
from core.lift.tcn import infer
from training.metrics import mpjpe, pa_mpjpe
from training.mocap import MocapSet, load_mocap
from training.rendered import RenderedSampler, load_rendered

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VAL_STYLES = ("youthful", "proud")


@dataclass(frozen=True)
class Augment:
    """Ranges of the virtual cameras and augmentations. Lengths in metres, angles in radians; focal is the focal
    length divided by the image's long side (phones' main cameras and webcams: about 0.6 to 1.0). limb_turn_p: the
    chance that each arm, each leg and the upper body is turned away from the mocap pose about its shoulder, hip or
    the pelvis by up to arm_turn, leg_turn, trunk_turn, to reach poses the mocap's gaits and gestures lack.
    hint_*: how a chunk's stand-in for MediaPipe's per-frame 3D is made from the true pose (see Synth.hint): present
    with probability hint_p, depth scaled per clip, slowly drifting and white errors (m, scaled towards the
    extremities), body size off by up to ±hint_scale, turned by up to hint_turn rad, a limb's depth mirrored for a
    while with probability hint_flip_p."""

    speed: tuple[float, float] = (0.7, 1.4)
    global_scale: float = 0.08
    bone_scale: float = 0.06
    mirror_p: float = 0.5
    distance: tuple[float, float] = (2.0, 7.0)
    height: tuple[float, float] = (0.3, 2.5)
    focal: tuple[float, float] = (0.6, 1.1)
    aspect: tuple[float, float] = (1.33, 1.78)
    portrait_p: float = 0.5
    yaw_jitter: float = 0.15
    pitch_jitter: float = 0.10
    roll: float = 0.06
    centre_jitter: float = 0.03
    min_depth: float = 1.0
    clean_p: float = 0.15
    noise: tuple[float, float] = (0.003, 0.02)
    drift: tuple[float, float] = (0.0, 0.02)
    occlude_p: float = 0.4
    drop_p: float = 0.01
    frame_drop_p: float = 0.1
    swap_p: float = 0.05
    limb_turn_p: float = 0.35
    arm_turn: float = 1.2
    leg_turn: float = 0.7
    trunk_turn: float = 0.4
    hint_p: float = 0.7
    hint_depth_gain: tuple[float, float] = (0.6, 1.1)
    hint_slow: tuple[float, float] = (0.02, 0.08)
    hint_white: tuple[float, float] = (0.005, 0.02)
    hint_scale: float = 0.12
    hint_turn: float = 0.06
    hint_flip_p: float = 0.3


# Detector error grows towards the extremities; MediaPipe's hips are notoriously loose.
NOISE_SCALE = {"nose": 0.8, "ear": 0.9, "shoulder": 1.0, "elbow": 1.2, "wrist": 1.3, "pinky": 1.8, "index": 1.8,
               "hip": 1.5, "knee": 1.2, "ankle": 1.3, "heel": 1.5, "foot_index": 1.5}
LIMBS = {"left_arm": ("left_elbow", "left_wrist", "left_pinky", "left_index"),
         "right_arm": ("right_elbow", "right_wrist", "right_pinky", "right_index"),
         "left_leg": ("left_knee", "left_ankle", "left_heel", "left_foot_index"),
         "right_leg": ("right_knee", "right_ankle", "right_heel", "right_foot_index")}


def _part(name: str) -> str:
    return name.split("_", 1)[1] if name.startswith(("left_", "right_")) else name


@dataclass
class TrainConfig:
    data: Path
    out: Path
    cache: Path = ROOT / ".cache" / "mocap"
    minutes: float = 48.0
    max_steps: int = 0
    batch: int = 24
    chunk: int = 64
    lr: float = 3e-3
    lr_end: float = 5e-5
    filter_widths: tuple[int, ...] = (3, 3, 3, 3)
    channels: int = 256
    dropout: float = 0.25
    traj_weight: float = 1.0
    bone_weight: float = 1.0
    val_styles: tuple[str, ...] = DEFAULT_VAL_STYLES
    seed: int = 0
    threads: int = 2
    log_every_s: float = 60.0
    checkpoint_every_s: float = 300.0
    eval_cameras: int = 2
    augment: Augment = field(default_factory=Augment)
    balance: float = 0.0
    init: Path | None = None
    rendered: Path | None = None
    rendered_batch: int = 12
    resume: bool = False
    session_minutes: float = 0.0
    session_steps: int = 0

    @property
    def checkpoint(self) -> Path:
        """Where the resumable state of a run writing `out` lives."""
        return self.cache / "checkpoints" / f"{Path(self.out).stem}.ckpt"


def split_files(names: list[str], val_styles: tuple[str, ...] = DEFAULT_VAL_STYLES) -> tuple[list[int], list[int]]:
    """Train and validation file indices: a file is held out when its name has a held-out style as an underscore-
    separated token, or when the CRC-32 of its name falls in a fixed 5% bucket. Frames of a file never straddle."""
    train, val = [], []
    for i, n in enumerate(names):
        tokens = Path(n).stem.split("_")
        held = any(s in tokens for s in val_styles) or zlib.crc32(Path(n).stem.encode()) % 20 == 0
        (val if held else train).append(i)
    return train, val


class Synth:
    """Turns world keypoints (B, T, K, 3) into lifter inputs and targets through random virtual cameras."""

    def __init__(self, layout: Layout, aug: Augment) -> None:
        self.layout = layout
        self.aug = aug
        names = layout.names
        parts = sorted({_part(n) for n in names})
        self.part_of = torch.tensor([parts.index(_part(n)) for n in names])
        self.num_parts = len(parts)
        self.noise_scale = torch.tensor([NOISE_SCALE[_part(n)] for n in names], dtype=torch.float32)
        self.limbs = [torch.tensor([names.index(j) for j in v]) for v in LIMBS.values()]
        legs = LIMBS["left_leg"] + LIMBS["right_leg"]
        self.legs = torch.tensor([names.index(j) for j in legs])
        self.legs_swapped = torch.tensor([int(layout.flip[names.index(j)]) for j in legs])
        self.flip = torch.from_numpy(layout.flip)
        self.hips = list(layout.hips)
        self.shoulders = list(layout.shoulders)
        # The keypoint each limb of LIMBS hangs from (shoulder or hip), for turning it or mirroring its depth.
        self.limb_pivots = [names.index(limb.replace("arm", "shoulder").replace("leg", "hip")) for limb in LIMBS]
        self.upper = torch.tensor([i for i, n in enumerate(names) if not n.endswith(("hip",) + LIMBS["left_leg"]
                                                                                          + LIMBS["right_leg"])])

    def _u(self, shape: tuple[int, ...], lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape, generator=g)

    def scale_bones(self, w: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Scale each body part's bone (and the whole body) by random factors along the layout's tree."""
        b = w.shape[0]
        a = self.aug
        k_part = self._u((b, self.num_parts), 1 - a.bone_scale, 1 + a.bone_scale, g)
        k_all = self._u((b, 1, 1, 1), 1 - a.global_scale, 1 + a.global_scale, g)
        pelvis = w[:, :, self.hips].mean(2)
        neck = w[:, :, self.shoulders].mean(2)
        k_spine = self._u((b, 1, 1), 1 - a.bone_scale, 1 + a.bone_scale, g)
        new_neck = pelvis + k_spine * (neck - pelvis)
        out = torch.empty_like(w)
        for k, p in enumerate(self.layout.parents.tolist()):
            src = pelvis if p == PELVIS else neck if p == NECK else w[:, :, p]
            dst = pelvis if p == PELVIS else new_neck if p == NECK else out[:, :, p]
            out[:, :, k] = dst + k_part[:, self.part_of[k], None, None] * (w[:, :, k] - src)
        return pelvis[:, :, None] + k_all * (out - pelvis[:, :, None])

    def vary_pose(self, w: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Turn arms (about the shoulder), legs (about the hip) and the upper body (about the pelvis) of some chunks
        by rotations that drift linearly over the chunk, each with probability limb_turn_p; bone lengths are kept."""
        a = self.aug
        b, t = w.shape[:2]
        out = w.clone()
        ramp = torch.linspace(0.0, 1.0, t)[None, :, None]

        def turn(idx: torch.Tensor, pivot: torch.Tensor, max_angle: float) -> None:
            r0, r1 = (_random_rotvec(b, max_angle, g) for _ in range(2))
            on = (torch.rand(b, generator=g) < a.limb_turn_p)[:, None, None]
            rot = _rotvec_matrix((r0[:, None] + (r1 - r0)[:, None] * ramp) * on)
            out[:, :, idx] = pivot[:, :, None] + torch.einsum("btij,btkj->btki", rot, out[:, :, idx] - pivot[:, :, None])

        for limb, pivot, chain in zip(LIMBS, self.limb_pivots, self.limbs):
            turn(chain, out[:, :, pivot].clone(), a.arm_turn if limb.endswith("arm") else a.leg_turn)
        turn(self.upper, out[:, :, self.hips].mean(2), a.trunk_turn)
        return out

    def hint(self, pose: torch.Tensor, traj: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """A stand-in for MediaPipe's world landmarks (B, T, K, 3) from the true pelvis-relative pose in camera axes
        (B, T, K, 3) and the pelvis (B, T, 3). MediaPipe judges the body from a crop around it, as if it stood on the
        optical axis, so the pose is first turned from the pelvis's viewing ray to the axis; then its errors as
        measured against multi-view footage: depth guessed worse than the image plane (scaled, drifting, a limb's
        depth sometimes mirrored), an average body size, frame-to-frame jitter."""
        a = self.aug
        b, t, k, _ = pose.shape
        ray = traj / traj.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        axis = torch.cross(torch.tensor([0.0, 0.0, -1.0]).expand_as(ray), ray, dim=-1)
        angle = torch.atan2(axis.norm(dim=-1, keepdim=True), -ray[..., 2:])
        turn = _rotvec_matrix(axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-9) * angle)
        h = torch.einsum("btji,btkj->btki", turn, pose)
        if a.hint_flip_p > 0:
            frames = torch.arange(t)[None]
            start = torch.randint(0, t, (b,), generator=g)
            length = torch.randint(5, max(6, t), (b,), generator=g)
            window = (frames >= start[:, None]) & (frames < (start + length)[:, None])
            window &= (torch.rand(b, generator=g) < a.hint_flip_p)[:, None]
            which = torch.randint(0, len(self.limbs), (b,), generator=g)
            for i, (pivot, limb) in enumerate(zip(self.limb_pivots, self.limbs)):
                on = (window & (which == i)[:, None])[..., None]
                z = h[:, :, limb, 2]
                h[:, :, limb, 2] = torch.where(on, 2 * h[:, :, pivot, 2][..., None] - z, z)
        h[..., 2] = h[..., 2] * self._u((b, 1, 1), *a.hint_depth_gain, g)
        h = h @ _rotvec_matrix(_random_rotvec(b, a.hint_turn, g))[:, None]
        h = h * self._u((b, 1, 1, 1), 1 - a.hint_scale, 1 + a.hint_scale, g)
        slow = _slow_noise(b, t, k, 3, g) * torch.tensor([0.5, 0.5, 1.0]) * self._u((b, 1, 1, 1), *a.hint_slow, g)
        white = torch.randn(b, t, k, 3, generator=g) * self._u((b, 1, 1, 1), *a.hint_white, g)
        h = h + (slow + white) * self.noise_scale[:, None]
        return h - h[:, :, self.hips].mean(2, keepdim=True)

    def __call__(self, world: torch.Tensor, g: torch.Generator, augment: bool = True,
                 noisy: bool = True, hint: bool | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """world (B, T, K, 3) metres Y up → inputs (B, T, K, INPUT_CHANNELS) u, v, visibility and the 3D hint (with
        probability hint_p, or always / never when `hint` says so); pose (B, T, K, 3) relative to the
        pelvis and trajectory (B, T, 3), both in camera axes (X image right, Y image up, Z towards the camera), as
        VideoPose3D predicts: the camera's pitch and roll are visible in 2D only as perspective, so a gravity-aligned
        target would make the network guess them; the pipeline levels the body afterwards (core.contacts)."""
        a = self.aug
        b, t, k, _ = world.shape
        w = world
        if augment:
            w = self.vary_pose(self.scale_bones(w, g), g)
            mirror = torch.rand(b, generator=g) < a.mirror_p
            mirrored = w[:, :, self.flip] * torch.tensor([-1.0, 1.0, 1.0])
            w = torch.where(mirror[:, None, None, None], mirrored, w)
        pel = w[:, :, self.hips].mean(2)
        mid = pel[:, t // 2]
        w = w - torch.stack([mid[:, 0], torch.zeros(b), mid[:, 2]], -1)[:, None, None]
        phi = self._u((b,), 0.0, 2 * math.pi, g)
        height = self._u((b,), *a.height, g)
        dist = self._u((b,), *a.distance, g)
        psi = torch.randn(b, generator=g) * a.yaw_jitter
        cos, sin = torch.cos(phi)[:, None, None], torch.sin(phi)[:, None, None]
        x, y, z = w[..., 0], w[..., 1], w[..., 2]
        x, z = cos * x + sin * z, -sin * x + cos * z
        y = y - height[:, None, None]
        z = z - dist[:, None, None]
        cp, sp = torch.cos(psi)[:, None, None], torch.sin(psi)[:, None, None]
        x, z = cp * x - sp * z, sp * x + cp * z
        deficit = torch.relu(a.min_depth - (-z).amin(dim=(1, 2)))
        z = z - deficit[:, None, None]
        ph = torch.stack([x, y, z], -1)  # heading frame, camera at the origin
        pel_h = ph[:, :, self.hips].mean(2)
        theta = torch.atan2(pel_h[:, t // 2, 1], -pel_h[:, t // 2, 2]) + torch.randn(b, generator=g) * a.pitch_jitter
        rho = torch.randn(b, generator=g) * a.roll
        ct, st = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
        y1, z1 = ct * y + st * z, -st * y + ct * z  # R_x(theta)^T
        cr, sr = torch.cos(rho)[:, None, None], torch.sin(rho)[:, None, None]
        x1, y1 = cr * x + sr * y1, -sr * x + cr * y1  # R_z(rho)^T
        depth = (-z1).clamp_min(0.1)
        focal = torch.exp(self._u((b,), math.log(a.focal[0]), math.log(a.focal[1]), g))
        aspect = self._u((b,), *a.aspect, g)
        portrait = torch.rand(b, generator=g) < a.portrait_p
        f = 2.0 * focal * torch.where(portrait, aspect, torch.ones(b))
        half_v = torch.where(portrait, aspect, 1.0 / aspect)
        centre = torch.randn(b, 2, generator=g) * a.centre_jitter
        u = f[:, None, None] * x1 / depth + centre[:, None, None, 0]
        v = -f[:, None, None] * y1 / depth + centre[:, None, None, 1]
        cam = torch.stack([x1, y1, z1], -1)
        pel_c = cam[:, :, self.hips].mean(2)
        vis = torch.ones(b, t, k)
        if noisy:
            u, v, vis = self._detector_errors(u, v, f[:, None] / (-pel_c[..., 2]).clamp_min(0.5), half_v, g)
        inputs = torch.stack([u, v, vis], -1) * (vis > 0)[..., None]
        pose = cam - pel_c[:, :, None]
        on = torch.rand(b, generator=g) < a.hint_p if hint is None else torch.full((b,), hint)
        on = on[:, None] & (vis > 0).any(-1)  # no person detected, no 3D guess either
        hinted = torch.cat([self.hint(pose, pel_c, g), torch.ones(b, t, k, 1)], -1) * on[..., None, None]
        return torch.cat([inputs, hinted], -1), pose, pel_c

    def _detector_errors(self, u: torch.Tensor, v: torch.Tensor, per_m: torch.Tensor, half_v: torch.Tensor,
                         g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Jitter, drift, occlusions, drops and swaps like a real detector's; per_m (B, T) = 1 m at the pelvis in
        normalised units. Returns u, v, visibility (0 = dropped)."""
        a = self.aug
        b, t, k = u.shape
        scale = per_m[..., None] * self.noise_scale
        sigma = self._u((b, 1, 1, 1), *a.noise, g)
        drift_sigma = self._u((b, 1, 1, 1), *a.drift, g)
        white = torch.randn(b, t, k, 2, generator=g) * sigma
        slow = _slow_noise(b, t, k, 2, g)
        err = (white + slow * drift_sigma) * scale[..., None]
        vis = self._u((b, t, k), 0.8, 1.0, g)
        # Occluded limb over a time window: low visibility, large error, sometimes dropped.
        occl = torch.zeros(b, t, k, dtype=torch.bool)
        has = torch.rand(b, generator=g) < a.occlude_p
        which = torch.randint(0, len(self.limbs), (b,), generator=g)
        start = torch.randint(0, t, (b,), generator=g)
        length = torch.randint(5, max(6, t), (b,), generator=g)
        frames = torch.arange(t)[None]
        window = (frames >= start[:, None]) & (frames < (start + length)[:, None]) & has[:, None]
        for i, limb in enumerate(self.limbs):
            occl[:, :, limb] |= (window & (which == i)[:, None])[..., None]
        big = self._u((b, 1, 1, 1), 0.03, 0.1, g) * scale[..., None] * slow.roll(1, dims=2)
        err = torch.where(occl[..., None], err + big, err)
        vis = torch.where(occl, self._u((b, t, k), 0.05, 0.5, g), vis)
        dropped = occl & (torch.rand(b, 1, 1, generator=g) < 0.3)
        dropped |= torch.rand(b, t, k, generator=g) < a.drop_p
        fstart = torch.randint(0, t, (b,), generator=g)
        flen = torch.randint(1, 9, (b,), generator=g)
        fdrop = (frames >= fstart[:, None]) & (frames < (fstart + flen)[:, None])
        dropped |= (fdrop & (torch.rand(b, generator=g) < a.frame_drop_p)[:, None])[..., None]
        u = u + err[..., 0]
        v = v + err[..., 1]
        # Left/right leg swap over a window, a classic failure when legs cross.
        swap = (window.roll(t // 2, dims=1) & (torch.rand(b, generator=g) < a.swap_p / max(a.occlude_p, 1e-6))[:, None])
        su, sv = u.clone(), v.clone()
        su[:, :, self.legs], sv[:, :, self.legs] = u[:, :, self.legs_swapped], v[:, :, self.legs_swapped]
        u = torch.where(swap[..., None], su, u)
        v = torch.where(swap[..., None], sv, v)
        outside = (u.abs() > 1.0) | (v.abs() > half_v[:, None, None])
        vis = torch.where(outside, vis * 0.1, vis)
        clean = torch.rand(b, generator=g) < a.clean_p
        vis = torch.where(clean[:, None, None], torch.ones_like(vis), vis)
        vis = torch.where(dropped & ~clean[:, None, None], torch.zeros_like(vis), vis)
        u = torch.where(clean[:, None, None], u - err[..., 0], u)
        v = torch.where(clean[:, None, None], v - err[..., 1], v)
        return u, v, vis


def _slow_noise(b: int, t: int, k: int, d: int, g: torch.Generator) -> torch.Tensor:
    """(b, t, k, d) noise that drifts over ~15 frames (a moving average of white noise), unit standard deviation."""
    white = torch.randn(b, k * d, t + 14, generator=g)
    return torch.nn.functional.avg_pool1d(white, 15, stride=1).reshape(b, k, d, t).permute(0, 3, 1, 2) * 3.87


def _random_rotvec(n: int, max_angle: float, g: torch.Generator) -> torch.Tensor:
    """(n, 3) rotation vectors: uniform random axis, angle uniform in [0, max_angle] radians."""
    axis = torch.randn(n, 3, generator=g)
    axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    return axis * torch.rand(n, 1, generator=g) * max_angle


def _rotvec_matrix(r: torch.Tensor) -> torch.Tensor:
    """Rotation vectors (..., 3) radians → matrices (..., 3, 3) by Rodrigues' formula. Written here rather than with
    scipy because it runs on torch batches inside the training loop."""
    angle = r.norm(dim=-1, keepdim=True)
    k = r / angle.clamp_min(1e-9)
    zero = torch.zeros_like(k[..., 0])
    skew = torch.stack([zero, -k[..., 2], k[..., 1], k[..., 2], zero, -k[..., 0], -k[..., 1], k[..., 0], zero],
                       -1).reshape(*k.shape[:-1], 3, 3)
    s, c = torch.sin(angle)[..., None], torch.cos(angle)[..., None]
    return torch.eye(3).expand_as(skew) + s * skew + (1.0 - c) * skew @ skew


def motion_kind(name: str) -> str:
    """A mocap file's kind of motion from its name: the first underscore-separated token that is not a dataset tag
    (dataset-…) or a number ("dataset-1_bow_proud_001.bvh" -> "bow", "131_01.bvh" -> "131")."""
    tokens = [t for t in Path(name).stem.split("_") if t]
    kept = [t for t in tokens if not t.startswith("dataset") and not t.isdigit()]
    return (kept or tokens or [name])[0]


def balance_weights(data: MocapSet, power: float) -> np.ndarray:
    """(files,) chance of drawing a frame of each file, proportional to (frames of its motion kind)^-power."""
    lengths = np.diff(data.starts).astype(np.float64)
    kinds = [motion_kind(n) for n in data.names]
    total: dict[str, float] = {}
    for k, n in zip(kinds, lengths):
        total[k] = total.get(k, 0.0) + n
    return np.array([total[k] ** -power for k in kinds])


class ChunkSampler:
    """Random chunks of `length` frames from a MocapSet at random playback speeds, edge-clamped within a file; with
    `file_weights` (files,) each frame's chance is its file's weight (else every frame alike)."""

    def __init__(self, data: MocapSet, length: int, speed: tuple[float, float], seed: int,
                 file_weights: np.ndarray | None = None) -> None:
        self.kp = torch.from_numpy(np.ascontiguousarray(data.keypoints, dtype=np.float32))
        self.starts = data.starts
        self.length = length
        self.speed = speed
        self.rng = np.random.default_rng(seed)
        lengths = np.diff(self.starts).astype(np.float64)
        mass = lengths * (1.0 if file_weights is None else np.asarray(file_weights, dtype=np.float64))
        self.file_p = mass / mass.sum()

    def __call__(self, batch: int) -> torch.Tensor:
        f = self.rng.choice(len(self.file_p), batch, p=self.file_p)
        lo, hi = self.starts[f], self.starts[f + 1] - 1
        centre = lo + self.rng.integers(0, hi - lo + 1)
        speed = np.exp(self.rng.uniform(np.log(self.speed[0]), np.log(self.speed[1]), batch))
        pos = centre[:, None] + speed[:, None] * (np.arange(self.length) - self.length // 2)[None]
        pos = np.clip(pos, lo[:, None], hi[:, None])
        i0 = np.floor(pos).astype(np.int64)
        i1 = np.minimum(i0 + 1, hi[:, None])
        w = torch.from_numpy((pos - i0).astype(np.float32))[..., None, None]
        return self.kp[torch.from_numpy(i0)] * (1 - w) + self.kp[torch.from_numpy(i1)] * w


def evaluate(model: TemporalModel, data: MocapSet, layout: Layout, aug: Augment, cameras: int = 2,
             seed: int = 1234, max_files: int = 0) -> dict[str, Any]:
    """MPJPE / PA-MPJPE (mm) of whole held-out files seen through `cameras` held-out cameras each (drawn from
    `seed`, never used in training), from 2D alone (clean, and with detector-like errors) and from noisy 2D with
    the stand-in for MediaPipe's 3D (Synth.hint); plus the pelvis trajectory's
    error (mm, and relative to its depth) and the acceleration error of the pelvis-relative pose (mm/frame²)."""
    synth = Synth(layout, aug)
    results: dict[str, Any] = {}
    files = range(len(data.names)) if not max_files else range(min(max_files, len(data.names)))
    for key, noisy, hint in (("clean", False, False), ("noisy", True, False), ("noisy_hint", True, True)):
        g = torch.Generator().manual_seed(seed)
        errs, pa, traj, rel_traj, accel, frames, accel_frames = [], [], [], [], [], 0, 0
        for i in files:
            clip = torch.from_numpy(data.clip(i)).float()[None].expand(cameras, -1, -1, -1)
            inputs, pose, tr = synth(clip, g, augment=False, noisy=noisy, hint=hint)
            pred, pred_tr = infer(model, inputs.numpy(), layout)
            pose_np, tr_np = pose.numpy(), tr.numpy()
            n = pose_np.shape[0] * pose_np.shape[1]
            errs.append(mpjpe(pred, pose_np) * n)
            pa.append(pa_mpjpe(pred.reshape(n, -1, 3), pose_np.reshape(n, -1, 3)) * n)
            d = np.linalg.norm(pred_tr - tr_np, axis=-1)
            traj.append(float(d.sum()))
            rel_traj.append(float((d / np.abs(tr_np[..., 2])).sum()))
            if pred.shape[1] >= 3:
                acc_err = np.diff(pred, 2, axis=1) - np.diff(pose_np, 2, axis=1)
                accel.append(float(np.linalg.norm(acc_err, axis=-1).mean(-1).sum()))
                accel_frames += acc_err.shape[0] * acc_err.shape[1]
            frames += n
        results[key] = {"mpjpe_mm": 1000 * sum(errs) / frames, "pa_mpjpe_mm": 1000 * sum(pa) / frames,
                        "trajectory_mm": 1000 * sum(traj) / frames, "trajectory_rel": sum(rel_traj) / frames,
                        "accel_error_mm_per_frame2": 1000 * sum(accel) / max(accel_frames, 1), "frames": frames}
    results["files"] = len(files)
    results["cameras_per_file"] = cameras
    return results


def train(cfg: TrainConfig, log: Any = print) -> dict[str, Any]:
    """Train a lifter under a wall-clock budget (cfg.minutes) or step count; save checkpoints and the final weights
    to cfg.out with evaluation figures in the weights' meta and in <out>.eval.json."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)  # before the minutes of training, not after
    layout = lifter_layout()
    t0 = time.monotonic()
    data = load_mocap(cfg.data, cfg.cache)
    train_idx, val_idx = split_files(data.names, cfg.val_styles)
    trainset, valset = data.subset(train_idx), data.subset(val_idx)
    log(f"mocap: {len(data.names)} files, {len(data.keypoints)} frames; train {len(train_idx)} files "
        f"{len(trainset.keypoints)} frames, validation {len(val_idx)} files {len(valset.keypoints)} frames "
        f"({time.monotonic() - t0:.0f} s)")
    model = TemporalModel(layout.num_keypoints, INPUT_CHANNELS + 2, cfg.filter_widths, cfg.channels, cfg.dropout)
    rf = model.receptive_field()
    if cfg.init is not None:
        model.load_state_dict(load_weights(cfg.init)[0].state_dict())
        log(f"starting from {cfg.init}")
    weights = balance_weights(trainset, cfg.balance) if cfg.balance > 0 else None
    sampler = ChunkSampler(trainset, cfg.chunk + rf - 1, cfg.augment.speed, cfg.seed, weights)
    synth = Synth(layout, cfg.augment)
    rsampler = None
    if cfg.rendered is not None:
        rendered = load_rendered(cfg.rendered, layout, log=log)
        rsampler = RenderedSampler(rendered, layout, cfg.chunk + rf - 1, cfg.seed + 1)
        log(f"rendered: {len(rendered.names)} clips, {rendered.frames} frames of MediaPipe's real outputs; "
            f"{cfg.rendered_batch} chunks a step beside {cfg.batch} synthetic")
    g = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, amsgrad=True)
    log(f"model: {sum(p.numel() for p in model.parameters())} parameters, receptive field {rf} frames")
    budget = cfg.minutes * 60.0
    step, seen, losses, spent = 0, 0, [], 0.0
    if cfg.resume and cfg.checkpoint.is_file():
        step, seen, spent = load_checkpoint(cfg.checkpoint, model, opt, sampler, g)
        log(f"resumed {cfg.checkpoint}: step {step}, {spent / 60:.1f} of {cfg.minutes:.0f} min spent")
        if rsampler is not None:  # its draws go on from a seed of the step (not bit-identical to one long run)
            rsampler.rng = np.random.default_rng(cfg.seed + 1 + step)
    start = last_log = last_ckpt = time.monotonic() - spent
    meta = {"keypoints": list(layout.names), "fps": data.fps, "train_files": len(train_idx),
            "val_files": len(val_idx), "train_frames": int(len(trainset.keypoints)), "config": _jsonable(cfg)}
    if rsampler is not None:
        meta["rendered"] = {"clips": len(rsampler.data.names), "frames": rsampler.data.frames}
    model.train()
    session_start, session_step = time.monotonic(), step
    while True:
        elapsed = time.monotonic() - start
        frac = min(1.0, elapsed / budget) if budget > 0 else step / max(cfg.max_steps, 1)
        if (budget > 0 and elapsed >= budget) or (cfg.max_steps and step >= cfg.max_steps):
            break
        if ((cfg.session_minutes and time.monotonic() - session_start >= 60.0 * cfg.session_minutes)
                or (cfg.session_steps and step - session_step >= cfg.session_steps)):
            save_weights(cfg.out, model, {**meta, "steps": step, "checkpoint": True})
            save_checkpoint(cfg.checkpoint, model, opt, sampler, g, step, seen, elapsed)
            log(f"paused at step {step}, {elapsed / 60:.1f} of {cfg.minutes:.0f} min; run again with --resume")
            return {"paused": True, "steps": step}
        for group in opt.param_groups:
            group["lr"] = cfg.lr * (cfg.lr_end / cfg.lr) ** frac
        model.set_bn_momentum(0.1 * (0.001 / 0.1) ** frac)
        world = sampler(cfg.batch)
        inputs, pose, traj = synth(world, g)
        weight = None
        if rsampler is not None:  # one batch, so batch norm sees synthetic and real-detector chunks together
            r_in, r_pose, r_traj, r_w = rsampler(cfg.rendered_batch)
            inputs, pose, traj = torch.cat([inputs, r_in]), torch.cat([pose, r_pose]), torch.cat([traj, r_traj])
            weight = torch.cat([torch.ones(cfg.batch, inputs.shape[1]), r_w])
        pose_loss, traj_loss, bone_loss = chunk_losses(model, inputs, pose, traj, layout, weight)
        loss = pose_loss + cfg.traj_weight * traj_loss + cfg.bone_weight * bone_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        seen += cfg.batch * cfg.chunk
        losses.append((pose_loss.item(), traj_loss.item()))
        now = time.monotonic()
        if now - last_log >= cfg.log_every_s:
            recent = np.mean(losses[-100:], axis=0)
            log(f"step {step} frames {seen} ({seen / (now - start):.0f}/s) elapsed {(now - start) / 60:.1f} min "
                f"lr {opt.param_groups[0]['lr']:.2e} pose {1000 * recent[0]:.1f} mm traj {recent[1]:.3f}")
            last_log = now
        if now - last_ckpt >= cfg.checkpoint_every_s:
            save_weights(cfg.out, model, {**meta, "steps": step, "checkpoint": True})
            save_checkpoint(cfg.checkpoint, model, opt, sampler, g, step, seen, now - start)
            last_ckpt = now
    save_checkpoint(cfg.checkpoint, model, opt, sampler, g, step, seen, time.monotonic() - start)
    minutes = (time.monotonic() - start) / 60.0
    model.eval()
    meta.update({"steps": step, "frames_seen": seen, "train_minutes": round(minutes, 2), "checkpoint": False})
    save_weights(cfg.out, model, meta)
    log(f"trained {step} steps, {seen} frames in {minutes:.1f} min; evaluating on held-out files")
    results = evaluate(model, valset, layout, cfg.augment, cfg.eval_cameras)
    results.update({"steps": step, "train_minutes": round(minutes, 2), "losses_first": losses[:5],
                    "losses_last": losses[-5:]})
    meta["evaluation"] = results
    save_weights(cfg.out, model, meta)
    _write_json(Path(str(cfg.out) + ".eval.json"), results)
    log(json.dumps(results, indent=1, default=float))
    return results


def chunk_losses(model: TemporalModel, inputs: torch.Tensor, pose: torch.Tensor, traj: torch.Tensor, layout: Layout,
                 weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The model on chunks inputs (B, T, K, INPUT_CHANNELS) against pose (B, T, K, 3) and trajectory (B, T, 3):
    mean pose error (m), trajectory error relative to its depth, and bone-length error (m); `weight` (B, T) weighs
    frames (0 = ignore). The outputs are the middle T - receptive field + 1 frames."""
    pred, pred_traj = model(add_centred(inputs))
    rf = model.receptive_field()
    sl = slice(rf // 2, rf // 2 + pred.shape[1])
    pose, traj = pose[:, sl], traj[:, sl]
    w = torch.ones(pred.shape[:2]) if weight is None else weight[:, sl]
    n = w.sum().clamp_min(1.0)
    bones = torch.from_numpy(layout.bones)
    bone_err = (torch.linalg.norm(pred[:, :, bones[:, 0]] - pred[:, :, bones[:, 1]], dim=-1)
                - torch.linalg.norm(pose[:, :, bones[:, 0]] - pose[:, :, bones[:, 1]], dim=-1)).abs()
    pose_loss = (torch.linalg.norm(pred - pose, dim=-1).mean(-1) * w).sum() / n
    traj_loss = ((torch.linalg.norm(pred_traj - traj, dim=-1) / traj[..., 2].abs().clamp_min(0.1)) * w).sum() / n
    return pose_loss, traj_loss, (bone_err.mean(-1) * w).sum() / n


def save_checkpoint(path: Path, model: TemporalModel, opt: torch.optim.Optimizer, sampler: ChunkSampler,
                    g: torch.Generator, step: int, seen: int, spent_s: float) -> None:
    """Everything a run needs to go on where it stopped, written atomically (weights-only loadable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "seen": seen,
             "spent_s": float(spent_s), "sampler_rng": json.dumps(sampler.rng.bit_generator.state),
             "torch_rng": g.get_state(), "global_rng": torch.get_rng_state()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, model: TemporalModel, opt: torch.optim.Optimizer, sampler: ChunkSampler,
                    g: torch.Generator) -> tuple[int, int, float]:
    """Restore a save_checkpoint state into the run's objects; returns step, frames seen and seconds spent. A
    damaged or foreign checkpoint is a WeightsMissing that says to start afresh."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sampler.rng.bit_generator.state = json.loads(state["sampler_rng"])
        g.set_state(state["torch_rng"])
        torch.set_rng_state(state["global_rng"])  # dropout's
        return int(state["step"]), int(state["seen"]), float(state["spent_s"])
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged or foreign file
        raise WeightsMissing(f"The training checkpoint {path} is damaged or from another model "
                             f"({type(exc).__name__}).", "Delete it to start afresh, or run without --resume.") from exc


def _jsonable(cfg: TrainConfig) -> dict[str, Any]:
    d = asdict(cfg)
    return json.loads(json.dumps(d, default=str))


def _write_json(path: Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, default=float) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="folder of .bvh files and/or .tar.xz/.zip archives")
    p.add_argument("--out", type=Path, default=ROOT / "core" / "weights" / "lifter_tcn.pt")
    p.add_argument("--cache", type=Path, default=ROOT / ".cache" / "mocap")
    p.add_argument("--minutes", type=float, default=48.0, help="wall-clock training budget")
    p.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: budget only)")
    p.add_argument("--batch", type=int, default=24)
    p.add_argument("--chunk", type=int, default=64, help="output frames per training chunk")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--widths", type=str, default="3,3,3,3", help="temporal filter widths")
    p.add_argument("--channels", type=int, default=256)
    p.add_argument("--val-styles", type=str, default=",".join(DEFAULT_VAL_STYLES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-cameras", type=int, default=2)
    p.add_argument("--speed", type=str, default=",".join(str(v) for v in Augment.speed),
                   help="playback-speed range LO,HI of the training chunks (0.5 shows 30 fps motion as 60 fps video "
                        "does)")
    p.add_argument("--limb-turn-p", type=float, default=Augment.limb_turn_p,
                   help="chance of turning each limb and the upper body away from the mocap pose (0: off)")
    p.add_argument("--balance", type=float, default=0.0,
                   help="draw frames with chance (frames of their motion kind)^-BALANCE (0: all alike; 0.5: rare "
                        "kinds such as bows and kicks about four times as often)")
    p.add_argument("--init", type=Path, default=None, help="start from these trained weights (fine-tuning)")
    p.add_argument("--rendered", type=Path, default=None,
                   help="a folder of rendered training clips (training/render_set.py): each step also fits "
                        "--rendered-batch chunks of MediaPipe's real outputs on them")
    p.add_argument("--rendered-batch", type=int, default=12)
    p.add_argument("--resume", action="store_true",
                   help="go on from this --out's checkpoint (<cache>/checkpoints/), if there is one")
    p.add_argument("--session-minutes", type=float, default=0.0,
                   help="stop this run after so many minutes (checkpointed; --resume goes on); 0: train to the end")
    p.add_argument("--eval-only", action="store_true", help="evaluate the weights at --out on the held-out files")
    a = p.parse_args(argv)
    cfg = TrainConfig(data=a.data, out=a.out, cache=a.cache, minutes=a.minutes if not a.steps else 0.0,
                      max_steps=a.steps, batch=a.batch, chunk=a.chunk, lr=a.lr,
                      filter_widths=tuple(int(w) for w in a.widths.split(",")), channels=a.channels,
                      val_styles=tuple(s for s in a.val_styles.split(",") if s), seed=a.seed, threads=a.threads,
                      eval_cameras=a.eval_cameras, augment=replace(Augment(), limb_turn_p=a.limb_turn_p,
                                      speed=tuple(float(v) for v in a.speed.split(","))),
                      balance=a.balance, init=a.init, rendered=a.rendered, rendered_batch=a.rendered_batch,
                      resume=a.resume, session_minutes=a.session_minutes)
    if a.eval_only:
        torch.set_num_threads(cfg.threads)
        model, meta = load_weights(cfg.out)
        data = load_mocap(cfg.data, cfg.cache)
        _, val_idx = split_files(data.names, cfg.val_styles)
        results = evaluate(model, data.subset(val_idx), lifter_layout(), cfg.augment, cfg.eval_cameras)
        print(json.dumps(results, indent=1, default=float))
        return 0
    train(cfg, log=lambda m: print(m, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
