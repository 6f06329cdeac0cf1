"""One training step on a batch of clips: frames in order, each frame's track queries handed over
from the one before as the runtime hands them (:mod:`training.objective.tracking`); only the last
``grad_frames`` frames keep activations and receive losses (earlier ones run under no_grad)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pavenet.model.attention import reuse_values
from pavenet.model.pavenet import PAVENet
from pavenet.model.step import keypoint_confidence
from training.objective.criterion import SetCriterion, num_targets, pair_index
from training.objective.matcher import TargetBatch
from training.objective.tracking import (
    TrackBatch,
    build_tracks,
    diagnostics,
    fuse_tracks,
    pinned,
    plan_handover,
    reseat_tracks,
    track_detect_rows,
)


class TrainStep(nn.Module):
    """Model + criterion in one module, so DDP sees every trained parameter (flows included).

    forward(images uint8 [B, T, 3, H, W], targets T x TargetBatch, seeds [B]) -> (losses, diagnostic sums)
    Losses are averaged over the frames of the gradient window; ``loss`` is their sum.
    ``feed`` is the pose a track is fed with: ``refined`` (what the runtime feeds) or ``decoder``
    (the last decoder layer's; the first shipped model). ``reuse_values`` (default on): each
    frame's tokens are projected once per attention layer and reused while the frame is in a
    window (:func:`pavenet.model.attention.reuse_values`; same losses and gradients).
    """

    def __init__(self, model: PAVENet, criterion: SetCriterion, grad_frames: int = 1, feed: str = "refined"):
        super().__init__()
        self.model, self.criterion = model, criterion
        self.grad_frames, self.feed = grad_frames, feed
        self.reuse_values = True

    def forward(self, images: torch.Tensor, targets: list[TargetBatch],
                seeds: torch.Tensor | None = None) -> tuple[dict, dict]:
        if not self.reuse_values:
            return self._clip(images, targets, seeds)
        with reuse_values(self.model):  # each frame's value projections made once per layer, not per window
            return self._clip(images, targets, seeds)

    def _clip(self, images: torch.Tensor, targets: list[TargetBatch],
              seeds: torch.Tensor | None) -> tuple[dict, dict]:
        b, frames = images.shape[:2]
        first_grad = frames - min(self.grad_frames, frames)
        grad_on = torch.is_grad_enabled()
        seeds = seeds.tolist() if seeds is not None else range(b)
        rngs = [np.random.default_rng([int(s), 7]) for s in seeds] if self.training else None
        rules = self.criterion.rules
        reset = np.array([r.random() < rules.reset for r in rngs]) if rngs is not None else None
        tokens, fines = [], []
        for t in range(frames):  # each frame is encoded once and reused while it is in a window
            with torch.set_grad_enabled(grad_on and t >= first_grad):
                frame_tokens, fine = self.model.encode_fine(images[:, t].float())
                tokens.append(frame_tokens)
                fines.append(fine)
        cfg = self.model.cfg
        tracks = TrackBatch.empty(b, cfg.d_model, cfg.num_keypoints, images.device)
        losses: dict = {}
        sums: dict = {}
        for t in range(frames):
            trained = t >= first_grad
            with torch.set_grad_enabled(grad_on and trained):
                window = [tokens[t + o] if 0 <= t + o < frames else tokens[t] for o in cfg.window_offsets]
                given = tracks.size > 0
                out = self.model.detect(tokens[t], window, tracks.queries if given else None,
                                        tracks.keypoints if given else None, tracks.mask if given else None)
                tgt = targets[t]
                enc_m, layer_m, probs = self.criterion.match(out, tgt, tracks, all_stages=trained)
                last = layer_m[-1]
                plan = plan_handover(probs, last, tracks, tgt.ids_host, rules, rngs,
                                     reset if t + 1 == first_grad else None)
                rows, index_rows, refined = self._refine(out, last, plan.rows, window, fines[t])
                if trained:
                    n = num_targets(tgt, images.device)  # once per frame: under DDP it is a collective
                    frame_losses, index = self.criterion(out, tgt, tracks, enc_m, layer_m, n)
                    if refined is not None:
                        ref_index = self._refine_index(last, rows, images.device)
                        side = out.get("side_logits")
                        if side is not None:  # the refined rows' last-layer swap logits [B, R, P]
                            side = torch.gather(side[-1], 1, index_rows[..., None].expand(-1, -1, side.shape[-1]))
                        frame_losses.update(self.criterion.refine_losses(*refined, tgt, ref_index, n, side))
                    for k, v in frame_losses.items():
                        losses[k] = losses.get(k, 0) + v / (frames - first_grad)
                    bi, qi, ti = index
                    err = (out["keypoints"][-1].detach()[bi, qi] - tgt.keypoints[bi, ti]).abs().sum(-1)  # [M, K]
                    vis = tgt.visible[bi, ti].float()
                    frame_diag = diagnostics(last, tracks, tgt.ids_host, (err * vis).sum(-1), 2 * vis.sum(-1),
                                             qi < tracks.size)
                    for k, v in frame_diag.items():
                        sums[k] = sums.get(k, 0.0) + v
            pose, sig = out["keypoints"][-1].detach(), out["sigmas"][-1].detach()
            if refined is not None and self.feed == "refined":  # rows the refiner saw take its pose
                kp, ks = refined[0][-1].detach(), refined[1][-1].detach()
                pose = pose.scatter(1, index_rows[..., None, None].expand_as(kp), kp)
                sig = sig.scatter(1, index_rows[..., None, None].expand_as(ks), ks)
            hidden = out["hidden"]
            if rules.fuse_dist > 0 and tracks.size and pose.shape[1] > tracks.size:  # the runtime's fusion
                kscore = keypoint_confidence(pose, sig, cfg.sigma_relative)
                rows = track_detect_rows(pose, tracks.size, tracks.mask, rules.fuse_dist)
                pose = fuse_tracks(pose, kscore, tracks.size, tracks.mask, rules.fuse_dist, rows)
                if rules.reseat_dist > 0:  # and its re-seat of tracks on their detect query
                    hidden = reseat_tracks(hidden, tracks.size, rows, rules.reseat_dist)
            tracks = build_tracks(plan, hidden, pose, tracks.keypoints, tracks.size)
        return SetCriterion.total(losses), sums

    def _refine(self, out: dict, matches: list, keep: list[list[int]], window: list[torch.Tensor],
                fine: torch.Tensor | None):
        """Run the refiner on the rows that are matched or become tracks (the runtime refines all
        rows; no other row's refined pose is used). Returns (rows [B, R] on the host, the same on the
        device, (keypoints, sigmas) [Lr, B, R, K, 2]), or Nones without a refiner or rows."""
        if self.model.refiner is None:
            return None, None, None
        chosen = [sorted(set(r.tolist()) | set(k)) for (r, _), k in zip(matches, keep)]
        size = max((len(c) for c in chosen), default=0)
        if size == 0:
            return None, None, None
        rows = np.zeros((len(chosen), size), np.int64)
        for i, c in enumerate(chosen):
            rows[i, :len(c)] = c
            rows[i, len(c):] = c[0] if c else 0  # padding repeats a real row (its result is unused)
        index = pinned(rows, out["hidden"].device)
        hidden = torch.gather(out["hidden"], 1, index[..., None].expand(-1, -1, out["hidden"].shape[-1]))
        wk = out["window_keypoints"]
        wk = torch.gather(wk, 1, index[:, :, None, None, None].expand(-1, -1, *wk.shape[2:]))
        return rows, index, self.model.refine(hidden, wk, window, fine)

    @staticmethod
    def _refine_index(matches: list, rows: np.ndarray, device) -> tuple[torch.Tensor, ...]:
        """(image, refined row, target) of every last-layer match; ``rows`` [B, R] host row numbers."""
        pairs = []
        for b, (q, c) in enumerate(matches):
            row_of = {int(v): j for j, v in reversed(list(enumerate(rows[b])))}
            pairs.append((np.array([row_of[int(x)] for x in q], np.int64), c))
        return pair_index(pairs, device)
