"""PAVENet: a two-stage end-to-end pose transformer with track queries.

Data flow for one frame (PETR / PAVE-Net, with the user's track queries):

1. backbone + neck -> feature maps at strides 8/16/32(/64), D channels;
2. deformable encoder over the tokens of the coarsest ``encoder_levels`` levels;
3. two-stage proposals: every encoded token predicts a person score and a full pose; the top
   ``num_queries`` tokens become detect queries with their pose as reference;
4. track queries (hidden states + poses from the previous frame, given as inputs) are put in
   front of the detect queries;
5. pose decoder: self-attention, pose-aware deformable cross-attention, feed-forward; every
   layer predicts scores and refines the keypoints.

``forward`` returns tensors only, the same in training, evaluation and export. Keypoints are
normalised: (0, 0) is the top-left corner and (1, 1) the bottom-right corner of the input
image, so pixel x = kx * width - 0.5 in OpenCV's pixel-centre convention.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from pavenet.model.attention import (
    DeformableSelfAttention,
    FeedForward,
    MultiHeadAttention,
    PoseDeformableAttention,
)
from pavenet.model.backbone import build_backbone
from pavenet.model.config import ModelConfig

IMAGENET_MEAN = (123.675, 116.28, 103.53)  # RGB, 0-255
IMAGENET_STD = (58.395, 57.12, 57.375)
SCORE_PRIOR = 0.01  # initial person probability of every query (focal-loss prior)


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    x = x.clamp(eps, 1 - eps)
    return torch.log(x / (1 - x))


def sine_embedding(h: int, w: int, d: int, device=None) -> torch.Tensor:
    """[h*w, d] 2-D sine position embedding of cell centres (DETR)."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    pos = torch.stack([(xs.flatten() + 0.5) / w, (ys.flatten() + 0.5) / h], -1) * 2 * math.pi
    freq = 10000 ** (2 * (torch.arange(d // 4, device=device) // 1) / (d // 2))
    arg = pos[:, :, None] / freq  # [hw, 2, d/4]
    return torch.cat([arg.sin(), arg.cos()], -1).flatten(1)  # [hw, d]


def cell_centres(shapes: list[tuple[int, int]], device=None) -> torch.Tensor:
    """[S, 2] normalised centres of all cells of the given (h, w) grids, level after level."""
    out = []
    for h, w in shapes:
        ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                                torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
        out.append(torch.stack([(xs.flatten() + 0.5) / w, (ys.flatten() + 0.5) / h], -1))
    return torch.cat(out)


class MLP(nn.Module):
    def __init__(self, din: int, hidden: int, dout: int, layers: int = 2):
        super().__init__()
        dims = [din] + [hidden] * (layers - 1) + [dout]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class PoseHead(nn.Module):
    """Score logit, keypoint refinement and RLE sigma for each query (one per stage/layer)."""

    def __init__(self, d: int, k: int):
        super().__init__()
        self.k = k
        self.score = nn.Linear(d, 1)
        self.delta = MLP(d, d, k * 2)
        self.sigma = nn.Linear(d, k * 2)
        nn.init.constant_(self.score.bias, -math.log((1 - SCORE_PRIOR) / SCORE_PRIOR))
        nn.init.zeros_(self.delta.layers[-1].weight)
        nn.init.zeros_(self.delta.layers[-1].bias)

    def forward(self, x: torch.Tensor, reference: torch.Tensor):
        """x [B, N, D], reference [B, N, K, 2] -> (score [B, N], keypoints [B, N, K, 2], sigma [B, N, K, 2])."""
        shape = (*x.shape[:-1], self.k, 2)
        keypoints = torch.sigmoid(inverse_sigmoid(reference) + self.delta(x).view(shape))
        return self.score(x).squeeze(-1), keypoints, torch.sigmoid(self.sigma(x)).view(shape)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn = DeformableSelfAttention(cfg.d_model, cfg.num_heads, cfg.encoder_levels, cfg.encoder_points)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.ffn = FeedForward(cfg.d_model, cfg.ffn_dim, cfg.dropout)

    def forward(self, src, pos, reference, shapes):
        src = self.norm(src + self.attn(src + pos, reference, src, shapes))
        return self.ffn(src)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.self_attn = MultiHeadAttention(d, cfg.num_heads, cfg.dropout)
        self.norm1 = nn.LayerNorm(d)
        self.cross_attn = PoseDeformableAttention(d, cfg.num_heads, cfg.num_levels, cfg.num_keypoints,
                                                  cfg.decoder_points)
        self.norm2 = nn.LayerNorm(d)
        self.ffn = FeedForward(d, cfg.ffn_dim, cfg.dropout)

    def forward(self, query, pos, keypoints, tokens, shapes):
        """query/pos [B, N, D], keypoints [B, N, K, 2], tokens [B, S_all, D] of levels ``shapes`` -> [B, N, D]."""
        qk = query + pos
        query = self.norm1(query + self.self_attn(qk, qk, query))
        query = self.norm2(query + self.cross_attn(query + pos, keypoints, tokens, shapes))
        return self.ffn(query)


class PAVENet(nn.Module):
    """The model. See the module docstring for the data flow and coordinate convention."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d, k = cfg.d_model, cfg.num_keypoints
        self.backbone = build_backbone(cfg.backbone, cfg.backbone_width, cfg.frozen_bn)
        chans = self.backbone.out_channels
        self.neck = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, d, 1), nn.GroupNorm(min(32, d // 4), d)) for c in chans)
        if cfg.num_levels == 4:
            self.neck.append(nn.Sequential(nn.Conv2d(chans[-1], d, 3, 2, 1), nn.GroupNorm(min(32, d // 4), d)))
        self.level_embed = nn.Parameter(torch.randn(cfg.num_levels, d) * 0.02)
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.enc_output = nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d))
        self.enc_head = PoseHead(d, k)
        self.query_proj = nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d))
        self.pose_embed = MLP(k * 2, d, d)
        self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        self.heads = nn.ModuleList(PoseHead(d, k) for _ in range(cfg.decoder_layers))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """images [B, 3, H, W] RGB 0-255 -> (tokens of all levels [B, S_all, D] for the decoder,
        encoded tokens [B, S, D] for the proposals, (h, w) of all levels)."""
        x = (images - self.mean) / self.std
        feats = self.backbone(x)
        maps = [neck(f) for neck, f in zip(self.neck, feats)]
        if self.cfg.num_levels == 4:
            maps.append(self.neck[3](feats[-1]))
        maps = [m + self.level_embed[i].view(1, -1, 1, 1) for i, m in enumerate(maps)]
        e = self.cfg.encoder_levels
        enc_maps = maps[-e:]
        shapes = [(m.shape[2], m.shape[3]) for m in enc_maps]
        src = torch.cat([m.flatten(2).transpose(1, 2) for m in enc_maps], 1)  # [B, S, D]
        pos = torch.cat([sine_embedding(h, w, self.cfg.d_model, src.device) for h, w in shapes])[None]
        reference = cell_centres(shapes, src.device)[None].expand(src.shape[0], -1, -1)
        for layer in self.encoder:
            src = layer(src, pos, reference, shapes)
        # The decoder samples every level: the finer (not encoded) maps, then the encoded tokens.
        fine = [m.flatten(2).transpose(1, 2) for m in maps[:-e]]
        all_shapes = [(m.shape[2], m.shape[3]) for m in maps]
        return torch.cat([*fine, src], 1), src, all_shapes

    def forward(self, images: torch.Tensor, track_queries: torch.Tensor | None = None,
                track_keypoints: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Run one frame.

        Args:
            images: [B, 3, H, W] float RGB in 0-255 at the config's input size.
            track_queries: [B, N, D] hidden states of last frame's tracked people (N may be 0).
            track_keypoints: [B, N, K, 2] their normalised poses in the last frame.

        Returns:
            ``scores`` [L, B, N + Q] logits, ``keypoints`` and ``sigmas`` [L, B, N + Q, K, 2] for
            each of the L decoder layers (rows 0..N-1 answer the track queries in order);
            ``hidden`` [B, N + Q, D] (the next frame's track queries); ``enc_scores`` [B, S],
            ``enc_keypoints`` and ``enc_sigmas`` [B, S, K, 2] for every encoder proposal.
        """
        b = images.shape[0]
        k, d = self.cfg.num_keypoints, self.cfg.d_model
        tokens, memory, all_shapes = self.encode(images)
        shapes = all_shapes[-self.cfg.encoder_levels:]
        anchors = cell_centres(shapes, images.device)[None, :, None, :].expand(b, -1, k, -1)
        enc_feat = self.enc_output(memory)
        enc_scores, enc_kpts, enc_sigmas = self.enc_head(enc_feat, anchors)
        top = enc_scores.topk(self.cfg.num_queries, dim=1).indices  # [B, Q]
        query = self.query_proj(torch.gather(enc_feat, 1, top[..., None].expand(-1, -1, d)).detach())
        reference = torch.gather(enc_kpts, 1, top[..., None, None].expand(-1, -1, k, 2)).detach()
        if track_queries is not None:
            query = torch.cat([track_queries, query], 1)
            reference = torch.cat([track_keypoints, reference], 1)
        scores, keypoints, sigmas = [], [], []
        for layer, head in zip(self.decoder, self.heads):
            pos = self.pose_embed(reference.flatten(2))
            query = layer(query, pos, reference, tokens, all_shapes)
            s, kp, sg = head(query, reference)
            scores.append(s)
            keypoints.append(kp)
            sigmas.append(sg)
            reference = kp.detach()
        return {
            "scores": torch.stack(scores), "keypoints": torch.stack(keypoints), "sigmas": torch.stack(sigmas),
            "hidden": query, "enc_scores": enc_scores, "enc_keypoints": enc_kpts, "enc_sigmas": enc_sigmas,
        }


def param_groups(model: PAVENet, lr: float, weight_decay: float, low_lr_factor: float = 0.1) -> list[dict]:
    """AdamW groups: the backbone and the sampling offsets train at 0.1x lr (Deformable DETR, PAVE-Net)."""
    low, normal = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        slow = name.startswith("backbone.") or "sampling_offsets" in name
        (low if slow else normal).append(p)
    return [{"params": normal, "lr": lr, "weight_decay": weight_decay, "name": "main"},
            {"params": low, "lr": lr * low_lr_factor, "weight_decay": weight_decay, "name": "low_lr"}]


def build_model(cfg: ModelConfig) -> PAVENet:
    return PAVENet(cfg)
