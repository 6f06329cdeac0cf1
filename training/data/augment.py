"""Clip augmentation: one random geometry and colour change applied identically to every frame.

Geometry is a single affine map per clip (letterbox to the output size, random scale, rotation
and translation, optional horizontal flip), so keypoints move exactly with the pixels. A flip
also swaps left/right keypoint slots using the layout's flip pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pavenet.clip import Clip, Frame
from pavenet.geometry import (
    apply_affine,
    compose,
    hflip_matrix,
    letterbox_matrix,
    similarity_matrix,
    transform_boxes,
)
from pavenet.layouts import get_layout


@dataclass(frozen=True)
class AugmentConfig:
    """Random clip augmentation.

    Attributes:
        width, height: output frame size (the model's input size).
        scale: range of the zoom factor on top of the letterbox fit.
        rotate: maximum rotation in degrees (either direction).
        translate: maximum shift as a fraction of the output size.
        flip: probability of a horizontal flip.
        brightness, contrast, saturation: maximum relative change.
        hue: maximum hue shift in OpenCV hue units (0-180 circle).
    """

    width: int = 256
    height: int = 256
    scale: tuple[float, float] = (0.7, 1.3)
    rotate: float = 15.0
    translate: float = 0.1
    flip: float = 0.5
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.3
    hue: float = 5.0


@dataclass(frozen=True)
class ColorJitter:
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0

    def apply(self, image: np.ndarray) -> np.ndarray:
        """[H, W, 3] uint8 BGR -> jittered copy.

        Every change is a function of one uint8 channel value (hue shift, saturation scale, then
        contrast around the image mean and brightness), so each runs as a 256-entry lookup table
        (``cv2.LUT``): the same pixels as float arithmetic on the whole image, ~4x faster.
        """
        out = image
        values = np.arange(256, dtype=np.float32)
        if self.saturation != 1.0 or self.hue != 0.0:
            hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
            hue = ((values + self.hue) % 180).astype(np.uint8)
            sat = np.clip(values * self.saturation, 0, 255).astype(np.uint8)
            lut = np.stack([hue, sat, values.astype(np.uint8)], 1)[:, None]  # [256, 1, 3]
            out = cv2.cvtColor(cv2.LUT(hsv, lut), cv2.COLOR_HSV2BGR)
        if self.brightness != 1.0 or self.contrast != 1.0:
            mean = out.mean()  # float64, as the arithmetic on the whole image had it
            lut = np.clip((values - mean) * self.contrast + mean * self.brightness, 0, 255)
            out = cv2.LUT(out, lut.astype(np.uint8))
        return out


def warp_frame(frame: Frame, matrix: np.ndarray, size: tuple[int, int],
               flip_index: np.ndarray | None = None) -> Frame:
    """Map a frame's image and annotations through ``matrix`` into a (w, h) frame.

    ``flip_index`` ([K], from the layout) must be given when ``matrix`` mirrors the image, so
    that a left keypoint lands in the left slot again. Keypoints leaving the frame become
    unlabelled; people whose box leaves the frame entirely are dropped.
    """
    w, h = size
    image = None
    if frame.image is not None:
        image = cv2.warpAffine(frame.image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=(114, 114, 114))
    kp = frame.keypoints.copy()
    kp[..., :2] = apply_affine(kp[..., :2], matrix)
    if flip_index is not None:
        kp = kp[:, flip_index]
    inside = (kp[..., 0] >= 0) & (kp[..., 0] <= w - 1) & (kp[..., 1] >= 0) & (kp[..., 1] <= h - 1)
    kp[~(inside & (kp[..., 2] > 0))] = 0
    boxes = transform_boxes(frame.boxes, matrix)
    boxes = np.clip(boxes, 0, [w - 1, h - 1, w - 1, h - 1]).astype(np.float32)
    heads = transform_boxes(frame.head_boxes, matrix).astype(np.float32)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    out = Frame(image=image, keypoints=kp.astype(np.float32), boxes=boxes, track_ids=frame.track_ids.copy(),
                head_boxes=heads, ignore_regions=[apply_affine(p, matrix).astype(np.float32)
                                                  for p in frame.ignore_regions],
                labelled=frame.labelled)
    return out.select(keep)


def transform_clip(clip: Clip, matrix: np.ndarray, size: tuple[int, int], flip: bool = False,
                   color: ColorJitter | None = None) -> Clip:
    """Apply one geometry (and colour change) to every frame of ``clip``.

    ``matrix`` maps source pixels to output pixels before the flip; with ``flip`` the output is
    then mirrored and left/right slots are swapped.
    """
    layout = get_layout(clip.layout)
    full = compose(hflip_matrix(size[0]), matrix) if flip else matrix
    frames = [warp_frame(f, full, size, layout.flip_index if flip else None) for f in clip.frames]
    if color is not None:
        for f in frames:
            if f.image is not None:
                f.image = color.apply(f.image)
    return Clip(frames=frames, layout=clip.layout, name=clip.name,
                frame_indices=list(clip.frame_indices), fps=clip.fps)


def augment_clip(clip: Clip, cfg: AugmentConfig, rng: np.random.Generator) -> Clip:
    """Letterbox ``clip`` to the configured size with one random augmentation for all frames."""
    out = (cfg.width, cfg.height)
    fit = letterbox_matrix(clip.size, out)
    centre = ((cfg.width - 1) / 2, (cfg.height - 1) / 2)
    shift = rng.uniform(-cfg.translate, cfg.translate, 2) * out
    jitter = similarity_matrix(centre, rng.uniform(*cfg.scale), rng.uniform(-cfg.rotate, cfg.rotate), shift)
    color = ColorJitter(
        brightness=1 + rng.uniform(-cfg.brightness, cfg.brightness),
        contrast=1 + rng.uniform(-cfg.contrast, cfg.contrast),
        saturation=1 + rng.uniform(-cfg.saturation, cfg.saturation),
        hue=rng.uniform(-cfg.hue, cfg.hue),
    )
    return transform_clip(clip, compose(jitter, fit), out, flip=rng.random() < cfg.flip, color=color)
