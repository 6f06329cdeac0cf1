"""Ground truth of a frame batch and Hungarian matching of queries to people (DETR), with
PAVE-Net's cost weights: cost = 2 * focal + 70 * L1(keypoints) + 7 * (1 - OKS).

The cost of every image and stage is one batched tensor; it crosses to the host once per frame
(:func:`to_host`) and ``lap`` solves each image's assignment there.
"""

from __future__ import annotations

from dataclasses import dataclass

import lap
import numpy as np
import torch

from training.objective.losses import oks


@dataclass
class Targets:
    """Ground truth of one image, normalised like the model's outputs.

    Attributes:
        keypoints: [G, K, 2] normalised coordinates.
        visible: [G, K] bool, labelled keypoints.
        area: [G] box area as a fraction of the image area (OKS scale).
        track_ids: [G] int64 identities.
        ignore: [M, 4] normalised x1, y1, x2, y2 boxes of unlabelled people (ignore regions).
    """

    keypoints: torch.Tensor
    visible: torch.Tensor
    area: torch.Tensor
    track_ids: torch.Tensor
    ignore: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.track_ids)

    def to(self, device) -> Targets:
        return Targets(self.keypoints.to(device), self.visible.to(device), self.area.to(device),
                       self.track_ids.to(device), None if self.ignore is None else self.ignore.to(device))


@dataclass
class TargetBatch:
    """The people of B images padded to the largest count G (what the criterion consumes).

    Attributes:
        keypoints: [B, G, K, 2]; visible: [B, G, K] bool; area: [B, G]; track_ids: [B, G] (-1 pad);
        valid: [B, G] bool (False = padding); ignore: [B, M, 4] boxes; ignore_valid: [B, M] bool.
        counts: [B] people per image and ids_host: [B, G] track ids, on the host (they size the
            assignments and the tracking diagnostics without a device sync).
    """

    keypoints: torch.Tensor
    visible: torch.Tensor
    area: torch.Tensor
    track_ids: torch.Tensor
    valid: torch.Tensor
    ignore: torch.Tensor
    ignore_valid: torch.Tensor
    counts: np.ndarray
    ids_host: np.ndarray

    @staticmethod
    def stack(items: list[dict[str, np.ndarray]] | list[Targets]) -> TargetBatch:
        """Pad per-image targets (numpy dicts as :func:`training.data.dataset.frame_targets` makes, or
        :class:`Targets`) into one batch on the host."""
        def arr(item, key):
            v = item[key] if isinstance(item, dict) else getattr(item, key)
            if v is None:
                return np.zeros((0, 4), np.float32)
            return v.cpu().numpy() if isinstance(v, torch.Tensor) else v

        b = len(items)
        counts = np.array([len(arr(t, "track_ids")) for t in items], np.int64)
        k = arr(items[0], "keypoints").shape[1] if b else 0
        g = int(counts.max(initial=0))
        m = max((len(arr(t, "ignore")) for t in items), default=0)
        kp = np.zeros((b, g, k, 2), np.float32)
        vis = np.zeros((b, g, k), bool)
        area = np.ones((b, g), np.float32)
        ids = np.full((b, g), -1, np.int64)
        ign = np.zeros((b, m, 4), np.float32)
        ign_valid = np.zeros((b, m), bool)
        for i, t in enumerate(items):
            n = counts[i]
            kp[i, :n], vis[i, :n] = arr(t, "keypoints"), arr(t, "visible")
            area[i, :n], ids[i, :n] = arr(t, "area"), arr(t, "track_ids")
            boxes = arr(t, "ignore")
            ign[i, :len(boxes)], ign_valid[i, :len(boxes)] = boxes, True
        valid = np.arange(g)[None] < counts[:, None]
        return TargetBatch(*(torch.from_numpy(x) for x in (kp, vis, area, ids, valid, ign, ign_valid)), counts, ids)

    def to(self, device, non_blocking: bool = False) -> TargetBatch:
        moved = [getattr(self, f).to(device, non_blocking=non_blocking)
                 for f in ("keypoints", "visible", "area", "track_ids", "valid", "ignore", "ignore_valid")]
        return TargetBatch(*moved, self.counts, self.ids_host)

    def pin_memory(self) -> TargetBatch:
        pinned = [getattr(self, f).pin_memory()
                  for f in ("keypoints", "visible", "area", "track_ids", "valid", "ignore", "ignore_valid")]
        return TargetBatch(*pinned, self.counts, self.ids_host)

    def __len__(self) -> int:
        return len(self.counts)

    def __getitem__(self, i: int) -> Targets:
        n = int(self.counts[i])
        return Targets(self.keypoints[i, :n], self.visible[i, :n], self.area[i, :n], self.track_ids[i, :n],
                       self.ignore[i, self.ignore_valid[i]])

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    @property
    def num_people(self) -> int:
        return int(self.counts.sum())


