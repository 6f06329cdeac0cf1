"""Stride-4 keypoint head: local integral regression after the refiner.

The decoder and the refiner sample features at strides 8-32, where a small person's shoulders or
wrists are one cell apart; their keypoints barely move across the body (left/right collapse). This
head looks at a ``G x G`` grid of stride-4 cells around each keypoint, on the backbone's stride-4
map and the stride-8 level, scores every cell with a small MLP of (cell features, keypoint query,
cell position) and moves the keypoint to the softmax-weighted mean of the cell positions
(soft-argmax, as integral pose regression). Its RLE sigma corrects the refiner's by the same
weighted features. The output layers start at zero: a new head is the identity until trained.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pavenet.model.attention import cell_shift
from pavenet.model.config import ModelConfig
from pavenet.model.decoder import inverse_sigmoid


def sample_map(feature: torch.Tensor, points: torch.Tensor, image_size: tuple[int, int] | None) -> torch.Tensor:
    """Bilinear features at normalised points: feature [B, C, H, W], points [B, P, 2] -> [B, P, C]."""
    sx, sy = cell_shift(tuple(feature.shape[-2:]), image_size)
    grid = 2 * points - 1
    if sx or sy:
        grid = torch.stack([grid[..., 0] + 2 * sx, grid[..., 1] + 2 * sy], -1)
    out = F.grid_sample(feature, grid[:, :, None], mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[..., 0].transpose(1, 2)


class FineKeypointHead(nn.Module):
    """See the module docstring. ``fine_channels``: channels of the backbone's stride-4 map."""

    def __init__(self, cfg: ModelConfig, fine_channels: int, hidden: int = 64):
        super().__init__()
        g = cfg.fine_grid
        self.image_size = cfg.aligned_size
        self.fine_proj = nn.Linear(fine_channels, hidden)
        self.coarse_proj = nn.Linear(cfg.d_model, hidden)
        self.query_proj = nn.Linear(cfg.d_model, hidden)
        self.cell_embed = nn.Parameter(torch.randn(g * g, hidden) * 0.02)
        self.logit = nn.Linear(hidden, 1)
        self.sigma = nn.Linear(hidden, 2)
        for layer in (self.logit, self.sigma):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        steps = torch.arange(g, dtype=torch.float32) - (g - 1) / 2
        ys, xs = torch.meshgrid(steps, steps, indexing="ij")
        self.register_buffer("cells", torch.stack([xs.flatten(), ys.flatten()], -1), persistent=False)  # [G*G, 2]

    def forward(self, x: torch.Tensor, keypoints: torch.Tensor, sigmas: torch.Tensor, fine: torch.Tensor,
                coarse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Move keypoints within the grid.

        Args:
            x: [B, R, K, D] keypoint queries (the refiner's last state).
            keypoints, sigmas: [B, R, K, 2] the refiner's last pose (normalised) and RLE sigmas.
            fine: [B, C, H/4, W/4] the backbone's stride-4 map of the current frame.
            coarse: [B, D, H/8, W/8] the current frame's stride-8 level.

        Returns:
            keypoints, sigmas [B, R, K, 2].
        """
        b, r, k, _ = x.shape
        h4, w4 = fine.shape[-2:]
        cells = self.cells.to(x.dtype)  # Python scalars below: no host tensor, the step stays graph-capturable
        offsets = torch.stack([cells[:, 0] / w4, cells[:, 1] / h4], -1)  # [G*G, 2] normalised
        points = (keypoints[:, :, :, None] + offsets).reshape(b, -1, 2)  # [B, R*K*G*G, 2]
        feat = self.fine_proj(sample_map(fine, points, self.image_size))
        feat = feat + self.coarse_proj(sample_map(coarse, points, self.image_size))
        feat = feat.view(b, r, k, -1, feat.shape[-1])  # [B, R, K, G*G, h]
        h = F.relu(feat + self.query_proj(x)[:, :, :, None] + self.cell_embed)
        weights = self.logit(h).squeeze(-1).softmax(-1)  # [B, R, K, G*G]
        moved = keypoints + weights @ offsets
        pooled = (weights[..., None] * h).sum(-2)  # [B, R, K, h]
        sigma = torch.sigmoid(inverse_sigmoid(sigmas) + self.sigma(pooled))
        return moved, sigma
