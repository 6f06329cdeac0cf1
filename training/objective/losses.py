"""Losses: sigmoid focal loss, RLE with a RealNVP flow, and OKS.

RLE (Residual Log-likelihood Estimation, Li et al., ICCV 2021) in the corrected form used by
mmpose: per visible coordinate, ``log sigma - log G(u) + log(2 sigma) + |u|`` with the
normalised residual ``u = (mu - mu_gt) / sigma``, where G is a learned RealNVP density of u
(the Laplace term is the residual's base distribution). Values are negative once sigma is learned.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """Elementwise focal loss (Lin et al. 2017) of logits against 0/1 targets (same shape)."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    a_t = alpha * targets + (1 - alpha) * (1 - targets)
    return a_t * (1 - p_t) ** gamma * ce


def varifocal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.75,
                   gamma: float = 2.0) -> torch.Tensor:
    """Elementwise varifocal loss (Zhang et al., VarifocalNet, CVPR 2021), as RT-DETR uses it.

    ``targets`` in [0, 1] are quality scores (here the matched prediction's OKS) for positives and
    0 for negatives: positives get BCE towards their quality weighted by it, negatives the focal
    down-weighting ``alpha * p ** gamma``. The score learns to rank poses by how good they are,
    which is what OKS-AP and the tracker's thresholds need.
    """
    p = logits.sigmoid()
    pos = (targets > 0).to(logits.dtype)
    weight = alpha * p.detach() ** gamma * (1 - pos) + targets * pos
    return weight * F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