def assign(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one assignment of rows (queries) to columns (targets).

    Returns (rows, cols) int64 arrays of the matched pairs, sorted by column.
    """
    n_rows, n_cols = cost.shape
    if n_rows == 0 or n_cols == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    _, _, col_to_row = lap.lapjv(np.ascontiguousarray(cost, dtype=np.float64), extend_cost=True)
    cols = np.flatnonzero(col_to_row >= 0)
    return col_to_row[cols].astype(np.int64), cols.astype(np.int64)


class HungarianMatcher:
    """Matching costs of a batch of queries against a batch of people."""

    def __init__(self, sigmas: torch.Tensor, cost_class: float = 2.0, cost_kpt: float = 70.0,
                 cost_oks: float = 7.0, alpha: float = 0.25, gamma: float = 2.0):
        self.sigmas = sigmas
        self.cost_class, self.cost_kpt, self.cost_oks = cost_class, cost_kpt, cost_oks
        self.alpha, self.gamma = alpha, gamma

    @torch.no_grad()
    def cost(self, logits: torch.Tensor, keypoints: torch.Tensor, tgt: TargetBatch) -> torch.Tensor:
        """logits [..., B, N], keypoints [..., B, N, K, 2] -> [..., B, N, G] matching cost."""
        p = logits.float().sigmoid()
        pos = self.alpha * (1 - p) ** self.gamma * -(p + 1e-8).log()
        neg = (1 - self.alpha) * p**self.gamma * -(1 - p + 1e-8).log()
        c_cls = (pos - neg)[..., None]  # [..., B, N, 1]
        vis = tgt.visible.float()  # [B, G, K]
        diff = (keypoints.float()[..., :, None, :, :] - tgt.keypoints[:, None]).abs().sum(-1)  # [..., B, N, G, K]
        c_kpt = (diff * vis[:, None]).sum(-1) / (2 * vis.sum(-1).clamp(min=1))[:, None]
        c_oks = 1 - oks(keypoints.float(), tgt.keypoints, tgt.visible, tgt.area, self.sigmas.to(p.device))
        return self.cost_class * c_cls + self.cost_kpt * c_kpt + self.cost_oks * c_oks


def match_all(cost: np.ndarray, counts: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Host cost [B, N, G] (people padded to G) -> per image (query indices, target indices)."""
    return [assign(cost[b, :, :counts[b]]) for b in range(len(counts))]


def match_topk(cost: np.ndarray, counts: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """One-to-many assignment (H-DETR's hybrid matching, for dense proposals): each person takes
    its ``k`` lowest-cost queries, and a query wanted by several people goes to the cheapest.

    Host cost [B, N, G] (people padded to G) -> per image (query indices, target indices), sorted
    by query. ``k`` = 1 is still many-to-one-free but not Hungarian: use :func:`match_all` for that.
    """
    out = []
    for b in range(len(counts)):
        c = cost[b, :, :counts[b]]  # [N, G]
        n, g = c.shape
        if n == 0 or g == 0:
            out.append((np.zeros(0, np.int64), np.zeros(0, np.int64)))
            continue
        kk = min(k, n)
        top = np.argpartition(c, kk - 1, axis=0)[:kk]  # [k, G] query indices
        chosen = np.full(c.shape, np.inf)
        cols = np.broadcast_to(np.arange(g), top.shape)
        chosen[top, cols] = c[top, cols]
        best = chosen.argmin(1)  # [N] cheapest person among those that chose the query
        rows = np.flatnonzero(np.isfinite(chosen[np.arange(n), best]))
        out.append((rows.astype(np.int64), best[rows].astype(np.int64)))
    return out


def extend_topk(cost: np.ndarray, match: tuple[np.ndarray, np.ndarray], n_tracks: int,
                k: int) -> tuple[np.ndarray, np.ndarray]:
    """Add one-to-many positives to a one-to-one ``match`` (H-DETR's hybrid layers): each person
    also takes its ``k - 1`` cheapest detect queries (rows >= ``n_tracks``) that are not matched
    yet; a query wanted by several people goes to the cheapest. Track rows keep their match.

    Host cost [N + Q, G] (real people only) -> (query indices, target indices), sorted by target.
    """
    rows, cols = match
    g = cost.shape[1]
    c = cost[n_tracks:].copy()  # [Q, G]
    if g == 0 or len(c) == 0 or k <= 1:
        return match
    c[rows[rows >= n_tracks] - n_tracks] = np.inf
    extra = match_topk(c[None], np.array([g]), k - 1)[0]
    keep = np.isfinite(c[extra[0], extra[1]])
    rows = np.concatenate([rows, extra[0][keep] + n_tracks]).astype(np.int64)
    cols = np.concatenate([cols, extra[1][keep]]).astype(np.int64)
    order = np.argsort(cols, kind="stable")
    return rows[order], cols[order]


def to_host(*tensors: torch.Tensor) -> list[np.ndarray]:
    """Copy several device tensors to the host in one transfer (one sync)."""
    if not tensors:
        return []
    flat = torch.cat([t.detach().float().reshape(-1) for t in tensors]).cpu().numpy()
    out, start = [], 0
    for t in tensors:
        out.append(flat[start:start + t.numel()].reshape(t.shape))
        start += t.numel()
    return out
