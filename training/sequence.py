"""One training step on a batch of clips: frames in order, each with the previous frame's track
queries; only the last ``grad_frames`` frames keep activations and receive losses."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pavenet.model.pavenet import PAVENet
from training.criterion import SetCriterion
from training.matcher import Targets
from training.tracking import TrackBatch, diagnostics, select_tracks


class TrainStep(nn.Module):
    """Model + criterion in one module, so DDP sees every trained parameter (flows included).

    forward(images uint8 [B, T, 3, H, W], targets T x B Targets, seeds [B]) -> (losses, diagnostic sums)
    Losses are averaged over the frames of the gradient window; ``loss`` is their sum.
    """

    def __init__(self, model: PAVENet, criterion: SetCriterion, grad_frames: int = 1, score_thr: float = 0.3,
                 max_tracks: int = 100, drop: float = 0.4, fp: float = 0.1):
        super().__init__()
        self.model, self.criterion = model, criterion
        self.grad_frames, self.score_thr, self.max_tracks = grad_frames, score_thr, max_tracks
        self.drop, self.fp = drop, fp

    def forward(self, images: torch.Tensor, targets: list[list[Targets]],
                seeds: torch.Tensor | None = None) -> tuple[dict, dict]:
        b, frames = images.shape[:2]
        first_grad = frames - min(self.grad_frames, frames)
        grad_on = torch.is_grad_enabled()
        rngs = [np.random.default_rng([int(s), 7]) for s in (seeds if seeds is not None else range(b))]
        tokens = []
        for t in range(frames):  # each frame is encoded once and reused while it is in a window
            with torch.set_grad_enabled(grad_on and t >= first_grad):
                tokens.append(self.model.encode(images[:, t].float()))
        cfg = self.model.cfg
        tracks = TrackBatch.empty(b, cfg.d_model, cfg.num_keypoints, images.device)
        losses: dict = {}
        sums: dict = {}
        for t in range(frames):
            grad = grad_on and t >= first_grad
            with torch.set_grad_enabled(grad):
                window = [tokens[t + o] if 0 <= t + o < frames else tokens[t] for o in cfg.window_offsets]
                given = tracks.size > 0
                out = self.model.detect(tokens[t], window, tracks.queries if given else None,
                                        tracks.keypoints if given else None, tracks.mask if given else None)
                if t >= first_grad:
                    frame_losses, matches = self.criterion(out, targets[t], tracks)
                    frame_losses.update(self._refine(out, matches, targets[t], window))
                    for k, v in frame_losses.items():
                        losses[k] = losses.get(k, 0) + v / (frames - first_grad)
                    for k, v in diagnostics(matches, tracks, targets[t], out["keypoints"][-1].detach()).items():
                        sums[k] = sums.get(k, 0.0) + v
                else:
                    matches = self.criterion.match(out["scores"][-1], out["keypoints"][-1], targets[t], tracks)
            train = self.training
            tracks = select_tracks(out, matches, targets[t], self.score_thr, self.max_tracks,
                                   self.drop if train else 0.0, self.fp if train else 0.0, rngs)
        return SetCriterion.total(losses), sums

    def _refine(self, out: dict, matches: list, targets: list[Targets], window: list[torch.Tensor]) -> dict:
        """Refinement losses on the matched queries only."""
        if self.model.refiner is None:
            return {}
        layers = self.model.cfg.refine_layers
        r = max((len(rows) for rows, _ in matches), default=0)
        if r == 0:
            zero = out["hidden"].sum() * 0
            return {f"d{i}.loss_kpt_refine": zero for i in range(layers)}
        b = len(matches)
        index = torch.zeros(b, r, dtype=torch.long, device=out["hidden"].device)
        for i, (rows, _) in enumerate(matches):
            index[i, :len(rows)] = torch.as_tensor(rows, device=index.device)
        hidden = torch.gather(out["hidden"], 1, index[..., None].expand(-1, -1, out["hidden"].shape[-1]))
        wk = out["window_keypoints"]
        wk = torch.gather(wk, 1, index[:, :, None, None, None].expand(-1, -1, *wk.shape[2:]))
        kps, sigmas = self.model.refine(hidden, wk, window)
        return self.criterion.refine_losses(kps, sigmas, targets, [cols for _, cols in matches])
