"""Hungarian matching of queries to ground-truth people (DETR), with PAVE-Net's cost weights:
cost = 2 * focal + 70 * L1(keypoints) + 7 * (1 - OKS)."""

from __future__ import annotations

from dataclasses import dataclass

import lap
import numpy as np
import torch

from training.losses import oks


@dataclass
class Targets:
    """Ground truth of one image, normalised like the model's outputs.

    Attributes:
        keypoints: [G, K, 2] normalised coordinates.
        visible: [G, K] bool, labelled keypoints.
        area: [G] box area as a fraction of the image area (OKS scale).
        track_ids: [G] int64 identities.
    """

    keypoints: torch.Tensor
    visible: torch.Tensor
    area: torch.Tensor
    track_ids: torch.Tensor

    def __len__(self) -> int:
        return len(self.track_ids)

    def to(self, device) -> Targets:
        return Targets(self.keypoints.to(device), self.visible.to(device), self.area.to(device),
                       self.track_ids.to(device))


def assign(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one assignment of rows (queries) to columns (targets).

    Returns (rows, cols) int64 arrays of the matched pairs, sorted by column.
    """
    n_rows, n_cols = cost.shape
    if n_rows == 0 or n_cols == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    _, _, col_to_row = lap.lapjv(np.ascontiguousarray(cost, dtype=np.float64), extend_cost=True)
    cols = np.flatnonzero(col_to_row >= 0)
    return col_to_row[cols].astype(np.int64), cols.astype(np.int64)


class HungarianMatcher:
    """Matches one image's queries to its people."""

    def __init__(self, sigmas: torch.Tensor, cost_class: float = 2.0, cost_kpt: float = 70.0,
                 cost_oks: float = 7.0, alpha: float = 0.25, gamma: float = 2.0):
        self.sigmas = sigmas
        self.cost_class, self.cost_kpt, self.cost_oks = cost_class, cost_kpt, cost_oks
        self.alpha, self.gamma = alpha, gamma

    @torch.no_grad()
    def cost_matrix(self, logits: torch.Tensor, keypoints: torch.Tensor, tgt: Targets) -> torch.Tensor:
        """logits [N], keypoints [N, K, 2] -> [N, G] matching cost."""
        p = logits.float().sigmoid()
        pos = self.alpha * (1 - p) ** self.gamma * -(p + 1e-8).log()
        neg = (1 - self.alpha) * p**self.gamma * -(1 - p + 1e-8).log()
        c_cls = (pos - neg)[:, None]  # [N, 1]
        vis = tgt.visible.float()  # [G, K]
        diff = (keypoints[:, None].float() - tgt.keypoints[None]).abs().sum(-1)  # [N, G, K]
        c_kpt = (diff * vis[None]).sum(-1) / (2 * vis.sum(-1).clamp(min=1))[None]
        c_oks = 1 - oks(keypoints.float(), tgt.keypoints, tgt.visible, tgt.area, self.sigmas.to(p.device))
        return self.cost_class * c_cls + self.cost_kpt * c_kpt + self.cost_oks * c_oks

    def __call__(self, logits: torch.Tensor, keypoints: torch.Tensor, tgt: Targets) -> tuple[np.ndarray, np.ndarray]:
        """(query indices, target indices) of the optimal matching."""
        if len(tgt) == 0 or len(logits) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return assign(self.cost_matrix(logits, keypoints, tgt).cpu().numpy())
