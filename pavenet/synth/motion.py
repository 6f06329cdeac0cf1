"""Where people and the camera are in every frame: routes on a ground plane and a camera path.

People walk, run, pause (with gestures), turn, leave the view and sometimes come back. The
ground plane is seen by a pinhole camera at height ``cam_height`` looking horizontally, so
people farther away are smaller and higher in the frame, and depth orders occlusion.
World axes: X to the right, Y up, Z away from the camera (metres).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pavenet.synth.body import GESTURE_NONE
from pavenet.synth.config import SynthConfig

_WAIT_FOREVER = 10**9


@dataclass
class Camera:
    """Pinhole camera of the nominal (un-panned) ``width`` x ``height`` view."""

    width: int
    height: int
    focal: float
    horizon: float
    cam_height: float
    z_near: float
    z_far: float

    def project(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[..., 3] world points -> ([..., 2] view pixels, [...] depth)."""
        z = np.maximum(xyz[..., 2], 0.05)
        x = self.width / 2 + self.focal * xyz[..., 0] / z
        y = self.horizon - self.focal * (xyz[..., 1] - self.cam_height) / z
        return np.stack([x, y], -1), z

    def half_width(self, z: np.ndarray | float) -> np.ndarray:
        """Half the visible width (metres) at depth ``z``."""
        return np.asarray(z) * (self.width / 2) / self.focal


@dataclass
class Trajectories:
    """Per-frame state of P people over T frames (arrays [T, P])."""

    x: np.ndarray
    z: np.ndarray
    yaw: np.ndarray
    speed: np.ndarray
    phase: np.ndarray
    gesture: np.ndarray
    gesture_phase: np.ndarray


def sample_camera(rng: np.random.Generator, cfg: SynthConfig) -> Camera:
    """A camera whose depth range shows people between a band of cfg's scale range."""
    hfov = np.deg2rad(rng.uniform(45, 75))
    focal = cfg.width / (2 * np.tan(hfov / 2))
    lo, hi = np.log(cfg.min_scale), np.log(cfg.max_scale)
    centre = rng.uniform(lo, hi)
    half_band = rng.uniform(0.35, 0.8)
    s_lo, s_hi = np.exp(max(lo, centre - half_band)), np.exp(min(hi, centre + half_band))
    return Camera(
        width=cfg.width,
        height=cfg.height,
        focal=focal,
        horizon=rng.uniform(0.15, 0.5) * cfg.height,
        cam_height=rng.uniform(0.9, 2.2),
        z_near=max(focal * 1.7 / (s_hi * cfg.height), 0.4),
        z_far=max(focal * 1.7 / (s_lo * cfg.height), 0.5),
    )


class _Planner:
    """Chooses each person's next waypoint, pause or exit (called only on arrival)."""

    def __init__(self, rng: np.random.Generator, cfg: SynthConfig, cam: Camera, p: int):
        self.rng, self.cfg, self.cam = rng, cfg, cam
        self.busy_z = np.exp(rng.uniform(np.log(cam.z_near), np.log(cam.z_far)))
        self.crosser = rng.random(p) < cfg.crossing_rate
        self.gone = np.zeros(p, bool)  # walked out and will not come back

    def random_z(self) -> float:
        return float(np.exp(self.rng.uniform(np.log(self.cam.z_near), np.log(self.cam.z_far))))

    def inside_x(self, z: float) -> float:
        return float(self.rng.uniform(-0.85, 0.85) * self.cam.half_width(z))

    def outside_x(self, z: float, side: float) -> float:
        return float(side * (self.cam.half_width(z) + self.rng.uniform(0.6, 1.5)))

    def walk_speed(self) -> float:
        run = self.rng.random() < self.cfg.run_prob
        return float((self.rng.uniform(2.4, 4.0) if run else self.rng.uniform(0.9, 1.7)) * self.cfg.speed)

    def next(self, i: int, x: float, z: float, outside: bool) -> tuple[float, float, float, int, int]:
        """(target x, target z, target speed, wait frames, gesture) for person ``i`` at (x, z)."""
        rng, cfg = self.rng, self.cfg
        if outside:
            if self.gone[i]:
                return x, z, 0.0, _WAIT_FOREVER, GESTURE_NONE
            if rng.random() >= cfg.reentry_rate:
                self.gone[i] = True
                return x, z, 0.0, _WAIT_FOREVER, GESTURE_NONE
            tz = self.random_z()
            gap = int(rng.integers(5, 50))
            return self.inside_x(tz), tz, self.walk_speed(), gap, GESTURE_NONE
        r = rng.random()
        if r < cfg.stand_prob:
            gesture = int(rng.choice(4, p=[0.55, 0.15, 0.15, 0.15]))
            return x, z, 0.0, int(rng.integers(10, 60)), gesture
        if r < cfg.stand_prob + cfg.exit_rate:
            tz = float(np.clip(z * rng.uniform(0.8, 1.25), self.cam.z_near, self.cam.z_far))
            return self.outside_x(tz, rng.choice([-1.0, 1.0])), tz, self.walk_speed(), 0, GESTURE_NONE
        if self.crosser[i]:
            tz = float(np.clip(self.busy_z * rng.uniform(0.85, 1.15), self.cam.z_near, self.cam.z_far))
            side = -np.sign(x) if x != 0 else 1.0
            return float(side * rng.uniform(0.5, 0.9) * self.cam.half_width(tz)), tz, self.walk_speed(), 0, 0
        tz = self.random_z()
        return self.inside_x(tz), tz, self.walk_speed(), 0, GESTURE_NONE


