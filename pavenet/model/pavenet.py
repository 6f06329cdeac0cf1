"""PAVENet: a two-stage end-to-end pose transformer with track queries.

Data flow for one frame (PETR / PAVE-Net, with track queries):

1. backbone + neck -> feature maps at strides 8/16/32(/64), D channels;
2. deformable encoder over the tokens of the coarsest ``encoder_levels`` levels;
3. two-stage proposals: every encoded token predicts a person score and a full pose; the top
   ``num_queries`` tokens become detect queries with their pose as reference;
4. track queries (hidden states + poses from the previous frame, given as inputs) are put in
   front of the detect queries;
5. pose decoder over a temporal window of frames (``causal`` {t-1, t} or ``centred``
   {t-1, t, t+1}): self-attention, pose-aware deformable cross-attention that samples each
   window frame at the person's pose in that frame, feed-forward; every layer predicts scores
   and refines the keypoints;
6. keypoint refinement decoder: per-keypoint queries sample around each keypoint in the window;
   with ``fine_grid``, a stride-4 head then moves each keypoint within a small grid of cells.

The tokens of a frame are computed once and reused while the frame stays in the window: the
caller passes the previous (and next) frame's ``tokens`` back in as ``context``.

``forward`` returns tensors only, the same in training, evaluation and export. Keypoints are
normalised: (0, 0) is the top-left corner and (1, 1) the bottom-right corner of the input
image, so pixel x = kx * width - 0.5 in OpenCV's pixel-centre convention.
"""

from __future__ import annotations

import torch
from torch import nn

from pavenet.model.attention import DeformableSelfAttention, FeedForward, cell_shift, sine_embedding
from pavenet.model.backbone import build_backbone
from pavenet.model.config import ModelConfig
from pavenet.model.decoder import PoseDecoder, PoseHead, TrackReanchor
from pavenet.model.refine import KeypointRefiner

IMAGENET_MEAN = (123.675, 116.28, 103.53)  # RGB, 0-255
IMAGENET_STD = (58.395, 57.12, 57.375)
def cell_centres(shapes: list[tuple[int, int]], device=None,
                 image_size: tuple[int, int] | None = None) -> torch.Tensor:
    """[S, 2] normalised centres of all cells of the given (h, w) grids, level after level:
    ``(j + 0.5) / w``, shifted to the strided convolutions' centres when ``image_size`` (H, W) is
    given (see :func:`pavenet.model.attention.cell_shift`)."""
    out = []
    for h, w in shapes:
        ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                                torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
        sx, sy = cell_shift((h, w), image_size)
        out.append(torch.stack([(xs.flatten() + 0.5) / w - sx, (ys.flatten() + 0.5) / h - sy], -1))
    return torch.cat(out)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn = DeformableSelfAttention(cfg.d_model, cfg.num_heads, cfg.encoder_levels, cfg.encoder_points,
                                            cfg.aligned_size)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.ffn = FeedForward(cfg.d_model, cfg.ffn_dim, cfg.dropout)

    def forward(self, src, pos, reference, shapes):
        src = self.norm(src + self.attn(src + pos, reference, src, shapes))
        return self.ffn(src)


