"""The criterion: Hungarian matching per stage and the weighted loss dict the log shows.

Keys follow the user's log (``../shared/spec/training-log.md``): ``enc_loss_cls``,
``enc_loss_kpt`` (encoder proposals), ``d0.loss_cls``, ``d0.loss_kpt``, ... (intermediate
decoder layers), ``loss_cls``, ``loss_kpt`` (last layer), ``*loss_oks`` when its weight is not
zero. As in mmdet, each logged value already includes its weight, and ``loss`` is their sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from training.losses import RealNVP, oks_loss, rle_loss, sigmoid_focal_loss
from training.matcher import HungarianMatcher, Targets


@dataclass(frozen=True)
class LossConfig:
    """Loss weights (PAVE-Net defaults) and matching cost weights (PAVE-Net's matcher)."""

    loss_cls: float = 0.5
    loss_kpt: float = 1.0
    loss_oks: float = 0.0
    cost_class: float = 2.0
    cost_kpt: float = 70.0
    cost_oks: float = 7.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0


Match = tuple[np.ndarray, np.ndarray]  # (query indices, target indices) of one image


def layer_prefix(layer: int, num_layers: int) -> str:
    """``d0.``, ``d1.``, ... for intermediate decoder layers, ``""`` for the last one."""
    return "" if layer == num_layers - 1 else f"d{layer}."


def _num_targets(targets: list[Targets], device) -> float:
    n = torch.tensor(float(sum(len(t) for t in targets)), device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(n)
        n = n / dist.get_world_size()
    return max(float(n), 1.0)


class SetCriterion(nn.Module):
    """Matches every stage independently and computes its losses.

    Owns one RealNVP flow for the encoder proposals and one for the decoder layers (RLE learns
    a residual density per stage).
    """

    def __init__(self, sigmas: torch.Tensor, num_layers: int, cfg: LossConfig | None = None):
        super().__init__()
        self.cfg = cfg or LossConfig()
        self.num_layers = num_layers
        self.register_buffer("sigmas", torch.as_tensor(sigmas, dtype=torch.float32), persistent=False)
        self.enc_flow = RealNVP()
        self.dec_flow = RealNVP()
        c = self.cfg
        self.matcher = HungarianMatcher(self.sigmas, c.cost_class, c.cost_kpt, c.cost_oks, c.focal_alpha,
                                        c.focal_gamma)

    def match(self, scores: torch.Tensor, keypoints: torch.Tensor, targets: list[Targets]) -> list[Match]:
        """scores [B, N], keypoints [B, N, K, 2] -> one Match per image."""
        return [self.matcher(scores[b].detach(), keypoints[b].detach(), t) for b, t in enumerate(targets)]

    def stage_losses(self, prefix: str, scores: torch.Tensor, keypoints: torch.Tensor, sigmas: torch.Tensor,
                     targets: list[Targets], matches: list[Match], flow: RealNVP, num_targets: float) -> dict:
        """Weighted losses of one stage: scores [B, N], keypoints/sigmas [B, N, K, 2]."""
        c = self.cfg
        labels = torch.zeros_like(scores)
        pred, sig, gt, vis, area = [], [], [], [], []
        for b, (qi, ti) in enumerate(matches):
            qi_t = torch.as_tensor(qi, device=scores.device, dtype=torch.long)
            ti_t = torch.as_tensor(ti, device=scores.device, dtype=torch.long)
            labels[b, qi_t] = 1.0
            pred.append(keypoints[b, qi_t])
            sig.append(sigmas[b, qi_t])
            gt.append(targets[b].keypoints[ti_t])
            vis.append(targets[b].visible[ti_t])
            area.append(targets[b].area[ti_t])
        focal = sigmoid_focal_loss(scores.float(), labels, c.focal_alpha, c.focal_gamma).sum() / num_targets
        pred, sig, gt, vis, area = (torch.cat(x) for x in (pred, sig, gt, vis, area))
        out = {f"{prefix}loss_cls": c.loss_cls * focal,
               f"{prefix}loss_kpt": c.loss_kpt * rle_loss(pred.float(), sig.float(), gt, vis, flow)}
        if c.loss_oks:
            out[f"{prefix}loss_oks"] = c.loss_oks * oks_loss(pred.float(), gt, vis, area, self.sigmas)
        return out

    def forward(self, outputs: dict[str, torch.Tensor], targets: list[Targets]) -> tuple[dict, list[Match]]:
        """All losses of one frame batch and the last layer's matches.

        Args:
            outputs: the model's output dict (``scores`` [L, B, N], ``keypoints`` [L, B, N, K, 2], ...).
            targets: one :class:`Targets` per image.

        Returns:
            (weighted losses by log key, plus ``loss`` = their sum; last-layer matches).
        """
        device = outputs["scores"].device
        n = _num_targets(targets, device)
        enc = (outputs["enc_scores"], outputs["enc_keypoints"], outputs["enc_sigmas"])
        losses = self.stage_losses("enc_", *enc, targets, self.match(enc[0], enc[1], targets), self.enc_flow, n)
        last: list[Match] = []
        for layer in range(self.num_layers):
            s, k, sg = outputs["scores"][layer], outputs["keypoints"][layer], outputs["sigmas"][layer]
            last = self.match(s, k, targets)
            losses.update(self.stage_losses(layer_prefix(layer, self.num_layers), s, k, sg, targets, last,
                                            self.dec_flow, n))
        losses["loss"] = sum(losses.values())
        return losses, last
