"""The learned lifter "tcn": MediaPipe 2D keypoints + visibility, with MediaPipe's per-frame 3D as a hint → 3D
keypoints with the root trajectory, by a VideoPose3D-style temporal convolution model trained on mocap (training/train.py,
weights and model card in core/weights/); well-seen keypoints are then put on their 2D rays (core.lift.rays)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.detections import Detections
from core.lift import Lifted
from core.common import rigs
from core.lift.layout import Layout, lifter_layout
from core.common.errors import WeightsMissing
from core.lift.model import TemporalModel, add_centred, load_weights
from core.lift.normalize import detections_to_inputs, flip_inputs, flip_pose
from core.lift.rays import RaySettings, snap_to_rays

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "lifter_tcn.pt"
WINDOW_FRAMES = 2048  # output frames lifted per call (each sees its receptive field around it: the same result)


def infer(model: TemporalModel, inputs: np.ndarray, layout: Layout, flip: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Lift whole sequences, WINDOW_FRAMES output frames at a time.

    inputs: (F, K, INPUT_CHANNELS) or (N, F, K, INPUT_CHANNELS) (core.lift.normalize). Returns pose
    (..., F, K, 3) metres relative to the pelvis and trajectory (..., F, 3) metres, in camera axes
    (X image right, Y image up, Z towards the camera).
    Edges are padded by repeating the first/last frame so every frame gets an output; with `flip` the mirrored input
    is lifted too and its mirrored result averaged in (test-time augmentation).
    """
    x = np.asarray(inputs, dtype=np.float32)
    single = x.ndim == 3
    if single:
        x = x[None]
    pad = model.receptive_field() // 2
    batch = [x, flip_inputs(x, layout)] if flip else [x]
    xp = np.pad(np.concatenate(batch), ((0, 0), (pad, pad), (0, 0), (0, 0)), mode="edge")
    was_training = model.training
    model.eval()
    with torch.inference_mode():  # in windows: the activations (~1 kB a frame per layer) are bounded by the window
        parts = [model(add_centred(torch.from_numpy(xp[:, s:s + WINDOW_FRAMES + 2 * pad])))
                 for s in range(0, xp.shape[1] - 2 * pad, WINDOW_FRAMES)]
    model.train(was_training)
    pose = torch.cat([p for p, _ in parts], dim=1).numpy().astype(np.float64)
    traj = torch.cat([t for _, t in parts], dim=1).numpy().astype(np.float64)
    if flip:
        n = x.shape[0]
        pose = 0.5 * (pose[:n] + flip_pose(pose[n:], layout))
        traj = 0.5 * (traj[:n] + flip_pose(traj[n:], None))
    return (pose[0], traj[0]) if single else (pose, traj)


class TcnLifter:
    """Lifter "tcn": see the module docstring. A clip is lifted at its own rate when the training's playback speeds
    cover it (a 60 fps clip shows 30 fps motion at speed 0.5: weights trained with speeds down to 0.5 take it
    whole); otherwise in interleaved phases (every s-th frame, the smallest s that brings it into that range) so the
    model always sees a time scale it was trained on."""

    name = "tcn"

    def __init__(self, weights: Path = DEFAULT_WEIGHTS, flip: bool = True, use_hint: bool = True,
                 rays: RaySettings | None = RaySettings()) -> None:
        # One thread lifts ~20,000 frames/s here; more OpenMP threads only fight MediaPipe and parallel batch jobs.
        torch.set_num_threads(1)
        self.model, self.meta = load_weights(weights)
        self.layout = lifter_layout()
        if list(self.meta.get("keypoints", self.layout.names)) != list(self.layout.names):
            raise WeightsMissing(f"Lifter weights {weights} were trained for another keypoint layout.",
                                 "Retrain them with the current rigs/lifter_layout.json: python -m training.train.")
        self.fps = float(self.meta.get("fps", 30.0))
        speeds = self.meta.get("config", {}).get("augment", {}).get("speed", (0.7, 1.4))
        self.slowest = float(speeds[0]) if isinstance(speeds, (list, tuple)) and speeds else 0.7
        self.flip = flip
        self.use_hint = use_hint
        self.rays = rays

    def stride(self, fps: float) -> int:
        """Every how many frames of a clip at `fps` the model sees (1: the clip at its own rate)."""
        if not fps or fps <= 0 or self.fps / fps >= self.slowest - 1e-6:
            return 1
        return max(1, int(np.ceil(self.slowest * fps / self.fps - 1e-6)))

    def lift(self, detections: Detections) -> Lifted:
        """(F, 33, 3) keypoints = trajectory + pelvis-relative pose, metres, Mimic axes; NaN and confidence 0 for
        landmarks the lifter does not predict and for frames without a person."""
        det = detections
        frames = det.num_frames
        x = detections_to_inputs(det.image, det.world if self.use_hint else None, det.width, det.height, self.layout)
        stride = self.stride(det.fps)
        pose = np.zeros((frames, self.layout.num_keypoints, 3))
        traj = np.full((frames, 3), np.nan)
        present = np.asarray(det.present, dtype=bool) & np.any(x[..., 2] > 0, axis=-1)
        for phase in range(min(stride, frames) if present.any() else 0):
            p, t = infer(self.model, x[phase::stride], self.layout, self.flip)
            pose[phase::stride], traj[phase::stride] = p, t
        points = pose + traj[:, None, :]
        if self.rays is not None and present.any():
            points = snap_to_rays(points, x[..., :2], x[..., 2], det.fps or self.fps, self.rays)
        keypoints = np.full((frames, rigs.num_landmarks(), 3), np.nan)
        confidence = np.zeros((frames, rigs.num_landmarks()))
        keypoints[:, self.layout.mediapipe_index] = points
        confidence[:, self.layout.mediapipe_index] = x[..., 2]
        keypoints[~present] = np.nan
        confidence[~present] = 0.0
        info: dict[str, Any] = {"receptive_field": self.model.receptive_field(), "stride": stride,
                                "flip": self.flip, "use_hint": self.use_hint, "rays": asdict(self.rays) if self.rays else None,
                                "trajectory": traj}
        return Lifted(keypoints=keypoints, confidence=confidence, lifter=self.name, info=info)