class PAVENet(nn.Module):
    """The model. See the module docstring for the data flow and coordinate convention."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d, k = cfg.d_model, cfg.num_keypoints
        self.backbone = build_backbone(cfg.backbone, cfg.backbone_width, cfg.frozen_bn, cfg.stride8_blocks)
        chans = self.backbone.out_channels
        self.neck = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, d, 1), nn.GroupNorm(min(32, d // 4), d)) for c in chans)
        if cfg.num_levels == 4:
            self.neck.append(nn.Sequential(nn.Conv2d(chans[-1], d, 3, 2, 1), nn.GroupNorm(min(32, d // 4), d)))
        self.level_embed = nn.Parameter(torch.randn(cfg.num_levels, d) * 0.02)
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.enc_output = nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d))
        self.enc_head = PoseHead(d, k, cfg.side_pairs)
        self.query_proj = nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d))
        self.reanchor = TrackReanchor(cfg) if cfg.track_reanchor else None
        self.decoder = PoseDecoder(cfg)
        self.refiner = KeypointRefiner(cfg, self.backbone.fine_channels) if cfg.refine_layers else None
        self.current = cfg.window_offsets.index(0)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def level_shapes(self) -> list[tuple[int, int]]:
        return [(self.cfg.input_height // s, self.cfg.input_width // s) for s in self.cfg.strides]

    @property
    def uses_fine(self) -> bool:
        """Whether :meth:`refine` needs the frame's stride-4 map (a ``fine_grid`` head)."""
        return self.refiner is not None and self.refiner.fine is not None

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] RGB 0-255 -> tokens [B, S_all, D] of every level (finest first).

        The coarsest ``encoder_levels`` levels went through the deformable encoder; the finer
        ones are the neck's features (sampled by the decoder for small people).
        """
        return self.encode_fine(images)[0]

    def encode_fine(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`encode`, and the backbone's stride-4 map [B, C, H/4, W/4] when the model has
        a stride-4 head (:attr:`uses_fine`; else None)."""
        x = (images - self.mean) / self.std
        fine, feats = self.backbone(x, with_fine=True)
        maps = [neck(f) for neck, f in zip(self.neck, feats)]
        if self.cfg.num_levels == 4:
            maps.append(self.neck[3](feats[-1]))
        maps = [m + self.level_embed[i].view(1, -1, 1, 1) for i, m in enumerate(maps)]
        e = self.cfg.encoder_levels
        shapes = self.level_shapes[-e:]
        src = torch.cat([m.flatten(2).transpose(1, 2) for m in maps[-e:]], 1)  # [B, S, D]
        centres = cell_centres(shapes, src.device, self.cfg.aligned_size)
        pos = sine_embedding(centres, self.cfg.d_model)[None]
        reference = centres[None].expand(src.shape[0], -1, -1)
        for layer in self.encoder:
            src = layer(src, pos, reference, shapes)
        finer = [m.flatten(2).transpose(1, 2) for m in maps[:-e]]
        return torch.cat([*finer, src], 1), (fine if self.uses_fine else None)

    def detect(self, tokens: torch.Tensor, window: list[torch.Tensor], track_queries: torch.Tensor | None = None,
               track_keypoints: torch.Tensor | None = None,
               track_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Proposals and pose decoder for the current frame (its ``tokens`` are ``window[current]``).

        ``track_mask`` [B, N] (False = padding) lets a training batch carry unequal numbers of
        track queries; inference never needs it.

        Returns the encoder proposals (``enc_scores`` [B, S], ``enc_keypoints``/``enc_sigmas``
        [B, S, K, 2], with side heads ``enc_side_logits`` [B, S, P]) and the decoder outputs (see
        :class:`PoseDecoder`); rows 0..N-1 of the decoder outputs answer the N track queries in order.
        """
        b = tokens.shape[0]
        k, d = self.cfg.num_keypoints, self.cfg.d_model
        shapes = self.level_shapes
        enc_shapes = shapes[-self.cfg.encoder_levels:]
        memory = tokens[:, -self.cfg.num_proposal_tokens:]
        anchors = cell_centres(enc_shapes, tokens.device, self.cfg.aligned_size)[None, :, None, :].expand(b, -1, k, -1)
        enc_feat = self.enc_output(memory)
        enc_scores, enc_kpts, enc_sigmas, enc_side = self.enc_head(enc_feat, anchors)
        top = enc_scores.topk(self.cfg.num_queries, dim=1).indices  # [B, Q]
        query = self.query_proj(torch.gather(enc_feat, 1, top[..., None].expand(-1, -1, d)).detach())
        reference = torch.gather(enc_kpts, 1, top[..., None, None].expand(-1, -1, k, 2)).detach()
        frames = len(window)
        window_ref = reference[:, :, None].expand(-1, -1, frames, -1, -1)
        if track_queries is not None:
            prev = track_keypoints
            if self.reanchor is not None:
                track_queries, now = self.reanchor(track_queries, track_keypoints, tokens, shapes)
            else:
                now = track_keypoints
            # A track query's previous-frame pose is known exactly; the current and next start from its move.
            track_ref = torch.stack([prev if off < 0 else now for off in self.cfg.window_offsets], 2)
            query = torch.cat([track_queries, query], 1)
            window_ref = torch.cat([track_ref, window_ref], 1)
        mask = None
        if track_mask is not None:
            mask = torch.cat([track_mask, track_mask.new_ones(b, self.cfg.num_queries)], 1)
        n_tracks = 0 if track_queries is None else track_queries.shape[1]
        out = self.decoder(query, window_ref, window, shapes, mask, n_tracks)
        out.update(enc_scores=enc_scores, enc_keypoints=enc_kpts, enc_sigmas=enc_sigmas)
        if enc_side is not None:
            out["enc_side_logits"] = enc_side
        return out

    def refine(self, hidden: torch.Tensor, window_keypoints: torch.Tensor, window: list[torch.Tensor],
               fine: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoint refinement of R persons: hidden [B, R, D], window_keypoints [B, R, F, K, 2],
        ``fine`` the current frame's stride-4 map (:meth:`encode_fine`; models with a stride-4
        head) -> keypoints, sigmas [Lr, B, R, K, 2] (Lr = 0 without a refiner; one more layer
        with the stride-4 head)."""
        if self.refiner is None:
            shape = (0, *window_keypoints[:, :, self.current].shape)
            return window_keypoints.new_zeros(shape), window_keypoints.new_zeros(shape)
        return self.refiner(hidden, window_keypoints.detach(), window, self.level_shapes, fine)

    def window_tokens(self, tokens: torch.Tensor, context: list[torch.Tensor | None] | None) -> list[torch.Tensor]:
        """Tokens of every window frame; a missing neighbour (start or end of a video) is the
        current frame again."""
        offsets = self.cfg.window_offsets
        context = list(context or [])
        out = []
        for off in offsets:
            if off == 0:
                out.append(tokens)
            else:
                given = context.pop(0) if context else None
                out.append(tokens if given is None else given)
        return out

    def forward(self, images: torch.Tensor, track_queries: torch.Tensor | None = None,
                track_keypoints: torch.Tensor | None = None,
                context: list[torch.Tensor | None] | None = None) -> dict[str, torch.Tensor]:
        """Run one frame.

        Args:
            images: [B, 3, H, W] float RGB in 0-255 at the config's input size.
            track_queries: [B, N, D] hidden states of last frame's tracked people (N may be 0).
            track_keypoints: [B, N, K, 2] their normalised poses in the last frame.
            context: tokens of the window's other frames in offset order (e.g. ``[previous]``
                for ``causal``); ``None`` entries mean "not available".

        Returns:
            ``scores`` [L, B, N + Q] logits, ``keypoints``/``sigmas`` [L, B, N + Q, K, 2] per decoder
            layer, ``window_keypoints`` [B, N + Q, F, K, 2], ``hidden`` [B, N + Q, D] (next
            frame's track queries), ``refine_keypoints``/``refine_sigmas`` [Lr, B, N + Q, K, 2],
            the encoder proposals, and ``tokens`` [B, S_all, D] of this frame (next step's context).
        """
        tokens, fine = self.encode_fine(images)
        window = self.window_tokens(tokens, context)
        out = self.detect(tokens, window, track_queries, track_keypoints)
        out["refine_keypoints"], out["refine_sigmas"] = self.refine(out["hidden"], out["window_keypoints"], window,
                                                                    fine)
        out["tokens"] = tokens
        return out


def param_groups(model: PAVENet, lr: float, weight_decay: float, low_lr_factor: float = 0.1,
                 pretrained_backbone: bool = True) -> list[dict]:
    """AdamW groups: sampling offsets, and a pretrained backbone, train at 0.1x lr (Deformable DETR,
    PAVE-Net). A backbone trained from scratch needs the full rate."""
    low, normal = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        slow = (pretrained_backbone and name.startswith("backbone.")) or "sampling_offsets" in name
        (low if slow else normal).append(p)
    return [{"params": normal, "lr": lr, "weight_decay": weight_decay, "name": "main"},
            {"params": low, "lr": lr * low_lr_factor, "weight_decay": weight_decay, "name": "low_lr"}]


def build_model(cfg: ModelConfig) -> PAVENet:
    return PAVENet(cfg)