def simulate_people(rng: np.random.Generator, cfg: SynthConfig, cam: Camera, p: int, t: int) -> Trajectories:
    """Simulate P people for T frames with smooth speed and heading changes."""
    dt = 1.0 / cfg.fps
    plan = _Planner(rng, cfg, cam, p)
    z = np.exp(rng.uniform(np.log(cam.z_near), np.log(cam.z_far), p))
    starts_inside = rng.random(p) < 0.75
    side = rng.choice([-1.0, 1.0], p)
    x = np.where(starts_inside, rng.uniform(-0.85, 0.85, p), side * 1.0) * cam.half_width(z)
    x = np.where(starts_inside, x, x + side * rng.uniform(0.6, 1.5, p))
    # People starting outside walk in after a random delay; the others plan on the first step.
    tx = np.where(starts_inside, x, [plan.inside_x(zi) for zi in z])
    tz = z.copy()
    vmax = np.where(starts_inside, 0.0, [plan.walk_speed() for _ in range(p)])
    wait = np.where(starts_inside, 0, rng.integers(0, max(t, 1), p))
    gesture = np.zeros(p, np.int64)
    heading = rng.uniform(-np.pi, np.pi, p)
    yaw, face_target = heading.copy(), heading.copy()
    speed = np.zeros(p)
    phase = rng.uniform(0, 2 * np.pi, p)
    gphase = rng.uniform(0, 2 * np.pi, p)
    stride = rng.uniform(1.2, 1.6, p)  # metres per gait cycle when walking
    out = {k: np.zeros((t, p), np.float32) for k in ("x", "z", "yaw", "speed", "phase", "gesture_phase")}
    out_gesture = np.zeros((t, p), np.int64)
    for step in range(t):
        dx, dz = tx - x, tz - z
        dist = np.hypot(dx, dz)
        arrived = (wait <= 0) & (dist < 0.25)
        for i in np.flatnonzero(arrived):
            outside = abs(x[i]) > cam.half_width(z[i]) + 0.3
            tx[i], tz[i], vmax[i], wait[i], gesture[i] = plan.next(i, x[i], z[i], outside)
            face_target[i] = rng.uniform(-np.pi, np.pi)
        moving = (wait <= 0) & (vmax > 0)
        target_speed = np.where(moving, np.minimum(vmax, 1.5 * dist / 0.5 + 0.3), 0.0)
        speed += np.clip(target_speed - speed, -3.0 * dt, 2.0 * dt)
        want = np.arctan2(dz, dx)
        turn = np.angle(np.exp(1j * (want - heading)))
        heading += np.where(moving, np.clip(turn, -3.5 * dt, 3.5 * dt), 0)
        x += speed * np.cos(heading) * dt
        z = np.maximum(z + speed * np.sin(heading) * dt, cam.z_near * 0.7)
        # Face the walking direction; when still, turn slowly towards a chosen direction.
        facing = np.where(speed > 0.3, heading, face_target)
        yaw += np.clip(np.angle(np.exp(1j * (facing - yaw))), -2.5 * dt, 2.5 * dt)
        step_stride = stride * (1 + 0.6 * np.clip((speed - 1.9) / 1.2, 0, 1))
        phase += 2 * np.pi * speed / step_stride * dt
        gphase += 2 * np.pi * 1.6 * dt
        wait = np.where(wait > 0, wait - 1, wait)
        gesture = np.where((wait <= 0) & (vmax > 0), GESTURE_NONE, gesture)
        for k, v in (("x", x), ("z", z), ("yaw", yaw), ("speed", speed), ("phase", phase), ("gesture_phase", gphase)):
            out[k][step] = v
        out_gesture[step] = gesture
    return Trajectories(gesture=out_gesture, **out)


def camera_path(rng: np.random.Generator, cfg: SynthConfig, t: int) -> np.ndarray:
    """[T, 2, 3] affine maps from the nominal view to each frame: pan, zoom and shake."""
    w, h = cfg.width, cfg.height
    steps = np.arange(t, dtype=np.float64)
    pan = np.zeros((t, 2))
    if rng.random() < cfg.camera_motion:
        velocity = rng.uniform(-1, 1, 2) * [0.004 * w, 0.0015 * h]
        wobble = np.sin(steps / rng.uniform(20, 60) + rng.uniform(0, 6))[:, None]
        pan = np.cumsum(velocity * (1 + 0.5 * wobble), axis=0)
        pan = np.clip(pan - pan.mean(0), -0.15 * w, 0.15 * w)
    zoom = np.ones(t)
    if rng.random() < cfg.camera_motion:
        zoom = np.exp(rng.uniform(0.05, 0.15) * np.sin(2 * np.pi * steps / rng.uniform(40, 120) + rng.uniform(0, 6)))
    angle = np.zeros(t)
    if rng.random() < cfg.camera_motion:
        kernel = np.ones(3) / 3
        shake = rng.normal(0, rng.uniform(0.5, 2.0) * max(w, h) / 320, (t + 2, 2))
        pan = pan + np.stack([np.convolve(shake[:, i], kernel, "valid") for i in range(2)], 1)
        angle = np.deg2rad(np.convolve(rng.normal(0, 0.6, t + 2), kernel, "valid"))
    centre = np.array([w / 2, h / 2])
    cos, sin = np.cos(angle) * zoom, np.sin(angle) * zoom
    rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # [T, 2, 2]
    shift = centre + pan - np.einsum("tij,j->ti", rot, centre)
    return np.concatenate([rot, shift[:, :, None]], -1)
