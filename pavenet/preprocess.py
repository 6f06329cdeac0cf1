"""Frames in any common format -> the model's letterboxed RGB input, and back to frame pixels."""

from __future__ import annotations

import cv2
import numpy as np

from pavenet.errors import PavenetError
from pavenet.geometry import apply_affine, invert_affine, letterbox_matrix

PAD_VALUE = (114, 114, 114)


def to_bgr(frame: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 BGR from a grey ([H, W] or [H, W, 1]), BGRA, 16-bit or float frame."""
    frame = np.asarray(frame)
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[..., 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (3, 4)) or frame.size == 0:
        raise PavenetError(f"unsupported frame shape {frame.shape}; expected [H, W], [H, W, 3] or [H, W, 4]")
    if frame.dtype == np.uint16:
        frame = (frame >> 8).astype(np.uint8)
    elif np.issubdtype(frame.dtype, np.floating):
        scale = 255.0 if float(np.nanmax(frame)) <= 1.0 else 1.0
        frame = np.clip(np.nan_to_num(frame) * scale, 0, 255).astype(np.uint8)
    elif frame.dtype != np.uint8:
        raise PavenetError(f"unsupported frame dtype {frame.dtype}; use uint8, uint16 or float")
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(frame)


def letterbox(frame_bgr: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Fit a BGR frame into a (w, h) canvas keeping its aspect ratio.

    Returns ([h, w, 3] uint8 RGB input, 2x3 matrix mapping frame pixels to input pixels).
    """
    h, w = frame_bgr.shape[:2]
    matrix = letterbox_matrix((w, h), size)
    if matrix[0, 0] != 1.0 or (w, h) != tuple(size):
        image = cv2.warpAffine(frame_bgr, matrix, tuple(size), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=PAD_VALUE)
    else:
        image = frame_bgr
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), matrix


def to_frame_pixels(normalised: np.ndarray, size: tuple[int, int], matrix: np.ndarray) -> np.ndarray:
    """[..., 2] normalised model coordinates -> frame pixels (inverse of the letterbox)."""
    w, h = size
    pixels = normalised * np.array([w, h], dtype=np.float64) - 0.5
    return apply_affine(pixels, invert_affine(matrix))
