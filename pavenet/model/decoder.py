"""Pose decoder: queries refine a pose per frame of the temporal window, layer by layer.

Each query carries a reference pose for every window frame ([B, N, F, K, 2]); the cross-attention
samples each frame at that frame's pose of the person (PAVE-Net), and every layer predicts the
person's score, its current-frame pose (with RLE sigmas) and, with one head per other frame
offset, its pose in the other window frames.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from pavenet.model.attention import FeedForward, MultiHeadAttention, WindowDeformableAttention
from pavenet.model.config import ModelConfig

SCORE_PRIOR = 0.01  # initial person probability of every query (focal-loss prior)


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    x = x.clamp(eps, 1 - eps)
    return torch.log(x / (1 - x))


def pose_scale(keypoints: torch.Tensor) -> torch.Tensor:
    """[..., K, 2] -> [..., 2] size of the pose's box (floored so tiny poses still look around)."""
    return (keypoints.amax(-2) - keypoints.amin(-2)).clamp(min=0.02)


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


def zero_last(mlp: MLP) -> MLP:
    """Start a refinement head at 'no change'."""
    nn.init.zeros_(mlp.layers[-1].weight)
    nn.init.zeros_(mlp.layers[-1].bias)
    return mlp


class PoseHead(nn.Module):
    """Score logit, keypoint refinement (in logit space) and RLE sigma for each query."""

    def __init__(self, d: int, k: int):
        super().__init__()
        self.k = k
        self.score = nn.Linear(d, 1)
        self.delta = zero_last(MLP(d, d, k * 2))
        self.sigma = nn.Linear(d, k * 2)
        nn.init.constant_(self.score.bias, -math.log((1 - SCORE_PRIOR) / SCORE_PRIOR))

    def forward(self, x: torch.Tensor, reference: torch.Tensor):
        """x [B, N, D], reference [B, N, K, 2] -> (score [B, N], keypoints [B, N, K, 2], sigma [B, N, K, 2])."""
        shape = (*x.shape[:-1], self.k, 2)
        keypoints = torch.sigmoid(inverse_sigmoid(reference) + self.delta(x).view(shape))
        return self.score(x).squeeze(-1), keypoints, torch.sigmoid(self.sigma(x)).view(shape)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, frames: int):
        super().__init__()
        d = cfg.d_model
        self.self_attn = MultiHeadAttention(d, cfg.num_heads, cfg.dropout)
        self.norm1 = nn.LayerNorm(d)
        self.cross_attn = WindowDeformableAttention(d, cfg.num_heads, cfg.num_levels, frames, cfg.num_keypoints,
                                                    cfg.decoder_points)
        self.norm2 = nn.LayerNorm(d)
        self.ffn = FeedForward(d, cfg.ffn_dim, cfg.dropout)

    def forward(self, query, pos, window_ref, scale, values, shapes, mask=None):
        """query/pos [B, N, D], window_ref [B, N, F, K, 2], scale [B, N, 2], values F x [B, S, D],
        mask [B, N] (False = padding) -> [B, N, D]."""
        qk = query + pos
        query = self.norm1(query + self.self_attn(qk, qk, query, mask))
        query = self.norm2(query + self.cross_attn(query + pos, window_ref, scale, values, shapes))
        return self.ffn(query)


class PoseDecoder(nn.Module):
    """``decoder_layers`` layers with a pose head each and a window head per other frame offset."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, k = cfg.d_model, cfg.num_keypoints
        frames = len(cfg.window_offsets)
        self.current = cfg.window_offsets.index(0)
        self.pose_embed = MLP(k * 2, d, d)
        self.layers = nn.ModuleList(DecoderLayer(cfg, frames) for _ in range(cfg.decoder_layers))
        self.heads = nn.ModuleList(PoseHead(d, k) for _ in range(cfg.decoder_layers))
        self.window_heads = nn.ModuleList(
            nn.ModuleList(zero_last(MLP(d, d, k * 2)) for _ in range(frames - 1)) for _ in range(cfg.decoder_layers))

    def forward(self, query: torch.Tensor, window_ref: torch.Tensor, values: list[torch.Tensor],
                shapes: list[tuple[int, int]], mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Decode.

        Args:
            query: [B, N, D] track queries followed by detect queries.
            window_ref: [B, N, F, K, 2] reference pose of each query in each window frame.
            values: F tensors [B, S, D] (tokens of each window frame).
            mask: [B, N] bool, False for padding rows (training batches of unequal track counts).

        Returns:
            ``scores`` [L, B, N], ``keypoints``/``sigmas`` [L, B, N, K, 2] (current frame),
            ``window_keypoints`` [B, N, F, K, 2] and ``hidden`` [B, N, D] of the last layer.
        """
        scores, keypoints, sigmas = [], [], []
        c = self.current
        for layer, head, wheads in zip(self.layers, self.heads, self.window_heads):
            ref = window_ref[:, :, c]
            pos = self.pose_embed(ref.flatten(2))
            query = layer(query, pos, window_ref, pose_scale(ref), values, shapes, mask)
            s, kp, sg = head(query, ref)
            scores.append(s)
            keypoints.append(kp)
            sigmas.append(sg)
            others = [f for f in range(window_ref.shape[2]) if f != c]
            frames = []
            for f in range(window_ref.shape[2]):
                if f == c:
                    frames.append(kp)
                else:
                    delta = wheads[others.index(f)](query).view(kp.shape)
                    frames.append(torch.sigmoid(inverse_sigmoid(window_ref[:, :, f]) + delta))
            window_ref = torch.stack(frames, 2).detach()
        return {"scores": torch.stack(scores), "keypoints": torch.stack(keypoints), "sigmas": torch.stack(sigmas),
                "window_keypoints": window_ref, "hidden": query}


class TrackReanchor(nn.Module):
    """Track queries look at the current frame around their last pose and move their reference
    there before the first decoder layer (so they start from where the person is now)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, k = cfg.d_model, cfg.num_keypoints
        self.k = k
        self.pose_embed = MLP(k * 2, d, d)
        self.cross_attn = WindowDeformableAttention(d, cfg.num_heads, cfg.num_levels, 1, k, cfg.decoder_points)
        self.norm = nn.LayerNorm(d)
        self.ffn = FeedForward(d, cfg.ffn_dim, cfg.dropout)
        self.delta = zero_last(MLP(d, d, k * 2))

    def forward(self, query: torch.Tensor, keypoints: torch.Tensor, value: torch.Tensor, shapes):
        """query [B, N, D], keypoints [B, N, K, 2], value [B, S, D] -> (query, keypoints) updated."""
        pos = self.pose_embed(keypoints.flatten(2))
        attn = self.cross_attn(query + pos, keypoints[:, :, None], pose_scale(keypoints), [value], shapes)
        query = self.ffn(self.norm(query + attn))
        moved = torch.sigmoid(inverse_sigmoid(keypoints) + self.delta(query).view(keypoints.shape))
        return query, moved
