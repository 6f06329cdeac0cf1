"""Track queries in training: which queries are propagated, how they are matched, and the
tracking diagnostics of the user's log.

Matching (``track_assignment``):
- ``bonus`` (the user's default): one Hungarian over all queries; the cost of a track query for
  the person it was matched to in the previous frame is lowered by ``track_bonus``.
- ``hard`` (TrackFormer, MOTR): a track query whose person is still present is assigned to that
  person; Hungarian runs over the detect queries and the remaining people; track queries whose
  person is gone (and false-positive track queries) are trained towards background.

Diagnostics (detached, summed per step and turned into the log's averages by the trainer):
``n_trk`` track queries per image, ``n_trk_pos`` of them matched to a person, ``n_det_pos``
detect queries matched, ``trk_id_con`` fraction of matched track queries whose person is the one
they followed, ``trk_kpt_l1`` / ``det_kpt_l1`` mean keypoint L1 (normalised coordinates, visible
keypoints) of matched track / detect queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from training.matcher import HungarianMatcher, Targets, assign

BIG = 1e6  # cost of impossible pairs (padding rows)


@dataclass
class TrackBatch:
    """Track queries of a batch, padded to the largest count.

    Attributes:
        queries: [B, N, D] detached hidden states.
        keypoints: [B, N, K, 2] their poses in the previous frame.
        mask: [B, N] bool, False for padding.
        prev_ids: [B, N] int64, identity each followed in the previous frame (-1: none).
    """

    queries: torch.Tensor
    keypoints: torch.Tensor
    mask: torch.Tensor
    prev_ids: torch.Tensor

    @property
    def size(self) -> int:
        return self.queries.shape[1]

    @staticmethod
    def empty(b: int, d: int, k: int, device) -> TrackBatch:
        return TrackBatch(torch.zeros(b, 0, d, device=device), torch.zeros(b, 0, k, 2, device=device),
                          torch.zeros(b, 0, dtype=torch.bool, device=device),
                          torch.zeros(b, 0, dtype=torch.long, device=device))


def select_tracks(out: dict, matches: list, targets: list[Targets], score_thr: float, max_tracks: int,
                  drop: float = 0.0, fp: float = 0.0, rngs: list[np.random.Generator] | None = None) -> TrackBatch:
    """Next frame's track queries from this frame's last-layer outputs and matches.

    Queries scoring at least ``score_thr`` (at most ``max_tracks``, best first) are propagated
    with their detached hidden state and pose. In training, each is dropped with probability
    ``drop``, and with probability ``fp`` per kept query an unmatched confident query is added as
    a false-positive track query.
    """
    scores = out["scores"][-1].detach().sigmoid()  # [B, N]
    hidden, kpts = out["hidden"].detach(), out["keypoints"][-1].detach()
    b, _, d = hidden.shape
    chosen, ids = [], []
    for i in range(b):
        rows, cols = matches[i]
        follow = {int(r): int(targets[i].track_ids[c]) for r, c in zip(rows, cols)}
        order = torch.argsort(scores[i], descending=True).tolist()
        picked = [q for q in order if scores[i, q] >= score_thr][:max_tracks]
        rng = rngs[i] if rngs is not None else None
        if rng is not None and drop > 0:
            picked = [q for q in picked if rng.random() >= drop]
        if rng is not None and fp > 0:
            spare = [q for q in order if q not in follow and q not in picked and scores[i, q] >= 0.5 * score_thr]
            extra = sum(rng.random() < fp for _ in picked)
            picked += spare[:extra]
        chosen.append(picked)
        ids.append([follow.get(q, -1) for q in picked])
    n = max((len(c) for c in chosen), default=0)
    k = kpts.shape[2]
    batch = TrackBatch.empty(b, d, k, hidden.device)
    if n == 0:
        return batch
    batch = TrackBatch(hidden.new_zeros(b, n, d), kpts.new_full((b, n, k, 2), 0.5),
                       torch.zeros(b, n, dtype=torch.bool, device=hidden.device),
                       torch.full((b, n), -1, dtype=torch.long, device=hidden.device))
    for i, (picked, pid) in enumerate(zip(chosen, ids)):
        m = len(picked)
        if m:
            idx = torch.as_tensor(picked, device=hidden.device)
            batch.queries[i, :m], batch.keypoints[i, :m] = hidden[i, idx], kpts[i, idx]
            batch.mask[i, :m] = True
            batch.prev_ids[i, :m] = torch.as_tensor(pid, device=hidden.device)
    return batch


def match_with_tracks(matcher: HungarianMatcher, logits: torch.Tensor, keypoints: torch.Tensor, tgt: Targets,
                      prev_ids: torch.Tensor, mask: torch.Tensor, assignment: str,
                      bonus: float) -> tuple[np.ndarray, np.ndarray]:
    """Match one image's queries (N track queries first) to its people.

    Args:
        logits [N + Q], keypoints [N + Q, K, 2]: this layer's predictions.
        prev_ids [N]: identity each track query followed (-1: none); mask [N]: False = padding.
        assignment: ``bonus`` or ``hard``; bonus: cost added for the followed person (negative).
    """
    n_rows, g = len(logits), len(tgt)
    n = len(prev_ids)
    if g == 0 or n_rows == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cost = matcher.cost_matrix(logits, keypoints, tgt).cpu().numpy()  # [N + Q, G]
    cost[:n][~mask.cpu().numpy()] = BIG
    ids = tgt.track_ids.cpu().numpy()
    prev = prev_ids.cpu().numpy()
    same = (prev[:, None] >= 0) & (prev[:, None] == ids[None, :])  # [N, G] followed person present
    if assignment == "bonus":
        cost[:n][same] += bonus
        rows, cols = assign(cost)
    else:
        fixed_r, fixed_c = np.nonzero(same)
        free_c = np.setdiff1d(np.arange(g), fixed_c)
        r, c = assign(cost[n:][:, free_c])
        rows = np.concatenate([fixed_r, r + n]).astype(np.int64)
        cols = np.concatenate([fixed_c, free_c[c]]).astype(np.int64)
    keep = cost[rows, cols] < BIG / 2
    order = np.argsort(cols[keep])
    return rows[keep][order], cols[keep][order]


def diagnostics(matches: list, tracks: TrackBatch, targets: list[Targets], keypoints: torch.Tensor) -> dict:
    """Sums over the batch of one frame (the trainer averages them over the log interval).

    ``keypoints`` [B, N + Q, K, 2] are the last decoder layer's predictions.
    """
    n = tracks.size
    out = dict.fromkeys(("images", "n_trk", "n_trk_pos", "n_det_pos", "id_same", "trk_l1", "trk_l1_n",
                         "det_l1", "det_l1_n"), 0.0)
    out["images"] = float(len(targets))
    out["n_trk"] = float(tracks.mask.sum())
    for i, (rows, cols) in enumerate(matches):
        tgt = targets[i]
        for r, c in zip(rows.tolist(), cols.tolist()):
            vis = tgt.visible[c]
            err = (keypoints[i, r] - tgt.keypoints[c]).abs()[vis]
            if r < n:
                out["n_trk_pos"] += 1
                out["id_same"] += float(int(tracks.prev_ids[i, r]) == int(tgt.track_ids[c]))
                out["trk_l1"] += float(err.sum())
                out["trk_l1_n"] += float(err.numel())
            else:
                out["n_det_pos"] += 1
                out["det_l1"] += float(err.sum())
                out["det_l1_n"] += float(err.numel())
    return out


def diagnostic_values(sums: dict) -> dict[str, float]:
    """The log's diagnostic keys from summed counts (any number of steps)."""
    images = max(sums.get("images", 0.0), 1.0)
    return {
        "trk_kpt_l1": sums.get("trk_l1", 0.0) / max(sums.get("trk_l1_n", 0.0), 1.0),
        "det_kpt_l1": sums.get("det_l1", 0.0) / max(sums.get("det_l1_n", 0.0), 1.0),
        "n_trk": sums.get("n_trk", 0.0) / images,
        "n_trk_pos": sums.get("n_trk_pos", 0.0) / images,
        "n_det_pos": sums.get("n_det_pos", 0.0) / images,
        "trk_id_con": sums.get("id_same", 0.0) / max(sums.get("n_trk_pos", 0.0), 1.0),
    }
