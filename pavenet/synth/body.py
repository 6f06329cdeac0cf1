"""Articulated 3-D people: proportions, appearance and a gait/gesture pose model.

Joints are computed for P people at once in a body frame (F forward, L to the person's left,
Y up, metres, feet on the ground at Y = 0). Slots 0-16 are the COCO keypoints; the extra
joints below are used for drawing only.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

HEAD, NECK, PELVIS, LHAND, RHAND, LTOE, RTOE, HEADTOP = range(17, 25)
NUM_JOINTS = 25
HEAD_RADIUS = 0.066  # x height

GESTURE_NONE, GESTURE_WAVE, GESTURE_RAISE, GESTURE_POINT = range(4)

_SKIN = np.array([[60, 80, 120], [80, 110, 160], [100, 140, 190], [120, 160, 215], [140, 180, 230],
                  [165, 200, 240], [90, 120, 175], [45, 60, 95]], dtype=np.float32)
_HAIR = np.array([[20, 20, 25], [30, 45, 70], [40, 70, 120], [120, 160, 200], [90, 90, 95],
                  [200, 200, 205], [30, 30, 140]], dtype=np.float32)


@dataclass
class Bodies:
    """Shape and look of P people (arrays of length P; colours BGR float32 [P, 3])."""

    height: np.ndarray
    build: np.ndarray
    skin: np.ndarray
    hair: np.ndarray
    shirt: np.ndarray
    pants: np.ndarray
    shoes: np.ndarray
    long_sleeves: np.ndarray
    shorts: np.ndarray

    def __len__(self) -> int:
        return len(self.height)


def _random_color(rng: np.random.Generator, n: int) -> np.ndarray:
    hsv = np.stack([rng.integers(0, 180, n), rng.integers(30, 255, n), rng.integers(40, 250, n)], 1)
    if n == 0:
        return np.zeros((0, 3), np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2BGR)[0].astype(np.float32)


def sample_bodies(rng: np.random.Generator, n: int, lookalike: bool) -> Bodies:
    """Random people; with ``lookalike`` some copy another person's clothes, skin and build."""
    child = rng.random(n) < 0.12
    height = np.where(child, rng.uniform(1.0, 1.45, n), rng.uniform(1.52, 1.95, n))
    skin = _SKIN[rng.integers(0, len(_SKIN), n)] + rng.normal(0, 6, (n, 3))
    bodies = Bodies(
        height=height.astype(np.float32),
        build=rng.uniform(0.85, 1.25, n).astype(np.float32),
        skin=skin.clip(0, 255).astype(np.float32),
        hair=_HAIR[rng.integers(0, len(_HAIR), n)],
        shirt=_random_color(rng, n),
        pants=_random_color(rng, n) * 0.7,
        shoes=rng.uniform(10, 90, (n, 1)).repeat(3, 1).astype(np.float32),
        long_sleeves=rng.random(n) < 0.5,
        shorts=rng.random(n) < 0.25,
    )
    if lookalike and n >= 2:
        source = rng.integers(0, n)
        copies = rng.random(n) < 0.5
        copies[source] = False
        for name in ("build", "skin", "hair", "shirt", "pants", "shoes", "long_sleeves", "shorts"):
            arr = getattr(bodies, name)
            arr[copies] = arr[source]
        bodies.height[copies] = bodies.height[source] * rng.uniform(0.98, 1.02, copies.sum())
    return bodies


def _arm(shoulder, side, alpha, beta, eps, upper, fore):
    """Elbow and wrist from shoulder flexion ``alpha``, abduction ``beta`` and elbow flex ``eps``.

    All angle arrays are [P]; ``shoulder`` is [P, 3]; returns two [P, 3] arrays.
    """
    d1 = np.stack([np.sin(alpha) * np.cos(beta), side * np.sin(beta), -np.cos(alpha) * np.cos(beta)], -1)
    a2 = alpha + eps
    d2 = np.stack([np.sin(a2) * np.cos(beta), side * np.sin(beta), -np.cos(a2) * np.cos(beta)], -1)
    elbow = shoulder + upper[:, None] * d1
    return elbow, elbow + fore[:, None] * d2


