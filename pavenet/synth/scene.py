"""Everything in a synthetic clip that is not a person: background, occluders and camera effects."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pavenet.synth.config import SynthConfig
from pavenet.synth.motion import Camera

CANVAS_SCALE = 1.5  # the background is larger than the view so the camera can pan and zoom
OCCLUDER_LABEL = -1
_NOISE_MARGIN = 32


def canvas_offset(cfg: SynthConfig) -> np.ndarray:
    """(x, y) of the nominal view's top-left corner inside the background canvas."""
    return np.array([(CANVAS_SCALE - 1) * cfg.width / 2, (CANVAS_SCALE - 1) * cfg.height / 2])


def _color(rng: np.random.Generator, max_saturation: int = 150) -> tuple[int, int, int]:
    """A random BGR colour, mostly muted like real scenes."""
    hsv = np.array([[[rng.integers(0, 180), rng.integers(0, max_saturation), rng.integers(30, 240)]]], np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def make_background(rng: np.random.Generator, cfg: SynthConfig, cam: Camera) -> np.ndarray:
    """[1.5 H, 1.5 W, 3] uint8 textured, cluttered scene with a ground plane in perspective."""
    w, h = round(cfg.width * CANVAS_SCALE), round(cfg.height * CANVAS_SCALE)
    ox, oy = canvas_offset(cfg)
    horizon = int(cam.horizon + oy)
    canvas = np.empty((h, w, 3), np.float32)
    canvas[:horizon] = _color(rng)
    canvas[horizon:] = _color(rng)
    # Shading varies mostly in brightness, a little in colour, as lit real surfaces do.
    gh, gw = rng.integers(3, 8), rng.integers(3, 8)
    low = rng.normal(0, 30, (gh, gw, 1)) + rng.normal(0, 8, (gh, gw, 3))
    canvas += cv2.resize(low.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    mid = (rng.normal(0, 10, (h // 6 + 1, w // 6 + 1, 1)) + rng.normal(0, 4, (h // 6 + 1, w // 6 + 1, 3)))
    mid = mid.astype(np.float32)
    canvas += cv2.resize(mid, (w, h), interpolation=cv2.INTER_LINEAR)
    img = np.clip(canvas, 0, 255).astype(np.uint8)
    vanish = (int(cam.width / 2 + ox), horizon)
    if rng.random() < 0.6:  # floor tiles: depth lines and lines to the vanishing point
        line_color = _color(rng)
        for z in np.geomspace(cam.z_near * 0.6, cam.z_far * 2, int(rng.integers(6, 14))):
            y = int(horizon + cam.focal * cam.cam_height / z)
            cv2.line(img, (0, y), (w, y), line_color, 1, cv2.LINE_AA)
        for x in np.linspace(-3 * w, 4 * w, int(rng.integers(8, 20))):
            cv2.line(img, vanish, (int(x), h), line_color, 1, cv2.LINE_AA)
    n_clutter = int(rng.poisson(8 * cfg.clutter))
    for _ in range(n_clutter):
        _draw_clutter(img, rng, horizon)
    return img


def _draw_clutter(img: np.ndarray, rng: np.random.Generator, horizon: int) -> None:
    """One random background object: building/furniture box, blob, pole, or limb-like sticks."""
    h, w = img.shape[:2]
    kind = rng.choice(["box", "blob", "pole", "sticks", "stripes"], p=[0.35, 0.2, 0.15, 0.15, 0.15])
    color = _color(rng)
    x, y = int(rng.integers(0, w)), int(rng.integers(0, max(horizon + 10, 11)))
    size = int(rng.uniform(0.03, 0.25) * h)
    if kind == "box":
        x2, y2 = x + size, min(y + int(size * rng.uniform(0.5, 2.5)), horizon + size)
        cv2.rectangle(img, (x, y), (x2, y2), color, -1)
        if rng.random() < 0.5:  # windows
            win = _color(rng)
            step = max(size // 4, 3)
            for wy in range(y + 2, y2 - 2, step):
                for wx in range(x + 2, x2 - 2, step):
                    cv2.rectangle(img, (wx, wy), (wx + step // 2, wy + step // 2), win, -1)
    elif kind == "blob":
        axes = (size // 2 + 1, int(size * rng.uniform(0.2, 0.8)) + 1)
        cv2.ellipse(img, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, color, -1, cv2.LINE_AA)
    elif kind == "pole":
        cv2.rectangle(img, (x, y - size), (x + max(size // 10, 2), horizon + size), color, -1)
    elif kind == "sticks":  # hard negatives: limb-coloured, limb-thick segments
        pts = np.cumsum(rng.normal(0, size / 2, (int(rng.integers(2, 5)), 2)), 0) + [x, y]
        cv2.polylines(img, [pts.astype(np.int32)], False, color, max(size // 8, 1), cv2.LINE_AA)
    else:
        step = max(size // 5, 2)
        for i in range(0, size, 2 * step):
            cv2.rectangle(img, (x + i, y), (x + i + step, y + size), color, -1)


@dataclass
class Occluder:
    """A shape in front of (or behind) the people, static or moving across the view."""

    kind: str
    color: tuple[int, int, int]
    size: tuple[float, float]
    start: np.ndarray
    end: np.ndarray
    in_front: bool

    def draw(self, img: np.ndarray, label: np.ndarray | None, frac: float, affine: np.ndarray) -> None:
        """Draw at time fraction ``frac`` of its path, mapped through the camera ``affine``."""
        centre = self.start + (self.end - self.start) * frac
        c = affine[:, :2] @ centre + affine[:, 2]
        zoom = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))
        sx, sy = self.size[0] * zoom, self.size[1] * zoom
        targets = [(img, self.color)] + ([(label, OCCLUDER_LABEL)] if label is not None else [])
        for target, col in targets:
            if self.kind == "circle":
                cv2.circle(target, (int(c[0]), int(c[1])), max(int(sx), 1), col, -1)
            else:
                p1 = (int(c[0] - sx / 2), int(c[1] - sy / 2))
                p2 = (int(c[0] + sx / 2), int(c[1] + sy / 2))
                cv2.rectangle(target, p1, p2, col, -1)


def sample_occluders(rng: np.random.Generator, cfg: SynthConfig) -> list[Occluder]:
    """Poles and signs standing still, balls and boxes moving through the view."""
    w, h = cfg.width, cfg.height
    out = []
    for _ in range(int(rng.poisson(cfg.occlusion))):
        kind = str(rng.choice(["pole", "sign", "ball", "box"]))
        start = np.array([rng.uniform(0, w), rng.uniform(0.2 * h, h)])
        end = start  # poles and signs stand still
        if kind == "pole":
            size = (rng.uniform(0.03, 0.08) * w, 2 * h)
            start = end = np.array([start[0], h])
        elif kind == "sign":
            size = (rng.uniform(0.08, 0.25) * w, rng.uniform(0.08, 0.2) * h)
        else:
            r = rng.uniform(0.03, 0.12) * h
            size = (r, r) if kind == "ball" else (2 * r, rng.uniform(1, 3) * r)
            end = np.array([rng.uniform(0, w), rng.uniform(0.2 * h, h)])
        shape = "circle" if kind == "ball" else "rect"
        out.append(Occluder(shape, _color(rng, 255), size, start, end, rng.random() < 0.75))
    return out


@dataclass
class Effects:
    """Per-clip camera effects: brightness drift, motion blur and sensor noise."""

    gains: np.ndarray  # [T] brightness multipliers
    offsets: np.ndarray  # [T] brightness offsets
    blur: np.ndarray | None  # motion-blur kernel
    noise: np.ndarray | None  # [H + margin, W + margin, 3] int16 noise tile
    noise_shifts: np.ndarray  # [T, 2] where each frame's noise is cut from the tile

    def apply(self, img: np.ndarray, t: int) -> np.ndarray:
        out = img
        if self.blur is not None:
            out = cv2.filter2D(out, -1, self.blur)
        out = out.astype(np.int16) if self.noise is None else out.astype(np.int16) + self._noise(img.shape, t)
        out = out * self.gains[t] + self.offsets[t]
        return np.clip(out, 0, 255).astype(np.uint8)

    def _noise(self, shape: tuple[int, ...], t: int) -> np.ndarray:
        y, x = self.noise_shifts[t]
        return self.noise[y : y + shape[0], x : x + shape[1]]


def sample_effects(rng: np.random.Generator, cfg: SynthConfig, t: int) -> Effects:
    drift = np.cumsum(rng.normal(0, 0.01, t)) * (rng.random() < 0.5)
    gains = np.exp(rng.normal(0, 0.15) + drift)
    offsets = np.full(t, rng.normal(0, 10))
    blur = None
    if rng.random() < cfg.blur_prob:
        length = int(rng.integers(3, 8))
        blur = np.zeros((length, length), np.float32)
        c = (length - 1) / 2
        angle = rng.uniform(0, np.pi)
        d = np.array([np.cos(angle), np.sin(angle)]) * c
        cv2.line(blur, (round(c - d[0]), round(c - d[1])), (round(c + d[0]), round(c + d[1])), 1.0, 1)
        blur /= blur.sum()
    sigma = rng.uniform(0, cfg.noise)
    noise = None
    if sigma > 0.5:  # one tile per clip, cut at a new offset each frame (cheaper than fresh noise)
        tile = (cfg.height + _NOISE_MARGIN, cfg.width + _NOISE_MARGIN, 3)
        noise = (rng.standard_normal(tile, dtype=np.float32) * sigma).astype(np.int16)
    shifts = rng.integers(0, _NOISE_MARGIN, (t, 2))
    return Effects(gains, offsets, blur, noise, shifts)
