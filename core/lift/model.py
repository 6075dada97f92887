"""VideoPose3D's temporal convolution model (Pavllo et al., CVPR 2019), predicting a pelvis-relative pose and the
pelvis trajectory from a sequence of normalised 2D keypoints with visibility; weights saved with their settings."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.common.atomic import atomic_path
from core.common.errors import WeightsMissing


@dataclass(frozen=True)
class ModelConfig:
    """num_keypoints: K. in_features: per keypoint (u, v, visibility, ...). filter_widths: temporal kernel per layer,
    the dilation of layer i is the product of the widths before it. channels: hidden width. dropout: training only."""

    num_keypoints: int = 23
    in_features: int = 3
    filter_widths: tuple[int, ...] = (3, 3, 3, 3)
    channels: int = 256
    dropout: float = 0.25


class TemporalModel(nn.Module):
    """(B, T, K, in_features) → pose (B, T - receptive_field() + 1, K, 3) metres relative to the pelvis, and
    trajectory (B, T - receptive_field() + 1, 3) metres, the pelvis in camera coordinates."""

    def __init__(self, num_keypoints: int = 23, in_features: int = 3, filter_widths: tuple[int, ...] = (3, 3, 3, 3),
                 channels: int = 256, dropout: float = 0.25) -> None:
        super().__init__()
        for w in filter_widths:
            if w % 2 == 0:
                raise ValueError("filter widths must be odd")
        self.config = ModelConfig(num_keypoints, in_features, tuple(filter_widths), channels, dropout)
        self.num_keypoints = num_keypoints
        self.drop = nn.Dropout(dropout)
        self.relu = nn.ReLU(inplace=True)
        self.expand_conv = nn.Conv1d(num_keypoints * in_features, channels, filter_widths[0], bias=False)
        self.expand_bn = nn.BatchNorm1d(channels, momentum=0.1)
        self.pad = [filter_widths[0] // 2]
        layers_conv, layers_bn = [], []
        dilation = filter_widths[0]
        for w in filter_widths[1:]:
            self.pad.append((w - 1) * dilation // 2)
            layers_conv += [nn.Conv1d(channels, channels, w, dilation=dilation, bias=False),
                            nn.Conv1d(channels, channels, 1, dilation=1, bias=False)]
            layers_bn += [nn.BatchNorm1d(channels, momentum=0.1), nn.BatchNorm1d(channels, momentum=0.1)]
            dilation *= w
        self.layers_conv = nn.ModuleList(layers_conv)
        self.layers_bn = nn.ModuleList(layers_bn)
        self.shrink = nn.Conv1d(channels, num_keypoints * 3 + 3, 1)

    def receptive_field(self) -> int:
        """Input frames that one output frame sees."""
        return 1 + 2 * sum(self.pad)

    def set_bn_momentum(self, momentum: float) -> None:
        for bn in [self.expand_bn, *self.layers_bn]:
            bn.momentum = momentum

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, k, c = x.shape
        x = x.reshape(b, t, k * c).permute(0, 2, 1)
        x = self.drop(self.relu(self.expand_bn(self.expand_conv(x))))
        for i in range(len(self.pad) - 1):
            pad = self.pad[i + 1]
            res = x[:, :, pad:x.shape[2] - pad]
            x = self.drop(self.relu(self.layers_bn[2 * i](self.layers_conv[2 * i](x))))
            x = res + self.drop(self.relu(self.layers_bn[2 * i + 1](self.layers_conv[2 * i + 1](x))))
        x = self.shrink(x).permute(0, 2, 1)
        pose = x[..., :k * 3].reshape(b, -1, k, 3)
        return pose, x[..., k * 3:]


def save_weights(path: Path, model: TemporalModel, meta: dict[str, Any]) -> None:
    """Write the model's settings, weights (float32) and `meta` (layout names, fps, training facts) atomically."""
    state = {n: v.detach().to(torch.float32).clone() for n, v in model.state_dict().items()}
    with atomic_path(Path(path)) as tmp:
        torch.save({"config": asdict(model.config), "state_dict": state, "meta": meta}, tmp)


def load_weights(path: Path) -> tuple[TemporalModel, dict[str, Any]]:
    """The model (in eval mode) and its meta from a file written by save_weights."""
    path = Path(path)
    if not path.is_file():
        raise WeightsMissing(f"Lifter weights {path} are missing.",
                             "Restore core/weights/ from the repository, or train them: python -m training.train.")
    try:  # weights_only: no pickled code runs; anything malformed is one user-facing error
        blob = torch.load(path, map_location="cpu", weights_only=True)
        cfg = dict(blob["config"])
        cfg["filter_widths"] = tuple(cfg["filter_widths"])
        model = TemporalModel(**cfg)
        model.load_state_dict(blob["state_dict"])
        meta = dict(blob["meta"])
        finite = all(bool(torch.isfinite(t).all()) for t in blob["state_dict"].values())
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged or foreign file
        raise WeightsMissing(f"Lifter weights {path} are damaged or not Mimic weights ({type(exc).__name__}).",
                             "Restore core/weights/ from the repository, or train them: python -m training.train.") \
            from exc
    if not finite:
        raise WeightsMissing(f"Lifter weights {path} hold NaN or infinite values.",
                             "Restore core/weights/ from the repository, or train them again.")
    model.eval()
    return model, meta


def add_centred(x: torch.Tensor) -> torch.Tensor:
    """(..., K, C) inputs (u, v, visibility first) → (..., K, C + 2): adds u, v centred on the visibility-weighted
    mean keypoint and divided by the frame's visibility-weighted RMS spread, so the pose's shape reaches the network
    free of the person's distance and the camera's zoom (the raw u, v still carry position and size for the
    trajectory)."""
    vis = x[..., 2:3]
    w = vis / (vis.sum(-2, keepdim=True) + 1e-6)
    d = x[..., :2] - (x[..., :2] * w).sum(-2, keepdim=True)
    spread = ((d * d).sum(-1, keepdim=True) * w).sum(-2, keepdim=True).sqrt()
    return torch.cat([x, d * (vis > 0) / (spread + 1e-3)], dim=-1)