def body_joints(
    bodies: Bodies, phase: np.ndarray, speed: np.ndarray, gesture: np.ndarray, gesture_phase: np.ndarray
) -> np.ndarray:
    """Joint positions in the body frame.

    Args:
        bodies: P people.
        phase: [P] gait phase (radians); the left leg swings forward around phase 0.
        speed: [P] ground speed (m/s); blends standing, walking and running.
        gesture: [P] one of the GESTURE_* codes, shown when standing still.
        gesture_phase: [P] radians, animates the gesture.

    Returns:
        [P, NUM_JOINTS, 3] (F, L, Y) metres.
    """
    p = len(bodies)
    h = bodies.height
    walk = np.clip(speed / 1.2, 0, 1)
    run = np.clip((speed - 1.9) / 1.2, 0, 1)
    a_hip = 0.42 * walk * (1 - run) + 0.75 * run
    a_knee = 0.65 * walk * (1 - run) + 1.7 * run
    a_arm = 0.35 * walk * (1 - run) + 0.55 * run
    lean = 0.03 * walk + 0.2 * run
    j = np.zeros((p, NUM_JOINTS, 3), np.float32)

    thigh, shank = 0.245 * h, 0.246 * h
    hip_w = 0.055 * h * bodies.build
    for side, hip_i, knee_i, ank_i, toe_i, ph in ((1, 11, 13, 15, LTOE, phase), (-1, 12, 14, 16, RTOE, phase + np.pi)):
        theta = a_hip * np.sin(ph)
        kappa = 0.06 + a_knee * np.maximum(0, np.cos(ph)) ** 1.5
        knee = np.stack([thigh * np.sin(theta), side * hip_w, -thigh * np.cos(theta)], -1)
        ankle = knee + np.stack([shank * np.sin(theta - kappa), 0 * h, -shank * np.cos(theta - kappa)], -1)
        j[:, hip_i] = [0, 0, 0]
        j[:, hip_i, 1] = side * hip_w
        j[:, knee_i], j[:, ank_i] = knee, ankle
        j[:, toe_i] = ankle + np.stack([0.1 * h, 0 * h, -0.035 * h], -1)
    # Plant the lower foot on the ground (ankle 4 % of height above it); runners get a flight phase.
    ground = np.minimum(j[:, 15, 2], j[:, 16, 2])
    lift = 0.04 * h - ground + 0.03 * h * run * np.maximum(0, np.sin(2 * phase))
    for k in (11, 12, 13, 14, 15, 16, LTOE, RTOE):
        j[:, k, 2] += lift
    pelvis = np.stack([0 * h, 0 * h, lift], -1)
    spine = np.stack([np.sin(lean), 0 * h, np.cos(lean)], -1)
    neck = pelvis + (0.30 * h)[:, None] * spine
    head = neck + (0.11 * h)[:, None] * spine
    j[:, PELVIS], j[:, NECK], j[:, HEAD] = pelvis, neck, head
    j[:, HEADTOP] = head + np.stack([0 * h, 0 * h, HEAD_RADIUS * h], -1)
    face = [(0, 0.05, 0.0, -0.005), (1, 0.045, 0.03, 0.012), (2, 0.045, -0.03, 0.012),
            (3, -0.005, 0.064, 0.0), (4, -0.005, -0.064, 0.0)]
    for k, f, lat, up in face:
        j[:, k] = head + np.stack([f * h, lat * h, up * h], -1)

    sh_w = 0.115 * h * bodies.build
    upper, fore = 0.186 * h, 0.146 * h
    standing = 1 - walk
    for side, sh_i, el_i, wr_i, hand_i, sgn in ((1, 5, 7, 9, LHAND, -1), (-1, 6, 8, 10, RHAND, 1)):
        shoulder = neck + np.stack([0 * h, side * sh_w, -0.02 * h], -1)
        alpha = sgn * a_arm * np.sin(phase)
        eps = 0.15 + 0.15 * walk + 1.2 * run + 0.1 * a_arm * (1 + np.sin(phase))
        elbow, wrist = _arm(shoulder, side, alpha, 0.08 + 0.05 * walk, eps, upper, fore)
        g_elbow, g_wrist = _gesture_arm(shoulder, side, gesture, gesture_phase, upper, fore)
        if g_elbow is not None:
            # Raising uses both arms; waving and pointing use the right arm.
            active = (gesture == GESTURE_RAISE) | ((gesture != GESTURE_NONE) & (side < 0))
            w = np.where(active, standing, 0)[:, None]
            elbow = elbow * (1 - w) + g_elbow * w
            wrist = wrist * (1 - w) + g_wrist * w
        j[:, sh_i], j[:, el_i], j[:, wr_i] = shoulder, elbow, wrist
        direction = (wrist - elbow) / np.maximum(np.linalg.norm(wrist - elbow, axis=-1, keepdims=True), 1e-6)
        j[:, hand_i] = wrist + (0.05 * h)[:, None] * direction
    return j


def _gesture_arm(shoulder, side, gesture, gphase, upper, fore):
    """Arm joints for waving, raising the arms and pointing forward ([P, 3] each, or Nones)."""
    if not np.any(gesture != GESTURE_NONE):
        return None, None
    zero = 0 * gphase
    swing = 0.35 * np.sin(gphase)
    # Wave: upper arm out to the side, forearm up, swinging in the lateral-vertical plane.
    wave_e = shoulder + upper[:, None] * np.stack([zero + 0.1, side * 0.97 + zero, zero + 0.2], -1)
    wave_w = wave_e + fore[:, None] * np.stack([zero + 0.1, side * np.sin(swing), np.cos(swing)], -1)
    raise_e, raise_w = _arm(shoulder, side, zero + 2.9, 0.25 + 0.1 * np.sin(gphase), zero + 0.1, upper, fore)
    point_e, point_w = _arm(shoulder, side, 1.45 + 0.1 * np.sin(gphase), zero + 0.15, zero, upper, fore)
    sel = [(gesture == g)[:, None] for g in (GESTURE_WAVE, GESTURE_RAISE, GESTURE_POINT)]
    elbow = np.select(sel, [wave_e, raise_e, point_e], shoulder)
    wrist = np.select(sel, [wave_w, raise_w, point_w], shoulder)
    return elbow, wrist
