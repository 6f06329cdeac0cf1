"""Object keypoint similarity in numpy (duplicate suppression and re-identification of tracks)."""

from __future__ import annotations

import numpy as np


def oks_matrix(a: np.ndarray, b: np.ndarray, sigmas: np.ndarray, visible: np.ndarray | None = None,
               area: np.ndarray | None = None) -> np.ndarray:
    """OKS between poses ``a`` [P, K, 2] and ``b`` [G, K, 2] (any units); scale = ``area`` [G] (e.g.
    the people's box areas, as ``pavenet-eval``), by default the area of the box around b's keypoints.

    ``visible`` [G, K] selects b's keypoints that count (all by default). Returns [P, G].
    """
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    vis = np.ones(b.shape[:2], bool) if visible is None else visible
    if area is None:
        ext = np.array([np.ptp(p[v], 0) if v.any() else np.zeros(2) for p, v in zip(b, vis)])
        area = np.maximum(ext[:, 0] * ext[:, 1], 1e-6)
    d2 = ((a[:, None] - b[None]) ** 2).sum(-1)  # [P, G, K]
    e = d2 / (2 * (2 * np.asarray(sigmas)) ** 2 * area[None, :, None])
    return (np.exp(-e) * vis[None]).sum(-1) / np.maximum(vis.sum(-1), 1)[None]


def pose_box_iou(pose: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of the box around ``pose`` [K, 2] with the boxes around each of ``others`` [A, K, 2] -> [A]."""
    lo, hi = pose.min(0), pose.max(0)
    olo, ohi = others.min(1), others.max(1)  # [A, 2]
    inter = np.clip(np.minimum(hi, ohi) - np.maximum(lo, olo), 0, None).prod(-1)
    union = (hi - lo).prod() + (ohi - olo).prod(-1) - inter
    return inter / np.maximum(union, 1e-12)
