"""Keypoint refinement decoder (PAVE-Net): one query per keypoint of each person.

A keypoint query starts from the person's hidden state, a learned embedding of its slot and the
keypoint's motion across the window (its position in the previous and, where the window has
one, the next frame, relative to the current one). Each layer lets the K keypoints of a person
attend to each other, samples features around the keypoint in every window frame, and moves the
keypoint (with a new RLE sigma). Logged as ``d0.loss_kpt_refine``, ``d1.loss_kpt_refine``; with
``fine_grid`` the stride-4 head (:mod:`pavenet.model.fine`) adds one more layer after them.
"""

from __future__ import annotations

import torch
from torch import nn

from pavenet.model.attention import FeedForward, MultiHeadAttention, WindowDeformableAttention
from pavenet.model.config import ModelConfig
from pavenet.model.decoder import MLP, inverse_sigmoid, pose_scale
from pavenet.model.fine import FineKeypointHead


class RefineLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, frames: int):
        super().__init__()
        d = cfg.d_model
        self.self_attn = MultiHeadAttention(d, cfg.num_heads, cfg.dropout)
        self.norm1 = nn.LayerNorm(d)
        self.cross_attn = WindowDeformableAttention(d, cfg.num_heads, cfg.num_levels, frames, 1, cfg.refine_points,
                                                    cfg.aligned_size)
        self.norm2 = nn.LayerNorm(d)
        self.ffn = FeedForward(d, cfg.ffn_dim, cfg.dropout)
        self.delta = nn.Linear(d, 2)
        self.sigma = nn.Linear(d, 2)
        nn.init.zeros_(self.delta.weight)
        nn.init.zeros_(self.delta.bias)

    def forward(self, x, pos, anchors, scale, values, shapes):
        """x/pos [B, R, K, D]; anchors [B, R, K, F, 2]; scale [B, R, 2] -> (x, delta [B, R, K, 2], sigma)."""
        b, r, k, d = x.shape
        flat = (x + pos).reshape(b * r, k, d)
        x = self.norm1(x + self.self_attn(flat, flat, x.reshape(b * r, k, d)).view(b, r, k, d))
        q = (x + pos).reshape(b, r * k, d)
        scale_k = scale[:, :, None].expand(b, r, k, 2).reshape(b, r * k, 2)
        attn = self.cross_attn(q, anchors.reshape(b, r * k, -1, 1, 2), scale_k, values, shapes)
        x = self.ffn(self.norm2(x + attn.view(b, r, k, d)))
        return x, self.delta(x), torch.sigmoid(self.sigma(x))


class KeypointRefiner(nn.Module):
    def __init__(self, cfg: ModelConfig, fine_channels: int = 0):
        super().__init__()
        d, k = cfg.d_model, cfg.num_keypoints
        frames = len(cfg.window_offsets)
        self.current = cfg.window_offsets.index(0)
        self.slot_embed = nn.Parameter(torch.randn(k, d) * 0.02)
        self.person_proj = nn.Linear(d, d)
        self.motion_embed = MLP(frames * 2, d, d)
        self.pos_embed = MLP(2, d, d)
        self.layers = nn.ModuleList(RefineLayer(cfg, frames) for _ in range(cfg.refine_layers))
        self.fine = FineKeypointHead(cfg, fine_channels) if cfg.fine_grid and cfg.refine_layers else None

    def forward(self, hidden: torch.Tensor, window_keypoints: torch.Tensor, values: list[torch.Tensor],
                shapes: list[tuple[int, int]], fine: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Refine.

        Args:
            hidden: [B, R, D] the persons' decoder states.
            window_keypoints: [B, R, F, K, 2] their poses in the window frames (detached).
            values: F tensors [B, S, D].
            fine: [B, C, H/4, W/4] the current frame's stride-4 map (needed with ``fine_grid``).

        Returns:
            keypoints, sigmas: [Lr, B, R, K, 2] after each refinement layer (and the stride-4 head).
        """
        c = self.current
        kp = window_keypoints[:, :, c]  # [B, R, K, 2]
        wk = window_keypoints.permute(0, 1, 3, 2, 4)  # [B, R, K, F, 2]
        motion = (wk - kp[:, :, :, None]).flatten(3) * 10  # displacements are small: scale to ~1
        x = self.slot_embed + self.person_proj(hidden)[:, :, None] + self.motion_embed(motion)
        scale = pose_scale(kp)
        out_kp, out_sigma = [], []
        for layer in self.layers:
            anchors = torch.cat([wk[..., :c, :], kp[..., None, :], wk[..., c + 1:, :]], 3)
            x, delta, sigma = layer(x, self.pos_embed(kp), anchors, scale, values, shapes)
            kp = torch.sigmoid(inverse_sigmoid(kp) + delta)
            out_kp.append(kp)
            out_sigma.append(sigma)
            kp = kp.detach()
        if self.fine is not None and out_kp:
            if fine is None:
                raise ValueError("this model has a stride-4 head: pass the frame's stride-4 map (encode_fine)")
            (h0, w0), b = shapes[0], x.shape[0]
            coarse = values[c][:, :h0 * w0].transpose(1, 2).reshape(b, -1, h0, w0)
            kp, sigma = self.fine(x, kp, out_sigma[-1].detach(), fine, coarse)
            out_kp.append(kp)
            out_sigma.append(sigma)
        if not out_kp:
            shape = (0, *window_keypoints[:, :, c].shape)
            return window_keypoints.new_zeros(shape), window_keypoints.new_zeros(shape)
        return torch.stack(out_kp), torch.stack(out_sigma)
