"""The criterion: Hungarian matching per stage and the weighted loss dict the log shows.

Keys follow docs/training-log.md: ``enc_loss_cls``, ``enc_loss_kpt`` (encoder proposals), ``d0.loss_cls``,
``d0.loss_kpt``, ... (intermediate decoder layers), ``loss_cls``, ``loss_kpt`` (last layer),
``*loss_oks`` when its weight is not zero, and ``d0.loss_kpt_refine``, ``d1.loss_kpt_refine``, ...
for the keypoint refinement layers (and ``d0.loss_oks_refine``, ... when ``loss_oks`` is not
zero). As in mmdet, each logged value already includes its weight, and ``loss`` is their sum.

Everything is batched: one cost tensor per stage for the whole batch, one device-to-host copy
per frame for all stages (:meth:`SetCriterion.match`), the assignments solved on the host, and
the losses gathered with index tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from training.objective.losses import RealNVP, paired_oks, rle_sum, sigmoid_focal_loss, varifocal_loss
from training.objective.matcher import HungarianMatcher, TargetBatch, extend_topk, match_all, match_topk, to_host
from training.objective.tracking import TrackBatch, TrackRules, match_image, pinned

Match = tuple[np.ndarray, np.ndarray]  # (query indices, target indices) of one image


@dataclass(frozen=True)
class LossConfig:
    """Loss weights and matching cost weights (PAVE-Net's matcher).

    ``rle_reduction``: ``person`` sums the RLE loss over a person's labelled coordinates and
    averages over people (mmpose); ``coordinate`` averages over all labelled coordinates (the
    first shipped model, ~34x lighter). ``sigma_relative``: residuals in units of the person's
    size (set from the model config).
    """

    loss_cls: float = 1.0
    loss_kpt: float = 1.0
    loss_oks: float = 0.0
    cost_class: float = 2.0
    cost_kpt: float = 70.0
    cost_oks: float = 7.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    cls_target: str = "oks"
    rle_reduction: str = "coordinate"
    sigma_relative: bool = True
    enc_topk: int = 1
    dec_topk: int = 1


def layer_prefix(layer: int, num_layers: int) -> str:
    """``d0.``, ``d1.``, ... for intermediate decoder layers, ``""`` for the last one."""
    return "" if layer == num_layers - 1 else f"d{layer}."


def num_targets(tgt: TargetBatch, device) -> float | torch.Tensor:
    """People in the batch (averaged over processes under DDP), at least 1."""
    n = float(max(tgt.num_people, 1))
    if dist.is_available() and dist.is_initialized():
        t = torch.tensor(n, device=device)
        dist.all_reduce(t)
        return (t / dist.get_world_size()).clamp(min=1.0)
    return n


def pair_index(matches: list[Match], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image matches -> (image, query, target) index tensors [M] on ``device``."""
    bi = np.concatenate([np.full(len(r), b, np.int64) for b, (r, _) in enumerate(matches)] or [np.zeros(0, np.int64)])
    qi = np.concatenate([r for r, _ in matches] or [np.zeros(0, np.int64)]).astype(np.int64)
    ti = np.concatenate([c for _, c in matches] or [np.zeros(0, np.int64)]).astype(np.int64)
    packed = pinned(np.stack([bi, qi, ti]), device)
    return packed[0], packed[1], packed[2]


def in_ignore(keypoints: torch.Tensor, tgt: TargetBatch) -> torch.Tensor:
    """[B, N, K, 2] poses -> [B, N] bool: the pose's centre lies in one of the image's ignore boxes."""
    if tgt.ignore.shape[1] == 0:
        return torch.zeros(keypoints.shape[:2], dtype=torch.bool, device=keypoints.device)
    c = keypoints.detach().mean(-2)[:, :, None]  # [B, N, 1, 2]
    box = tgt.ignore[:, None]  # [B, 1, M, 4]
    inside = (c[..., 0] >= box[..., 0]) & (c[..., 0] <= box[..., 2]) & (c[..., 1] >= box[..., 1]) & \
             (c[..., 1] <= box[..., 3]) & tgt.ignore_valid[:, None]
    return inside.any(-1)


class SetCriterion(nn.Module):
    """Matches every stage independently and computes its losses.

    Owns one RealNVP flow for each stage: encoder proposals, decoder layers, refinement layers
    (RLE learns a residual density per stage).
    """

    def __init__(self, sigmas: torch.Tensor, num_layers: int, cfg: LossConfig | None = None,
                 rules: TrackRules | None = None, side_pairs: tuple[tuple[int, int], ...] = ()):
        super().__init__()
        self.cfg = cfg or LossConfig()
        self.rules = rules or TrackRules()
        self.num_layers = num_layers
        self.register_buffer("sigmas", torch.as_tensor(sigmas, dtype=torch.float32), persistent=False)
        # the model's left/right pairs when it has side heads (its keypoint loss is then a mixture)
        self.register_buffer("side_pairs", torch.tensor(side_pairs, dtype=torch.long).view(-1, 2), persistent=False)
        self.enc_flow = RealNVP()
        self.dec_flow = RealNVP()
        self.refine_flow = RealNVP()
        c = self.cfg
        self.matcher = HungarianMatcher(self.sigmas, c.cost_class, c.cost_kpt, c.cost_oks, c.focal_alpha,
                                        c.focal_gamma)

    def match(self, outputs: dict[str, torch.Tensor], tgt: TargetBatch, tracks: TrackBatch,
              all_stages: bool = True) -> tuple[list[Match] | None, list[list[Match]], np.ndarray]:
        """Match the encoder proposals (when ``all_stages``) and every decoder layer (else only the
        last) with one device-to-host copy.

        Returns (encoder matches or None, matches per decoder layer, last-layer person
        probabilities [B, N + Q] on the host).
        """
        dec_scores, dec_kpts = outputs["scores"], outputs["keypoints"]
        if not all_stages:
            dec_scores, dec_kpts = dec_scores[-1:], dec_kpts[-1:]
        dec_cost = self.matcher.cost(dec_scores.detach(), dec_kpts.detach(), tgt)  # [L, B, N + Q, G]
        host = [dec_cost, outputs["scores"][-1].detach().sigmoid()]
        if all_stages:
            host.append(self.matcher.cost(outputs["enc_scores"].detach(), outputs["enc_keypoints"].detach(), tgt))
        host = to_host(*host)
        dec_cost, probs = host[0], host[1]
        counts = tgt.counts
        layers = [[match_image(dec_cost[layer, b, :, :counts[b]], tracks.follow[b], tracks.valid[b],
                               tgt.ids_host[b, :counts[b]], self.rules)
                   for b in range(len(tgt))] for layer in range(dec_cost.shape[0])]
        if self.cfg.dec_topk > 1:  # hybrid layers: more positives in every layer but the last
            for layer in range(len(layers) - 1):
                layers[layer] = [extend_topk(dec_cost[layer, b, :, :counts[b]], m, tracks.size, self.cfg.dec_topk)
                                 for b, m in enumerate(layers[layer])]
        enc = None
        if all_stages:
            k = self.cfg.enc_topk
            enc = match_all(host[2], counts) if k <= 1 else match_topk(host[2], counts, k)
        return enc, layers, probs

    def keypoint_loss(self, pred: torch.Tensor, sig: torch.Tensor, gt: torch.Tensor, vis: torch.Tensor,
                      area: torch.Tensor, flow: RealNVP, n: float | torch.Tensor,
                      side: torch.Tensor | None) -> torch.Tensor:
        """Reduced RLE of M matched poses (pred/sig/gt [M, K, 2], vis [M, K], area [M], side
        logits [M, P] or None), before its weight."""
        c = self.cfg
        if side is not None and not len(self.side_pairs):
            raise ValueError("the model has side heads: build the criterion with its side_pairs")
        total = rle_sum(pred, sig, gt, vis, flow, area.sqrt() if c.sigma_relative else None, side, self.side_pairs)
        return total / n if c.rle_reduction == "person" else total / (2 * vis.sum()).clamp(min=1)

    def stage_losses(self, prefix: str, scores: torch.Tensor, keypoints: torch.Tensor, sigmas: torch.Tensor,
                     tgt: TargetBatch, index: tuple[torch.Tensor, ...], flow: RealNVP, n: float | torch.Tensor,
                     valid: torch.Tensor | None = None, side: torch.Tensor | None = None) -> dict:
        """Weighted losses of one stage: scores [B, N], keypoints/sigmas [B, N, K, 2], matched pairs
        ``index`` (image, query, target) [M]; ``valid`` [B, N] excludes padding rows; ``side``
        [B, N, P] swap logits of a model with side heads."""
        c = self.cfg
        bi, qi, ti = index
        pred, sig = keypoints[bi, qi].float(), sigmas[bi, qi].float()
        gt, vis, area = tgt.keypoints[bi, ti], tgt.visible[bi, ti], tgt.area[bi, ti]
        labels = torch.zeros_like(scores, dtype=torch.float32)
        if c.cls_target == "oks":  # quality-aware: the target of a matched query is its pose's OKS
            with torch.no_grad():
                quality = paired_oks(pred, gt, vis, area, self.sigmas).clamp(min=0.01)
            labels = labels.index_put((bi, qi), quality)
            focal = varifocal_loss(scores.float(), labels, gamma=c.focal_gamma)
        else:
            labels = labels.index_put((bi, qi), torch.ones_like(bi, dtype=torch.float32))
            focal = sigmoid_focal_loss(scores.float(), labels, c.focal_alpha, c.focal_gamma)
        # Queries on unlabelled people (ignore regions) are neither positives nor negatives.
        weight = 1.0 - (in_ignore(keypoints, tgt) & (labels == 0)).float()
        if valid is not None:
            weight = weight * valid
        kpt = self.keypoint_loss(pred, sig, gt, vis, area, flow, n, None if side is None else side[bi, qi])
        out = {f"{prefix}loss_cls": c.loss_cls * (focal * weight).sum() / n, f"{prefix}loss_kpt": c.loss_kpt * kpt}
        if c.loss_oks:
            out[f"{prefix}loss_oks"] = c.loss_oks * (1 - paired_oks(pred, gt, vis, area, self.sigmas)).sum() / n
        return out

    def forward(self, outputs: dict[str, torch.Tensor], tgt: TargetBatch, tracks: TrackBatch,
                enc_matches: list[Match], layer_matches: list[list[Match]],
                n: float | torch.Tensor | None = None) -> tuple[dict, tuple]:
        """Losses of the proposals and decoder layers of one frame batch.

        Args:
            outputs: the model's output dict (``scores`` [L, B, N + Q], ``keypoints`` [L, B, N + Q, K, 2], ...).
            tgt: the frame's people; tracks: its N track queries (rows 0..N-1 of the decoder outputs).
            enc_matches, layer_matches: from :meth:`match`.
            n: the loss normaliser (:func:`num_targets`; computed when not given).

        Returns:
            (weighted losses by log key, last layer's (image, query, target) index tensors).
        """
        device = outputs["scores"].device
        n = num_targets(tgt, device) if n is None else n
        enc = (outputs["enc_scores"], outputs["enc_keypoints"], outputs["enc_sigmas"])
        losses = self.stage_losses("enc_", *enc, tgt, pair_index(enc_matches, device), self.enc_flow, n,
                                   side=outputs.get("enc_side_logits"))
        valid = None
        if tracks.size:
            q = outputs["scores"].shape[-1] - tracks.size
            valid = torch.cat([tracks.mask, tracks.mask.new_ones(tracks.mask.shape[0], q)], 1).float()
        index = None
        for layer in range(self.num_layers):
            s, k, sg = outputs["scores"][layer], outputs["keypoints"][layer], outputs["sigmas"][layer]
            side = outputs["side_logits"][layer] if "side_logits" in outputs else None
            index = pair_index(layer_matches[layer], device)
            losses.update(self.stage_losses(layer_prefix(layer, self.num_layers), s, k, sg, tgt, index,
                                            self.dec_flow, n, valid, side))
        return losses, index

    def refine_losses(self, keypoints: torch.Tensor, sigmas: torch.Tensor, tgt: TargetBatch,
                      index: tuple[torch.Tensor, torch.Tensor, torch.Tensor], n: float | torch.Tensor,
                      side: torch.Tensor | None = None) -> dict:
        """RLE of each refinement layer: keypoints/sigmas [Lr, B, R, K, 2]; ``index`` (image, row,
        target) [M] says which refined row is which person; ``side`` [B, R, P] the rows' last-layer
        swap logits (side heads: the refiner keeps the decoder's order, so its loss is the same mixture)."""
        c = self.cfg
        bi, ri, ti = index
        gt, vis, area = tgt.keypoints[bi, ti], tgt.visible[bi, ti], tgt.area[bi, ti]
        z = None if side is None else side[bi, ri]
        out = {}
        for layer in range(keypoints.shape[0]):
            red = self.keypoint_loss(keypoints[layer, bi, ri].float(), sigmas[layer, bi, ri].float(), gt, vis, area,
                                     self.refine_flow, n, z)
            out[f"d{layer}.loss_kpt_refine"] = c.loss_kpt * red
            if c.loss_oks:  # the refined pose is the one shown and scored: it gets the OKS term too
                oks = paired_oks(keypoints[layer, bi, ri].float(), gt, vis, area, self.sigmas)
                out[f"d{layer}.loss_oks_refine"] = c.loss_oks * (1 - oks).sum() / n
        return out

    @staticmethod
    def total(losses: dict) -> dict:
        """``losses`` with ``loss``: the sum of all weighted terms."""
        return {**losses, "loss": sum(losses.values())}
