"""Attention blocks in plain PyTorch (run on CPU, export to ONNX with dynamic query counts).

``ms_deform_attn`` is multi-scale deformable attention (Deformable DETR, Zhu et al. 2021)
written with ``F.grid_sample``; the encoder uses it with points around each token, the pose
decoder with points anchored at each keypoint of a query's pose (PETR / PAVE-Net).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


def sine_embedding(points: torch.Tensor, d: int) -> torch.Tensor:
    """[..., 2] normalised points -> [..., d] 2-D sine position embedding (DETR)."""
    freq = 10000 ** (2 * torch.arange(d // 4, device=points.device, dtype=points.dtype) / (d // 2))
    arg = points[..., None] * (2 * math.pi) / freq  # [..., 2, d/4]
    return torch.cat([arg.sin(), arg.cos()], -1).flatten(-2)  # [..., d]


def cell_shift(shape: tuple[int, int], image_size: tuple[int, int] | None) -> tuple[float, float]:
    """Normalised (x, y) offset from where a grid of ``shape`` (h, w) cells has its centres,
    ``(j + 0.5) / w``, to where stride-2, pad-1 convolutions put them: input pixel ``s * j``
    (at stride ``s``), i.e. ``(s * j + 0.5) / W``. Zero when ``image_size`` (H, W) is None."""
    if image_size is None:
        return 0.0, 0.0
    (h, w), (big_h, big_w) = shape, image_size
    return 0.5 / w - 0.5 / big_w, 0.5 / h - 0.5 / big_h


def ms_deform_attn(values: list[torch.Tensor], locations: torch.Tensor, weights: torch.Tensor,
                   image_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Sample and mix multi-level features.

    Args:
        values: L tensors [B*M, Dh, H_l, W_l] (M heads, Dh channels per head).
        locations: [B, Q, M, L, P, 2] sampling points, normalised (0, 0) top-left to (1, 1)
            bottom-right of the image.
        weights: [B, Q, M, L, P] attention weights (already normalised).
        image_size: (H, W) of the input image: cells are then taken to be centred where the
            backbone's strided convolutions centre them (see :func:`cell_shift`).

    Returns:
        [B, Q, M * Dh].
    """
    b, q, m = locations.shape[:3]
    grids = (2 * locations - 1).permute(0, 2, 1, 3, 4, 5).flatten(0, 1)  # [B*M, Q, L, P, 2]
    w = weights.permute(0, 2, 1, 3, 4).flatten(0, 1)  # [B*M, Q, L, P]
    out = None
    for level, value in enumerate(values):
        grid = grids[:, :, level]
        sx, sy = cell_shift(tuple(value.shape[-2:]), image_size)
        if sx or sy:  # Python scalars, no tensor built from host data: the step stays CUDA-graph capturable
            grid = torch.stack([grid[..., 0] + 2 * sx, grid[..., 1] + 2 * sy], -1)
        # grid_sample: [B*M, Dh, H, W] x [B*M, Q, P, 2] -> [B*M, Dh, Q, P]
        sampled = F.grid_sample(value, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        term = (sampled * w[:, None, :, level]).sum(-1)  # [B*M, Dh, Q]
        out = term if out is None else out + term
    dh = values[0].shape[1]
    return out.view(b, m, dh, q).permute(0, 3, 1, 2).reshape(b, q, m * dh)


def split_heads(value: torch.Tensor, shapes: list[tuple[int, int]], heads: int) -> list[torch.Tensor]:
    """[B, S, D] flattened levels -> L tensors [B*M, D/M, H_l, W_l]."""
    b, _, d = value.shape
    # One split, not a slice per level: a slice's backward zero-fills a full [B, S, D] gradient each.
    parts = value.split([h * w for h, w in shapes], 1)  # [B, h*w, D] each
    return [v.transpose(1, 2).reshape(b * heads, d // heads, h, w) for v, (h, w) in zip(parts, shapes)]


class MultiHeadAttention(nn.Module):
    """Standard scaled dot-product attention, written out so exported shapes stay symbolic."""

    def __init__(self, d_model: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, N, D] x3 -> [B, N, D]; ``key_mask`` [B, N] bool, False = padding nobody attends to."""
        b, n, d = q.shape
        h = self.heads

        def heads(x: torch.Tensor) -> torch.Tensor:  # explicit sizes: -1 is ambiguous when B*N == 0
            return x.view(b, x.shape[1], h, d // h).transpose(1, 2)  # [B, h, N, D/h]

        attn = heads(self.q_proj(q)) @ heads(self.k_proj(k)).transpose(-1, -2) / math.sqrt(d // h)
        if key_mask is not None:
            attn = attn.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        out = self.dropout(attn.softmax(-1)) @ heads(self.v_proj(v))  # [B, h, N, D/h]
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class FeedForward(nn.Module):
    def __init__(self, d_model: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_model, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                 nn.Linear(hidden, d_model), nn.Dropout(dropout))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.net(x))


def _reset_projections(attn: nn.Module) -> None:
    """Uniform attention weights at start; Xavier value and output projections (Deformable DETR)."""
    nn.init.zeros_(attn.attention_weights.weight)
    nn.init.zeros_(attn.attention_weights.bias)
    for lin in (attn.value_proj, attn.output_proj):
        nn.init.xavier_uniform_(lin.weight)
        nn.init.zeros_(lin.bias)


class DeformableSelfAttention(nn.Module):
    """Encoder attention: each token samples P points per head and level around itself."""

    def __init__(self, d_model: int, heads: int, levels: int, points: int,
                 image_size: tuple[int, int] | None = None):
        super().__init__()
        self.heads, self.levels, self.points = heads, levels, points
        self.image_size = image_size
        self.sampling_offsets = nn.Linear(d_model, heads * levels * points * 2)
        self.attention_weights = nn.Linear(d_model, heads * levels * points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self._reset()

    def _reset(self) -> None:
        # Deformable DETR's init: points start on rays in 8 directions at growing distances.
        nn.init.zeros_(self.sampling_offsets.weight)
        theta = torch.arange(self.heads, dtype=torch.float32) * (2 * math.pi / self.heads)
        grid = torch.stack([theta.cos(), theta.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.heads, 1, 1, 2)
        grid = grid.repeat(1, self.levels, self.points, 1) * torch.arange(1, self.points + 1).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        _reset_projections(self)

    def forward(self, query: torch.Tensor, reference: torch.Tensor, value: torch.Tensor,
                shapes: list[tuple[int, int]]) -> torch.Tensor:
        """query [B, S, D] (with position), reference [B, S, 2], value [B, S, D] -> [B, S, D]."""
        b, s, _ = query.shape
        m, lv, p = self.heads, self.levels, self.points
        offsets = self.sampling_offsets(query).view(b, s, m, lv, p, 2)
        # offsets are in cells of each level: divide by the level's (w, h), given as Python scalars
        scaled = torch.stack([torch.stack([offsets[:, :, :, i, :, 0] / w, offsets[:, :, :, i, :, 1] / h], -1)
                              for i, (h, w) in enumerate(shapes)], 3)
        locations = reference[:, :, None, None, None, :] + scaled
        weights = self.attention_weights(query).view(b, s, m, lv * p).softmax(-1).view(b, s, m, lv, p)
        values = split_heads(self.value_proj(value), shapes, m)
        return self.output_proj(ms_deform_attn(values, locations, weights, self.image_size))


class WindowDeformableAttention(nn.Module):
    """Anchored deformable cross-attention over the frames of a temporal window (PETR, PAVE-Net).

    Each query has A anchor points in each of F frames (a pose's K keypoints, or one keypoint).
    Around every anchor it samples P points per head and level, with offsets scaled by the
    query's box size; one softmax runs over all points of all frames and levels.
    """

    def __init__(self, d_model: int, heads: int, levels: int, frames: int, anchors: int, points: int,
                 image_size: tuple[int, int] | None = None):
        super().__init__()
        self.heads, self.levels, self.frames, self.anchors, self.points = heads, levels, frames, anchors, points
        self.image_size = image_size
        n = heads * frames * levels * anchors * points
        self.sampling_offsets = nn.Linear(d_model, n * 2)
        self.attention_weights = nn.Linear(d_model, n)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        # Set by training (:func:`reuse_values`): a frame's projected tokens, kept while it is in a window.
        self.value_cache: dict | None = None
        # Every point starts on its anchor; the layer learns where around it to look.
        nn.init.zeros_(self.sampling_offsets.weight)
        nn.init.zeros_(self.sampling_offsets.bias)
        _reset_projections(self)

    def forward(self, query: torch.Tensor, anchors: torch.Tensor, scale: torch.Tensor,
                values: list[torch.Tensor], shapes: list[tuple[int, int]]) -> torch.Tensor:
        """Attend.

        Args:
            query: [B, N, D] (with position).
            anchors: [B, N, F, A, 2] normalised anchor points in each window frame.
            scale: [B, N, 2] offset scale (the pose's box size).
            values: F tensors [B, S, D], the tokens of every level of each window frame.
            shapes: (h, w) of the levels.

        Returns:
            [B, N, D].
        """
        b, n, _ = query.shape
        m, f, lv, a, p = self.heads, self.frames, self.levels, self.anchors, self.points
        offsets = self.sampling_offsets(query).view(b, n, m, f, lv, a, p, 2) * 0.5
        base = anchors[:, :, None, :, None, :, None, :]  # [B, N, 1, F, 1, A, 1, 2]
        locations = base + offsets * scale[:, :, None, None, None, None, None, :]
        locations = locations.reshape(b, n, m, f * lv, a * p, 2)
        weights = self.attention_weights(query).view(b, n, m, f * lv * a * p).softmax(-1)
        heads = [v for value in values for v in self._project(value, shapes)]
        return self.output_proj(ms_deform_attn(heads, locations, weights.view(b, n, m, f * lv, a * p),
                                               self.image_size))

    def _project(self, value: torch.Tensor, shapes: list[tuple[int, int]]) -> list[torch.Tensor]:
        """value_proj + split_heads of one frame's tokens [B, S, D], reused from ``value_cache`` when
        the same tensor was projected before in this clip (a training clip's frame t is the window
        of frames t and t + 1). A projection made without gradient is redone where one is needed."""
        cache = self.value_cache
        if cache is None:
            return split_heads(self.value_proj(value), shapes, self.heads)
        hit = cache.get(id(value))
        if hit is not None and (hit[1][0].requires_grad or not torch.is_grad_enabled()):
            return hit[1]
        heads = split_heads(self.value_proj(value), shapes, self.heads)
        cache[id(value)] = (value, heads)  # the tensor is held, so its id is not reused meanwhile
        return heads


@contextmanager
def reuse_values(model: nn.Module):
    """Within the block, every :class:`WindowDeformableAttention` of ``model`` projects each frame's
    tokens once and reuses the projection while the frame stays in a window (training runs the
    frames of a clip in order: frame t is the previous frame of t + 1). Same values and gradients
    as projecting each time; the caches are dropped on exit."""
    layers = [m for m in model.modules() if isinstance(m, WindowDeformableAttention)]
    for m in layers:
        m.value_cache = {}
    try:
        yield
    finally:
        for m in layers:
            m.value_cache = None


@torch.no_grad()
def spread_offsets(attn: WindowDeformableAttention, radius: float) -> None:
    """Add a starting spread to ``attn``'s sampling offsets: head m's points lie on a ray in
    direction 2*pi*m/M at distances radius * (p + 1) / P (in the layer's offset units: half the
    pose box), as Deformable DETR starts its points, instead of all on the anchor."""
    m, p = attn.heads, attn.points
    theta = torch.arange(m, dtype=torch.float32) * (2 * math.pi / m)
    ray = torch.stack([theta.cos(), theta.sin()], -1).view(m, 1, 1, 1, 1, 2)
    dist = (torch.arange(1, p + 1, dtype=torch.float32) / p).view(1, 1, 1, 1, p, 1)
    bias = attn.sampling_offsets.bias.view(m, attn.frames, attn.levels, attn.anchors, p, 2)
    bias += radius * ray * dist
