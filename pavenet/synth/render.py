"""Drawing people with depth order, and deriving their keypoint visibility from what was drawn.

Every person is drawn twice: in colour into the frame and as part labels into an int32 label
map (``(person + 1) * 16 + part``). A keypoint is visible when a pixel next to it shows one
of the body parts it belongs to; otherwise it is occluded (by another person, an occluder or
the person's own body), which is how annotators mark it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pavenet.synth.body import HEAD, HEAD_RADIUS, LHAND, LTOE, NECK, RHAND, RTOE, Bodies

TORSO, HEAD_PART, NECK_PART = 0, 1, 2
# (first joint, second joint, radius x height, colour, side); part index = position + 2.
_LIMBS = (
    (NECK, HEAD, 0.036, "skin", 0),
    (5, 7, 0.04, "shirt", 1), (7, 9, 0.033, "sleeve", 1), (9, LHAND, 0.025, "skin", 1),
    (6, 8, 0.04, "shirt", -1), (8, 10, 0.033, "sleeve", -1), (10, RHAND, 0.025, "skin", -1),
    (11, 13, 0.055, "pants", 1), (13, 15, 0.045, "shin", 1), (15, LTOE, 0.028, "shoes", 1),
    (12, 14, 0.055, "pants", -1), (14, 16, 0.045, "shin", -1), (16, RTOE, 0.028, "shoes", -1),
)
_PARTS_OF_KEYPOINT = (
    (HEAD_PART,), (HEAD_PART,), (HEAD_PART,), (HEAD_PART,), (HEAD_PART,),
    (TORSO, NECK_PART, 3), (TORSO, NECK_PART, 6), (3, 4), (6, 7), (4, 5), (7, 8),
    (TORSO, 9), (TORSO, 12), (9, 10), (12, 13), (10, 11), (13, 14),
)
_SHIFT = 3  # fractional bits for sub-pixel drawing
MAX_LIMB_RADIUS = 0.055


@dataclass
class PersonView:
    """One person as seen in one frame (pixels of the frame)."""

    joints: np.ndarray  # [25, 2]
    depth: np.ndarray  # [25]
    torso: np.ndarray  # [8, 2] outline points of the torso
    hair: np.ndarray  # [2] centre of the hair disc
    px_per_m: float  # pixels per metre at the person's depth
    facing: float  # cosine between the facing direction and the direction to the camera
    left_to_camera: float  # cosine between the person's left and the direction to the camera


def torso_points(joints: np.ndarray, height: np.ndarray) -> np.ndarray:
    """[P, 8, 3] body-frame outline of the torso: shoulders and hips, front and back."""
    h = height[:, None]
    out = []
    for k, depth, widen in ((5, 0.07, 0.02), (6, 0.07, -0.02), (11, 0.06, 0.015), (12, 0.06, -0.015)):
        for sign in (1, -1):
            p = joints[:, k].copy()
            p[:, 0] += sign * depth * h[:, 0]
            p[:, 1] += widen * h[:, 0]
            out.append(p)
    return np.stack(out, 1)


def _part_color(bodies: Bodies, i: int, key: str) -> np.ndarray:
    if key == "sleeve":
        return bodies.shirt[i] if bodies.long_sleeves[i] else bodies.skin[i]
    if key == "shin":
        return bodies.skin[i] if bodies.shorts[i] else bodies.pants[i]
    return getattr(bodies, key)[i]


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(p[0] * (1 << _SHIFT))), int(round(p[1] * (1 << _SHIFT)))


def draw_person(img: np.ndarray, label: np.ndarray, person: int, view: PersonView, bodies: Bodies) -> None:
    """Draw person ``person`` far parts first, with shading, into ``img`` and ``label``."""
    h = float(bodies.height[person])
    base = (person + 1) * 16
    centre_depth = float(view.depth[[5, 6, 11, 12]].mean())
    items = [(float(view.depth[[5, 6, 11, 12]].mean()) + 1e-3, TORSO), (float(view.depth[HEAD]), HEAD_PART)]
    items += [(float(view.depth[[a, b]].mean()), n + 2) for n, (a, b, *_r) in enumerate(_LIMBS)]
    for depth, part in sorted(items, reverse=True):
        shade = 0.78 if depth > centre_depth + 0.02 * h else 1.0
        if part == TORSO:
            hull = cv2.convexHull(np.round(view.torso * (1 << _SHIFT)).astype(np.int32))
            color = tuple(float(c) * shade for c in bodies.shirt[person])
            cv2.fillConvexPoly(img, hull, color, cv2.LINE_AA, _SHIFT)
            cv2.fillConvexPoly(label, hull, base + TORSO, cv2.LINE_8, _SHIFT)
        elif part == HEAD_PART:
            _draw_head(img, label, person, view, bodies, base)
        else:
            a, b, radius, key, _side = _LIMBS[part - 2]
            thick = max(1, round(2 * radius * h * view.px_per_m))
            color = _part_color(bodies, person, key) * shade
            pa, pb = _pt(view.joints[a]), _pt(view.joints[b])
            cv2.line(img, pa, pb, tuple(float(c) for c in color), thick, cv2.LINE_AA, _SHIFT)
            cv2.line(label, pa, pb, base + part, thick, cv2.LINE_8, _SHIFT)
            if thick >= 5:  # a lighter stripe reads as a rounded, lit limb
                light = tuple(float(min(255, c * 1.25 + 12)) for c in color)
                off = np.array([-0.2, -0.25]) * thick
                cv2.line(img, _pt(view.joints[a] + off), _pt(view.joints[b] + off), light,
                         max(1, thick // 3), cv2.LINE_AA, _SHIFT)


def _draw_head(img, label, person: int, view: PersonView, bodies: Bodies, base: int) -> None:
    h = float(bodies.height[person])
    r = max(1.0, HEAD_RADIUS * h * view.px_per_m)
    centre, hair = _pt(view.joints[HEAD]), _pt(view.hair)
    ri = int(round(r * (1 << _SHIFT)))
    skin = tuple(float(c) for c in bodies.skin[person])
    hair_color = tuple(float(c) for c in bodies.hair[person])
    # Seen from the front, the face covers most of the hair disc; from behind, hair covers the face.
    order = ((hair, hair_color), (centre, skin)) if view.facing > 0 else ((centre, skin), (hair, hair_color))
    for c, color in order:
        cv2.circle(img, c, ri, color, -1, cv2.LINE_AA, _SHIFT)
    cv2.circle(label, centre, ri, base + HEAD_PART, -1, cv2.LINE_8, _SHIFT)
    if view.facing > 0.3 and r >= 4:
        for k in (1, 2):
            cv2.circle(img, _pt(view.joints[k]), max(1, int(r * 0.14)) << _SHIFT, (25, 25, 25), -1,
                       cv2.LINE_AA, _SHIFT)


def keypoint_visibility(label: np.ndarray, person: int, view: PersonView) -> np.ndarray:
    """[17] COCO visibility (0 outside the frame, 1 occluded, 2 visible) of ``person``."""
    hgt, wid = label.shape
    pts = view.joints[:17]
    inside = (pts[:, 0] >= 0) & (pts[:, 0] <= wid - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= hgt - 1)
    vis = np.where(inside, 1, 0).astype(np.float32)
    base = (person + 1) * 16
    for k in np.flatnonzero(inside):
        x, y = int(round(pts[k, 0])), int(round(pts[k, 1]))
        patch = label[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2].ravel().tolist()
        allowed = {base + part for part in _PARTS_OF_KEYPOINT[k]}
        if any(v in allowed for v in patch):
            vis[k] = 2
    # The face is hidden when the head is turned away; an ear when its side faces away.
    if view.facing < 0.15:
        vis[:3] = np.minimum(vis[:3], 1)
    if view.left_to_camera < -0.3:
        vis[3] = min(vis[3], 1)
    if view.left_to_camera > 0.3:
        vis[4] = min(vis[4], 1)
    return vis


def person_box(view: PersonView, height: float, frame_w: int, frame_h: int) -> np.ndarray:
    """[4] x1, y1, x2, y2 extent of everything drawn for the person, clipped to the frame."""
    pad = MAX_LIMB_RADIUS * height * view.px_per_m
    pts = np.concatenate([view.joints, view.torso])
    x1, y1 = pts.min(0) - pad
    x2, y2 = pts.max(0) + pad
    head_r = HEAD_RADIUS * height * view.px_per_m
    y1 = min(y1, view.joints[HEAD, 1] - head_r)
    return np.array([max(x1, 0), max(y1, 0), min(x2, frame_w - 1), min(y2, frame_h - 1)], np.float32)


def head_box(view: PersonView, height: float) -> np.ndarray:
    """[4] square box around the head (not clipped; PCKh uses its size)."""
    r = 1.15 * HEAD_RADIUS * height * view.px_per_m
    cx, cy = view.joints[HEAD]
    return np.array([cx - r, cy - r, cx + r, cy + r], np.float32)
