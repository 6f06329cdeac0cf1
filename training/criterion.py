"""The criterion: Hungarian matching per stage and the weighted loss dict the log shows.

Keys follow the user's log (``../shared/spec/training-log.md``): ``enc_loss_cls``,
``enc_loss_kpt`` (encoder proposals), ``d0.loss_cls``, ``d0.loss_kpt``, ... (intermediate
decoder layers), ``loss_cls``, ``loss_kpt`` (last layer), ``*loss_oks`` when its weight is not
zero, and ``d0.loss_kpt_refine``, ``d1.loss_kpt_refine``, ... for the keypoint refinement
layers. As in mmdet, each logged value already includes its weight, and ``loss`` is their sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from training.losses import RealNVP, oks, oks_loss, rle_loss, sigmoid_focal_loss, varifocal_loss
from training.matcher import HungarianMatcher, Targets
from training.tracking import TrackBatch, match_with_tracks


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
    track_assignment: str = "bonus"
    track_bonus: float = -10.0
    cls_target: str = "oks"


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

    Owns one RealNVP flow for each stage: encoder proposals, decoder layers, refinement layers
    (RLE learns a residual density per stage).
    """

    def __init__(self, sigmas: torch.Tensor, num_layers: int, cfg: LossConfig | None = None):
        super().__init__()
        self.cfg = cfg or LossConfig()
        self.num_layers = num_layers
        self.register_buffer("sigmas", torch.as_tensor(sigmas, dtype=torch.float32), persistent=False)
        self.enc_flow = RealNVP()
        self.dec_flow = RealNVP()
        self.refine_flow = RealNVP()
        c = self.cfg
        self.matcher = HungarianMatcher(self.sigmas, c.cost_class, c.cost_kpt, c.cost_oks, c.focal_alpha,
                                        c.focal_gamma)

    def match(self, scores: torch.Tensor, keypoints: torch.Tensor, targets: list[Targets],
              tracks: TrackBatch | None = None) -> list[Match]:
        """scores [B, N], keypoints [B, N, K, 2] -> one Match per image (track rules when tracks)."""
        if tracks is None or tracks.size == 0:
            return [self.matcher(scores[b].detach(), keypoints[b].detach(), t) for b, t in enumerate(targets)]
        c = self.cfg
        return [match_with_tracks(self.matcher, scores[b].detach(), keypoints[b].detach(), t, tracks.prev_ids[b],
                                  tracks.mask[b], c.track_assignment, c.track_bonus) for b, t in enumerate(targets)]

    def stage_losses(self, prefix: str, scores: torch.Tensor, keypoints: torch.Tensor, sigmas: torch.Tensor,
                     targets: list[Targets], matches: list[Match], flow: RealNVP, num_targets: float,
                     valid: torch.Tensor | None = None) -> dict:
        """Weighted losses of one stage: scores [B, N], keypoints/sigmas [B, N, K, 2]; ``valid``
        [B, N] excludes padding rows from the score loss."""
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
        pred, sig, gt, vis, area = (torch.cat(x) for x in (pred, sig, gt, vis, area))
        if c.cls_target == "oks":  # quality-aware: the target of a matched query is its pose's OKS
            with torch.no_grad():
                quality = oks(pred.float(), gt, vis, area, self.sigmas).diagonal() if len(pred) else pred.new_zeros(0)
            offset = 0
            for b, (qi, _) in enumerate(matches):
                qi_t = torch.as_tensor(qi, device=scores.device, dtype=torch.long)
                labels[b, qi_t] = quality[offset:offset + len(qi)].clamp(min=0.01).to(labels.dtype)
                offset += len(qi)
            focal = varifocal_loss(scores.float(), labels, gamma=c.focal_gamma)
        else:
            focal = sigmoid_focal_loss(scores.float(), labels, c.focal_alpha, c.focal_gamma)
        focal = (focal if valid is None else focal * valid).sum() / num_targets
        out = {f"{prefix}loss_cls": c.loss_cls * focal,
               f"{prefix}loss_kpt": c.loss_kpt * rle_loss(pred.float(), sig.float(), gt, vis, flow)}
        if c.loss_oks:
            out[f"{prefix}loss_oks"] = c.loss_oks * oks_loss(pred.float(), gt, vis, area, self.sigmas)
        return out

    def forward(self, outputs: dict[str, torch.Tensor], targets: list[Targets],
                tracks: TrackBatch | None = None) -> tuple[dict, list[Match]]:
        """Losses of the proposals and decoder layers of one frame batch, and the last layer's matches.

        Args:
            outputs: the model's output dict (``scores`` [L, B, N + Q], ``keypoints`` [L, B, N + Q, K, 2], ...).
            targets: one :class:`Targets` per image.
            tracks: the frame's N track queries (rows 0..N-1 of the decoder outputs), if any.

        Returns:
            (weighted losses by log key; last-layer matches). ``loss`` is added by :meth:`total`.
        """
        device = outputs["scores"].device
        n = _num_targets(targets, device)
        enc = (outputs["enc_scores"], outputs["enc_keypoints"], outputs["enc_sigmas"])
        losses = self.stage_losses("enc_", *enc, targets, self.match(enc[0], enc[1], targets), self.enc_flow, n)
        valid = None
        if tracks is not None and tracks.size:
            q = outputs["scores"].shape[-1] - tracks.size
            valid = torch.cat([tracks.mask, tracks.mask.new_ones(tracks.mask.shape[0], q)], 1).float()
        last: list[Match] = []
        for layer in range(self.num_layers):
            s, k, sg = outputs["scores"][layer], outputs["keypoints"][layer], outputs["sigmas"][layer]
            last = self.match(s, k, targets, tracks)
            losses.update(self.stage_losses(layer_prefix(layer, self.num_layers), s, k, sg, targets, last,
                                            self.dec_flow, n, valid))
        return losses, last

    def refine_losses(self, keypoints: torch.Tensor, sigmas: torch.Tensor, targets: list[Targets],
                      target_index: list[np.ndarray]) -> dict:
        """RLE of each refinement layer: keypoints/sigmas [Lr, B, R, K, 2] for R refined people per
        image, row j of image b being person ``target_index[b][j]`` (rows beyond are padding)."""
        gt, vis, rows = [], [], []
        for b, idx in enumerate(target_index):
            t = torch.as_tensor(idx, device=keypoints.device, dtype=torch.long)
            gt.append(targets[b].keypoints[t])
            vis.append(targets[b].visible[t])
            rows.append((torch.full_like(t, b), torch.arange(len(t), device=keypoints.device)))
        bi = torch.cat([r[0] for r in rows])
        ri = torch.cat([r[1] for r in rows])
        gt, vis = torch.cat(gt), torch.cat(vis)
        return {f"d{layer}.loss_kpt_refine": self.cfg.loss_kpt * rle_loss(
                    keypoints[layer, bi, ri].float(), sigmas[layer, bi, ri].float(), gt, vis, self.refine_flow)
                for layer in range(keypoints.shape[0])}

    @staticmethod
    def total(losses: dict) -> dict:
        """``losses`` with ``loss``: the sum of all weighted terms."""
        return {**losses, "loss": sum(losses.values())}