class RealNVP(nn.Module):
    """2-D RealNVP density (Dinh et al. 2017): 6 affine couplings with alternating masks, scale
    and shift nets 2 -> 64 -> 64 -> 2 with LeakyReLU, tanh on the scale, small initial weights."""

    def __init__(self, layers: int = 6, hidden: int = 64):
        super().__init__()
        masks = torch.tensor([[0.0, 1.0], [1.0, 0.0]] * (layers // 2))
        self.register_buffer("masks", masks)
        self.s = nn.ModuleList(self._net(hidden, scale=True) for _ in range(layers))
        self.t = nn.ModuleList(self._net(hidden, scale=False) for _ in range(layers))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight, gain=0.01)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _net(hidden: int, scale: bool) -> nn.Sequential:
        layers = [nn.Linear(2, hidden), nn.LeakyReLU(), nn.Linear(hidden, hidden), nn.LeakyReLU(),
                  nn.Linear(hidden, 2)]
        return nn.Sequential(*layers, nn.Tanh()) if scale else nn.Sequential(*layers)

    def inverse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Data -> latent: [N, 2] -> ([N, 2] z, [N] log|det dz/dx|)."""
        z, log_det = x, x.new_zeros(x.shape[0])
        for i in reversed(range(len(self.t))):
            m = self.masks[i]
            z_ = m * z
            s = self.s[i](z_) * (1 - m)
            t = self.t[i](z_) * (1 - m)
            z = (1 - m) * (z - t) * torch.exp(-s) + z_
            log_det = log_det - s.sum(1)
        return z, log_det

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 2] -> [N] log density under a standard normal prior pushed through the flow."""
        z, log_det = self.inverse(x)
        return -0.5 * (z**2).sum(1) - math.log(2 * math.pi) + log_det


def rle_loss(pred: torch.Tensor, sigma: torch.Tensor, target: torch.Tensor, visible: torch.Tensor,
             flow: RealNVP, scale: torch.Tensor | None = None) -> torch.Tensor:
    """RLE loss of every coordinate (0 where the keypoint is not labelled).

    Args:
        pred, sigma, target: [M, K, 2] (normalised coordinates; sigma in (0, 1)).
        visible: [M, K] bool.
        flow: the stage's RealNVP.
        scale: [M] person sizes: residuals are measured in units of the person's size (sigma is
            then relative to it, as in mmpose's top-down crops); None = whole-image units.

    Returns:
        [M, K, 2] losses; the caller reduces them.
    """
    err = pred - target
    if scale is not None:
        err = err / scale[:, None, None]
    vis = visible[..., None].to(pred.dtype)
    sg = sigma.clamp(min=1e-6)
    u = err / sg
    log_phi = flow.log_prob(u.reshape(-1, 2)).view(u.shape[:-1])[..., None]  # shared by x and y as in mmpose
    loss = torch.log(sg) - log_phi + torch.log(2 * sg) + u.abs()
    return loss * vis


def rle_sum(pred: torch.Tensor, sigma: torch.Tensor, target: torch.Tensor, visible: torch.Tensor,
            flow: RealNVP, scale: torch.Tensor | None = None, side: torch.Tensor | None = None,
            pairs: torch.Tensor | None = None) -> torch.Tensor:
    """Sum of the RLE loss over every labelled coordinate of M matched poses (shapes as
    :func:`rle_loss`).

    With ``side`` [M, P] swap logits (:mod:`pavenet.model.side`; the poses already in the order
    those logits call likelier) and ``pairs`` [P, 2] the layout's (left, right) slots, each pair's
    two joints are a two-component mixture: the order shown, with probability sigmoid(|z|), and
    the swapped one, ``-log(sigmoid(|z|) e^-L_kept + sigmoid(-|z|) e^-L_swapped)``. Where the
    image cannot say which joint is which, the geometry is no longer pulled between the two
    places; the logit learns how sure the order is.
    """
    rle = rle_loss(pred, sigma, target, visible, flow, scale).sum(-1)  # [M, K]
    if side is None:
        return rle.sum()
    a, b = pairs[:, 0], pairs[:, 1]
    slots = torch.arange(pred.shape[1], device=pred.device)
    partner = slots.clone()
    partner[a], partner[b] = b, a
    swapped = rle_loss(pred, sigma, target[:, partner], visible[:, partner], flow, scale).sum(-1)
    kept = rle[:, a] + rle[:, b]  # [M, P]
    other = swapped[:, a] + swapped[:, b]
    z = side.float().abs()
    mix = -torch.logaddexp(F.logsigmoid(z) - kept, F.logsigmoid(-z) - other)
    unpaired = (partner == slots).to(rle.dtype)
    return (rle * unpaired).sum() + mix.sum()


def oks(pred: torch.Tensor, target: torch.Tensor, visible: torch.Tensor, area: torch.Tensor,
        sigmas: torch.Tensor) -> torch.Tensor:
    """Object keypoint similarity of every prediction with every target.

    Args:
        pred: [..., P, K, 2]; target: [..., G, K, 2]; visible: [..., G, K] bool; area: [..., G]
            (same units squared); sigmas: [K] COCO constants. Leading dims broadcast.

    Returns:
        [..., P, G] OKS (0 where a target has no visible keypoint).
    """
    d2 = ((pred[..., :, None, :, :] - target[..., None, :, :, :]) ** 2).sum(-1)  # [..., P, G, K]
    var = (2 * sigmas) ** 2
    e = d2 / (2 * var * (area[..., None, :, None] + 1e-9))
    vis = visible[..., None, :, :].to(pred.dtype)
    return (torch.exp(-e) * vis).sum(-1) / vis.sum(-1).clamp(min=1)


def paired_oks(pred: torch.Tensor, target: torch.Tensor, visible: torch.Tensor, area: torch.Tensor,
               sigmas: torch.Tensor) -> torch.Tensor:
    """OKS of matched pairs: pred/target [M, K, 2], visible [M, K], area [M] -> [M]."""
    d2 = ((pred - target) ** 2).sum(-1)  # [M, K]
    e = d2 / (2 * (2 * sigmas) ** 2 * (area[:, None] + 1e-9))
    vis = visible.to(pred.dtype)
    return (torch.exp(-e) * vis).sum(-1) / vis.sum(-1).clamp(min=1)


def oks_loss(pred, target, visible, area, sigmas) -> torch.Tensor:
    """Sum of (1 - OKS) of matched pairs: pred/target [M, K, 2], visible [M, K], area [M]."""
    return (1 - paired_oks(pred, target, visible, area, sigmas)).sum()
