"""Pose decoder: queries refine a pose per frame of the temporal window, layer by layer.

Each query carries a reference pose for every window frame ([B, N, F, K, 2]); the cross-attention
samples each frame at that frame's pose of the person (PAVE-Net), and every layer predicts the
person's score and its current-frame pose (with RLE sigmas). A track query's pose in the other
window frames is its known pose there (the previous frame's, fed back); a detect query has none,
so it looks at the other frames where it now places the person.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from pavenet.model.attention import FeedForward, MultiHeadAttention, WindowDeformableAttention, sine_embedding
from pavenet.model.config import ModelConfig
from pavenet.model.side import SideHead

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


class PoseEmbedding(MLP):
    """A pose [..., K, 2] -> a position embedding [..., D]: ``sine`` embeds every keypoint's
    coordinates (DETR's sine, 16 channels per coordinate) before an MLP; ``mlp`` feeds the raw
    coordinates to the MLP."""

    CHANNELS = 32  # sine channels per keypoint (x and y)

    def __init__(self, kind: str, k: int, d: int):
        super().__init__(k * (self.CHANNELS if kind == "sine" else 2), d, d)
        self.sine = kind == "sine"

    def forward(self, keypoints: torch.Tensor) -> torch.Tensor:
        x = sine_embedding(keypoints, self.CHANNELS) if self.sine else keypoints
        return super().forward(x.flatten(-2))


class PoseHead(nn.Module):
    """Score logit, keypoint refinement (in logit space) and RLE sigma for each query; with
    ``side_pairs``, a :class:`~pavenet.model.side.SideHead` that puts each left/right pair in its
    likelier order."""

    def __init__(self, d: int, k: int, side_pairs: tuple[tuple[int, int], ...] = ()):
        super().__init__()
        self.k = k
        self.score = nn.Linear(d, 1)
        self.delta = zero_last(MLP(d, d, k * 2))
        self.sigma = nn.Linear(d, k * 2)
        self.side = SideHead(d, side_pairs, k) if side_pairs else None
        nn.init.constant_(self.score.bias, -math.log((1 - SCORE_PRIOR) / SCORE_PRIOR))

    def forward(self, x: torch.Tensor, reference: torch.Tensor):
        """x [B, N, D], reference [B, N, K, 2] -> (score [B, N], keypoints [B, N, K, 2], sigma [B, N, K, 2],
        swap logits [B, N, P] or None without side heads).

        ``sigma`` in (0, 1) is the RLE scale: relative to the person's size when the model's
        ``sigma_relative`` is on, else in normalised image units. With side heads, keypoints and
        sigmas are already in the likelier order."""
        shape = (*x.shape[:-1], self.k, 2)
        keypoints = torch.sigmoid(inverse_sigmoid(reference) + self.delta(x).view(shape))
        sigmas = torch.sigmoid(self.sigma(x)).view(shape)
        logits = None
        if self.side is not None:
            keypoints, sigmas, logits = self.side(x, keypoints, sigmas)
        return self.score(x).squeeze(-1), keypoints, sigmas, logits


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, frames: int):
        super().__init__()
        d = cfg.d_model
        self.self_attn = MultiHeadAttention(d, cfg.num_heads, cfg.dropout)
        self.norm1 = nn.LayerNorm(d)
        self.cross_attn = WindowDeformableAttention(d, cfg.num_heads, cfg.num_levels, frames, cfg.num_keypoints,
                                                    cfg.decoder_points, cfg.aligned_size)
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
    """``decoder_layers`` layers with a pose head each."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, k = cfg.d_model, cfg.num_keypoints
        frames = len(cfg.window_offsets)
        self.current = cfg.window_offsets.index(0)
        self.pose_embed = PoseEmbedding(cfg.pose_embed, k, d)
        self.layers = nn.ModuleList(DecoderLayer(cfg, frames) for _ in range(cfg.decoder_layers))
        pairs = cfg.side_pairs
        self.heads = nn.ModuleList(PoseHead(d, k, pairs) for _ in range(cfg.decoder_layers))

    def forward(self, query: torch.Tensor, window_ref: torch.Tensor, values: list[torch.Tensor],
                shapes: list[tuple[int, int]], mask: torch.Tensor | None = None,
                n_tracks: int = 0) -> dict[str, torch.Tensor]:
        """Decode.

        Args:
            query: [B, N + Q, D] N track queries followed by Q detect queries.
            window_ref: [B, N + Q, F, K, 2] reference pose of each query in each window frame.
            values: F tensors [B, S, D] (tokens of each window frame).
            mask: [B, N + Q] bool, False for padding rows (training batches of unequal track counts).
            n_tracks: N; their poses in the other window frames stay as given.

        Returns:
            ``scores`` [L, B, N + Q], ``keypoints``/``sigmas`` [L, B, N + Q, K, 2] (current frame),
            ``window_keypoints`` [B, N + Q, F, K, 2] and ``hidden`` [B, N + Q, D] of the last layer;
            with side heads ``side_logits`` [L, B, N + Q, P] (keypoints already in the likelier order).
        """
        scores, keypoints, sigmas, sides = [], [], [], []
        c = self.current
        is_track = (torch.arange(query.shape[1], device=query.device) < n_tracks).view(1, -1, 1, 1)
        for layer, head in zip(self.layers, self.heads):
            ref = window_ref[:, :, c]
            query = layer(query, self.pose_embed(ref), window_ref, pose_scale(ref), values, shapes, mask)
            s, kp, sg, side = head(query, ref)
            sides.append(side)
            scores.append(s)
            keypoints.append(kp)
            sigmas.append(sg)
            now = kp.detach()
            window_ref = torch.stack([now if f == c else torch.where(is_track, window_ref[:, :, f], now)
                                      for f in range(window_ref.shape[2])], 2)
        out = {"scores": torch.stack(scores), "keypoints": torch.stack(keypoints), "sigmas": torch.stack(sigmas),
               "window_keypoints": window_ref, "hidden": query}
        if sides[0] is not None:
            out["side_logits"] = torch.stack(sides)
        return out


class TrackReanchor(nn.Module):
    """Track queries look at the current frame around their last pose and move their reference
    there before the first decoder layer (so they start from where the person is now)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, k = cfg.d_model, cfg.num_keypoints
        self.k = k
        self.pose_embed = PoseEmbedding(cfg.pose_embed, k, d)
        self.cross_attn = WindowDeformableAttention(d, cfg.num_heads, cfg.num_levels, 1, k, cfg.decoder_points,
                                                    cfg.aligned_size)
        self.norm = nn.LayerNorm(d)
        self.ffn = FeedForward(d, cfg.ffn_dim, cfg.dropout)
        self.delta = zero_last(MLP(d, d, k * 2))

    def forward(self, query: torch.Tensor, keypoints: torch.Tensor, value: torch.Tensor, shapes):
        """query [B, N, D], keypoints [B, N, K, 2], value [B, S, D] -> (query, keypoints) updated."""
        pos = self.pose_embed(keypoints)
        attn = self.cross_attn(query + pos, keypoints[:, :, None], pose_scale(keypoints), [value], shapes)
        query = self.ffn(self.norm(query + attn))
        moved = torch.sigmoid(inverse_sigmoid(keypoints) + self.delta(query).view(keypoints.shape))
        return query, moved
