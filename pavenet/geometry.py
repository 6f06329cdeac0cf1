"""2-D affine helpers shared by the runtime (letterbox) and training (augmentation).

Pixel convention: the centre of pixel (row i, column j) is at (x=j, y=i), as in OpenCV's
``warpAffine``; a 2x3 matrix M maps a source point p to ``M[:, :2] @ p + M[:, 2]``.
"""

from __future__ import annotations

import numpy as np


def apply_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Map [..., 2] points through a 2x3 affine matrix."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The 2x3 inverse of a 2x3 affine matrix."""
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def compose(*matrices: np.ndarray) -> np.ndarray:
    """``compose(A, B)`` applies B first, then A (like A @ B)."""
    out = np.eye(3)
    for m in matrices:
        out = out @ np.vstack([m, [0.0, 0.0, 1.0]])
    return out[:2]


def letterbox_matrix(src_size: tuple[int, int], dst_size: tuple[int, int]) -> np.ndarray:
    """Scale (keeping aspect ratio) and centre a (w, h) image inside a (w, h) canvas."""
    sw, sh = src_size
    dw, dh = dst_size
    scale = min(dw / sw, dh / sh)
    # Maps pixel centres so that the image's extent [-0.5, s-0.5] fills the scaled extent.
    tx = (dw - sw * scale) / 2 + 0.5 * scale - 0.5
    ty = (dh - sh * scale) / 2 + 0.5 * scale - 0.5
    return np.array([[scale, 0.0, tx], [0.0, scale, ty]])


def similarity_matrix(centre: tuple[float, float], scale: float, angle_deg: float,
                      shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Rotate by ``angle_deg`` and scale about ``centre``, then translate by ``shift``."""
    a = np.deg2rad(angle_deg)
    rot = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    c = np.asarray(centre, dtype=np.float64)
    return np.concatenate([rot, (c - rot @ c + np.asarray(shift))[:, None]], 1)


def hflip_matrix(width: int) -> np.ndarray:
    """Mirror an image of ``width`` pixels: x -> width - 1 - x."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])


def transform_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """[n, 4] x1, y1, x2, y2 -> [n, 4] axis-aligned boxes around the mapped corners."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    corners = boxes[:, [[0, 1], [2, 1], [0, 3], [2, 3]]]  # [n, 4, 2]
    mapped = apply_affine(corners, matrix)
    return np.concatenate([mapped.min(1), mapped.max(1)], 1)
